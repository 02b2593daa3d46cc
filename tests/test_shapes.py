"""Real-shape registry and builder: published facts, reduced depth, tokenizer ids, rebuilds, loading.

The full-width end-to-end runs (GRPO step, evaluation, adapter round trip at real widths) are in
tests/test_real_shapes_e2e.py (marked slow) and scripts/check_real_shapes.py."""

from __future__ import annotations

import hashlib
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from hallucue_mlx.models.shapes import (
    SHAPES,
    build_real_shape,
    filler_token,
    placed_tokenizer,
    published_config,
    shape_for,
)


def test_lookup_by_key_and_hub_id_case_insensitive():
    assert shape_for("qwen2.5-vl-3b") is SHAPES["qwen2.5-vl-3b"]
    assert shape_for("mlx-community/qwen2.5-vl-3b-instruct-4bit") is SHAPES["qwen2.5-vl-3b"]
    assert shape_for("Qwen/Qwen2-VL-2B-Instruct").family == "qwen2_vl"
    assert shape_for("HuggingFaceTB/SmolVLM-500M-Instruct").name == "smolvlm-500m"
    assert shape_for("Qwen/Qwen2.5-VL-7B-Instruct") is None


def test_published_facts():
    q25 = SHAPES["qwen2.5-vl-3b"].config
    assert (q25["hidden_size"], q25["intermediate_size"], q25["num_hidden_layers"]) == (
        2048,
        11008,
        36,
    )
    assert (q25["num_attention_heads"], q25["num_key_value_heads"]) == (16, 2)
    assert q25["vocab_size"] == 151936 and q25["tie_word_embeddings"] is True
    assert q25["rope_scaling"]["mrope_section"] == [16, 24, 24]
    head_dim = q25["hidden_size"] // q25["num_attention_heads"]
    assert sum(q25["rope_scaling"]["mrope_section"]) == head_dim // 2
    v = q25["vision_config"]
    assert (v["depth"], v["hidden_size"], v["intermediate_size"], v["window_size"]) == (
        32,
        1280,
        3420,
        112,
    )
    assert v["fullatt_block_indexes"] == [7, 15, 23, 31] and v["out_hidden_size"] == 2048
    q2 = SHAPES["qwen2-vl-2b"].config
    assert (q2["hidden_size"], q2["intermediate_size"], q2["num_hidden_layers"]) == (1536, 8960, 28)
    assert q2["vision_config"]["embed_dim"] == 1280 and q2["max_position_embeddings"] == 32768
    for name in ("qwen2.5-vl-3b", "qwen2-vl-2b"):
        s = SHAPES[name]
        assert s.config["image_token_id"] == s.token_id("<|image_pad|>") == 151655
        assert s.config["vision_start_token_id"] == s.token_id("<|vision_start|>") == 151652
        assert s.token_id("<|im_start|>") == 151644 and s.token_id("<|video_pad|>") == 151656
    assert SHAPES["qwen2.5-vl-3b"].token_id("<|file_sep|>") == 151664
    with pytest.raises(KeyError):
        SHAPES["qwen2-vl-2b"].token_id("<|file_sep|>")  # Qwen2-VL's tokenizer ends at 151656
    s256, s500 = SHAPES["smolvlm-256m"], SHAPES["smolvlm-500m"]
    assert s256.config["text_config"]["hidden_size"] == 576
    assert s500.config["text_config"]["hidden_size"] == 960
    for s in (s256, s500):
        assert s.config["scale_factor"] == 4 and s.config["image_token_id"] == 49190
        assert s.config["vision_config"]["patch_size"] == 16
        assert s.config["vision_config"]["image_size"] == 512
        assert s.token_id("<image>") == 49190 and s.token_id("<global-img>") == 49152
        assert s.token_id("<row_6_col_6>") == 49188
        assert s.token_id("<end_of_utterance>") == 49279 == s.generation["eos_token_id"]
        assert s.vocab_size == 49280
        # (512 / 16)^2 patches, pixel-shuffled by 4 x 4: 64 image tokens per tile
        assert s.processor["image_seq_len"] == (512 // 16) ** 2 // 4**2


def test_published_config_reduces_depth_consistently():
    full = published_config("qwen2.5-vl-3b")
    assert full == SHAPES["qwen2.5-vl-3b"].config and full is not SHAPES["qwen2.5-vl-3b"].config
    c = published_config("qwen2.5-vl-3b", text_layers=2, vision_layers=2)
    assert c["num_hidden_layers"] == 2 and c["vision_config"]["depth"] == 2
    # one windowed block (0) and one full-attention block (1)
    assert c["vision_config"]["fullatt_block_indexes"] == [1]
    assert published_config("qwen2.5-vl-3b", vision_layers=16)["vision_config"][
        "fullatt_block_indexes"
    ] == [7, 15]
    assert c["hidden_size"] == 2048 and c["vocab_size"] == 151936  # widths stay published
    assert SHAPES["qwen2.5-vl-3b"].config["num_hidden_layers"] == 36  # registry untouched
    q2 = published_config("qwen2-vl-2b", text_layers=3, vision_layers=1)
    assert q2["num_hidden_layers"] == 3 and q2["vision_config"]["depth"] == 1
    sm = published_config("smolvlm-256m", text_layers=2, vision_layers=2)
    assert sm["text_config"]["num_hidden_layers"] == 2
    assert sm["vision_config"]["num_hidden_layers"] == 2
    with pytest.raises(ValueError, match="between 1 and 36"):
        published_config("qwen2.5-vl-3b", text_layers=37)
    with pytest.raises(KeyError, match="no published shape"):
        published_config("llava-1.5")


@pytest.mark.parametrize("name", ["qwen2.5-vl-3b", "qwen2-vl-2b", "smolvlm-256m"])
def test_tokenizer_places_special_tokens_at_published_ids(name):
    shape = SHAPES[name]
    tok = placed_tokenizer(shape)
    assert tok.get_vocab_size(with_added_tokens=True) == shape.vocab_size
    for i, content, _ in shape.added_tokens:
        assert tok.token_to_id(content) == i, content
        assert tok.encode(content, add_special_tokens=False).ids == [i]
    # every id decodes; fillers are never produced by encoding their own text
    free = next(
        i for i in range(shape.vocab_size - 1, 0, -1) if tok.id_to_token(i).startswith("<|f")
    )
    assert tok.id_to_token(free) == filler_token(free)
    assert tok.encode(filler_token(free), add_special_tokens=False).ids != [free]


@pytest.fixture(scope="module")
def smol_dir(tmp_path_factory):
    return build_real_shape(
        "smolvlm-256m", tmp_path_factory.mktemp("real") / "smol", text_layers=1, vision_layers=1
    )


def test_chat_templates_render_published_format(smol_dir, tmp_path):
    from transformers import AutoTokenizer

    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "2+3?"}]}]
    tok = AutoTokenizer.from_pretrained(smol_dir)
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>User:<image>2+3?<end_of_utterance>\nAssistant:"
    assert json.loads((smol_dir / "chat_template.json").read_text())["chat_template"] == (
        SHAPES["smolvlm-256m"].chat_template
    )
    from hallucue_mlx.models.shapes import _wrapped_tokenizer

    qwen = _wrapped_tokenizer(SHAPES["qwen2.5-vl-3b"])
    text = qwen.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>2+3?<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = qwen(text)["input_ids"]
    assert ids[0] == 151644 and [151652, 151655, 151653] == ids[ids.index(151652) :][:3]


def test_build_writes_published_files_and_loads(smol_dir):
    from hallucue_mlx.models.load import load_model

    config = json.loads((smol_dir / "config.json").read_text())
    assert config["text_config"]["num_hidden_layers"] == 1
    assert config["text_config"]["hidden_size"] == 576 and config["torch_dtype"] == "float32"
    pre = json.loads((smol_dir / "preprocessor_config.json").read_text())
    assert pre["max_image_size"] == {"longest_edge": 512} and pre["do_image_splitting"] is True
    assert json.loads((smol_dir / "generation_config.json").read_text())["eos_token_id"] == 49279
    model, processor = load_model(smol_dir)
    assert model.language_model.lm_head.weight.shape == (49280, 576)
    assert len(processor.tokenizer) == 49280
    assert processor.tokenizer.convert_tokens_to_ids("<fake_token_around_image>") == 49189


def _digest(path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


@pytest.mark.slow
def test_four_bit_build_is_byte_identical_and_loads(tmp_path):
    import mlx.nn as nn

    from hallucue_mlx.models.load import load_model

    kw = {"text_layers": 1, "vision_layers": 1, "bits": 4, "seed": 3}
    a = build_real_shape("smolvlm-256m", tmp_path / "a", **kw)
    b = build_real_shape("smolvlm-256m", tmp_path / "b", **kw)
    c = build_real_shape("smolvlm-256m", tmp_path / "c", **{**kw, "seed": 4})
    assert _digest(a) == _digest(b) != _digest(c)
    config = json.loads((a / "config.json").read_text())
    assert config["quantization"] == {"group_size": 64, "bits": 4, "mode": "affine"}
    model, _ = load_model(a)
    lm = model.language_model
    assert isinstance(lm.layers[0].self_attn.q_proj, nn.QuantizedLinear)
    # the vision tower stays unquantised, as in mlx_vlm.convert
    assert not any(isinstance(m, nn.QuantizedLinear) for _, m in model.vision_model.named_modules())


def test_every_sampled_id_decodes(smol_dir):
    """The tokenizer has one token per embedding row, so the rollout bans only the image
    placeholder and a random model's samples (fillers included) decode to text."""
    import mlx.core as mx

    from hallucue_mlx.forward import banned_token_ids, encode_prompt
    from hallucue_mlx.models.load import load_model
    from hallucue_mlx.rollout import generate

    model, processor = load_model(smol_dir)
    assert banned_token_ids(model, processor) == [49190]
    groups = generate(
        model, processor, [encode_prompt(processor, model, "2+3?")], 4, 1.0, 6, mx.random.key(0)
    )
    for c in groups[0]:
        assert isinstance(c.text, str) and len(c.ids) >= 1
        assert processor.tokenizer.decode(c.ids) is not None
