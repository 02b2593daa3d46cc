"""Tiny real-architecture models: build, load, forward with an image, generate, adapter round trip.

The loader's errors (missing path, offline hub, unsupported architecture, pickle weights,
adapter mismatch) are tested, with their messages, in tests/reliability/test_bad_models.py and
test_security.py."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import mlx.core as mx
import pytest
from mlx.utils import tree_flatten
from PIL import Image

from hallucue_mlx.models import (
    FAMILIES,
    build_tiny_random,
    load_model,
    model_family,
)


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {f: build_tiny_random(root / f, f, seed=0) for f in FAMILIES}


def _forward_and_generate(model, processor, image):
    import mlx_vlm
    from mlx_vlm.prompt_utils import apply_chat_template
    from mlx_vlm.utils import prepare_inputs

    prompt = apply_chat_template(processor, model.config, "How many dots? <think>", num_images=1)
    inputs = prepare_inputs(processor, images=[image], prompts=prompt)
    extra = {
        k: v for k, v in inputs.items() if k not in ("input_ids", "pixel_values", "attention_mask")
    }
    out = model(inputs["input_ids"], inputs["pixel_values"], mask=inputs["attention_mask"], **extra)
    result = mlx_vlm.generate(
        model, processor, prompt, image=[image], max_tokens=5, temperature=0.0, verbose=False
    )
    return inputs["input_ids"], out.logits, result


@pytest.mark.parametrize("family", FAMILIES)
def test_build_load_forward_generate(tiny_dirs, family):
    model, processor = load_model(tiny_dirs[family], dtype="float32")
    assert model_family(model) == family
    assert model_family(tiny_dirs[family]) == family
    config = json.loads((tiny_dirs[family] / "config.json").read_text())
    tokenizer = processor.tokenizer
    # special-token ids in config.json are the tokenizer's
    if family == "idefics3":
        assert config["image_token_id"] == tokenizer.convert_tokens_to_ids("<image>")
        vocab = config["text_config"]["vocab_size"]
    else:
        assert config["image_token_id"] == tokenizer.convert_tokens_to_ids("<|image_pad|>")
        assert config["vision_start_token_id"] == tokenizer.convert_tokens_to_ids(
            "<|vision_start|>"
        )
        head_dim = config["hidden_size"] // config["num_attention_heads"]
        assert sum(config["rope_scaling"]["mrope_section"]) == head_dim // 2
        vocab = config["vocab_size"]
    assert vocab == len(tokenizer)
    assert (tiny_dirs[family] / "chat_template.json").is_file()

    image = Image.new("RGB", (112, 112), (200, 30, 30))
    ids, logits, result = _forward_and_generate(model, processor, image)
    # a 112x112 image is 16 image tokens in every family
    assert int((ids == config["image_token_id"]).sum()) == 16
    assert logits.shape == (1, ids.shape[1], vocab)
    assert bool(mx.all(mx.isfinite(logits)))
    assert result.generation_tokens >= 1
    assert isinstance(result.text, str)


def test_build_is_deterministic_and_seeded(tmp_path, tiny_dirs):
    again = build_tiny_random(tmp_path / "a", "qwen2_5_vl", seed=0)
    other = build_tiny_random(tmp_path / "b", "qwen2_5_vl", seed=1)
    ref = (tiny_dirs["qwen2_5_vl"] / "model.safetensors").read_bytes()
    assert (again / "model.safetensors").read_bytes() == ref
    assert (again / "tokenizer.json").read_bytes() == (
        tiny_dirs["qwen2_5_vl"] / "tokenizer.json"
    ).read_bytes()
    assert (other / "model.safetensors").read_bytes() != ref
    meta = mx.load(str(again / "model.safetensors"), return_metadata=True)[1]
    assert meta == {"format": "mlx"}


def test_extra_corpus_grows_tokenizer(tmp_path):
    words = [f"zorbulon{i} quaxitude{i % 7}" for i in range(400)]
    d = build_tiny_random(tmp_path / "c", text_layers=1, vision_depth=1, corpus=words)
    model, processor = load_model(d)
    ids = processor.tokenizer.encode(" quaxitude", add_special_tokens=False)
    assert len(ids) == 1  # learned as one token, not spelled out byte by byte


def test_dtype_cast(tiny_dirs):
    model, _ = load_model(tiny_dirs["qwen2_vl"], dtype="bfloat16")
    assert {v.dtype for _, v in tree_flatten(model.parameters())} == {mx.bfloat16}


def test_adapter_roundtrip(tmp_path, tiny_dirs):
    from mlx_vlm.trainer.peft.utils import get_peft_model, save_adapter

    model, _ = load_model(tiny_dirs["qwen2_5_vl"])
    get_peft_model(model, rank=4, alpha=8, dropout=0.0, verbose=False)
    # make the adapter non-trivial so that loading it changes the output
    for _, layer in model.named_modules():
        if hasattr(layer, "lora_b"):
            layer.lora_b = mx.ones_like(layer.lora_b) * 0.01
    save_adapter(model, tmp_path / "ad" / "adapters.safetensors")
    ids = mx.array([[1, 2, 3, 4]])

    base, _ = load_model(tiny_dirs["qwen2_5_vl"])
    tuned, _ = load_model(tiny_dirs["qwen2_5_vl"], tmp_path / "ad")
    assert not mx.allclose(base.language_model(ids).logits, tuned.language_model(ids).logits)
    assert mx.allclose(
        model.language_model(ids).logits, tuned.language_model(ids).logits, atol=1e-5
    )
