"""The published shapes of the real models, and random-weight checkpoints built at those shapes.

No hub is reachable in tests or offline runs, but the configs, special-token ids, processor
settings and chat templates of the models the project targets are published facts. This module
records them (with where each came from) and builds a checkpoint at those shapes, at full or
reduced depth, with seeded random weights from mlx-vlm's own model class: it loads with
`mlx_vlm.load(dir)` and `load_model(dir)` like a converted hub checkpoint, so every code path
(vision windowing at the real window size, M-RoPE sections, the 151k vocabulary, 4-bit layers,
the chat template's special tokens) runs at real width without the real weights.

Sources (read in stored copies of public pages and repositories; no value here is a guess unless
listed in RealShape.unconfirmed):
- Qwen/Qwen2.5-VL-3B-Instruct config.json: the hub file as quoted verbatim in several public
  repositories (transformers_version 4.41.2, max_window_layers 70, vision intermediate 3420,
  fullatt_block_indexes [7, 15, 23, 31]); preprocessor_config.json (min_pixels 3136, max_pixels
  12845056) as quoted in a public test fixture; Qwen2.5's 22 added tokens 151643-151664 as listed
  in several tokenizer ports.
- Qwen/Qwen2-VL-2B-Instruct config.json: the hub file re-published by onnx-community,
  lightonai/MonoQwen2-VL and Qwen/Qwen2-VL-2B-Instruct-AWQ (same values); its vision block sizes
  are transformers' Qwen2VLVisionConfig defaults (depth 32, embed_dim 1280, mlp_ratio 4,
  16 heads, quick_gelu), written out here because a reduced depth must name them.
- HuggingFaceTB/SmolVLM-256M-Instruct / -500M-Instruct config.json: fine-tunes that re-publish it
  (Mattimax/DATA-AI_Smol256M-Instruct, vidore/ColSmolVLM-Instruct-500M-base) and the model card
  (SigLIP base patch16/512 vision, SmolLM2-135M / -360M text); generation_config.json (bos 0,
  eos 49279, pad 2), chat_template.json (both models, 429 bytes) and preprocessor_config.json
  (longest_edge 2048, max_image_size 512, image splitting on) from the hub pages;
  the added-token ids (<global-img> 49152, <row_1_col_1>..<row_6_col_6> 49153-49188,
  <fake_token_around_image> 49189, <image> 49190, <end_of_utterance> 49279) from tokenizer
  ports pinned against the published tokenizer.json.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hallucue_mlx.models.tiny import (
    QWEN_CHAT_TEMPLATE,
    _train_tokenizer,
    default_corpus,
    write_random_weights,
)

QWEN_FAMILIES = ("qwen2_5_vl", "qwen2_vl")

# ---------------------------------------------------------------- Qwen2-VL / Qwen2.5-VL

_QWEN_IDS = {
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "vision_token_id": 151654,
    "image_token_id": 151655,
    "video_token_id": 151656,
}
# Added tokens of the Qwen2 tokenizer: (id, content, special). Qwen2-VL's tokenizer ends at
# <|video_pad|>; Qwen2.5-VL's adds the tool-call and fill-in-the-middle tokens.
_QWEN_ADDED = (
    (151643, "<|endoftext|>", True),
    (151644, "<|im_start|>", True),
    (151645, "<|im_end|>", True),
    (151646, "<|object_ref_start|>", True),
    (151647, "<|object_ref_end|>", True),
    (151648, "<|box_start|>", True),
    (151649, "<|box_end|>", True),
    (151650, "<|quad_start|>", True),
    (151651, "<|quad_end|>", True),
    (151652, "<|vision_start|>", True),
    (151653, "<|vision_end|>", True),
    (151654, "<|vision_pad|>", True),
    (151655, "<|image_pad|>", True),
    (151656, "<|video_pad|>", True),
)
_QWEN25_ADDED = _QWEN_ADDED + (
    (151657, "<tool_call>", False),
    (151658, "</tool_call>", False),
    (151659, "<|fim_prefix|>", False),
    (151660, "<|fim_middle|>", False),
    (151661, "<|fim_suffix|>", False),
    (151662, "<|fim_pad|>", False),
    (151663, "<|repo_name|>", False),
    (151664, "<|file_sep|>", False),
)

_QWEN25_VL_3B = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "attention_dropout": 0.0,
    **_QWEN_IDS,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 11008,
    "max_position_embeddings": 128000,
    "max_window_layers": 70,
    "model_type": "qwen2_5_vl",
    "num_attention_heads": 16,
    "num_hidden_layers": 36,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.41.2",
    "use_cache": True,
    "use_sliding_window": False,
    "vision_config": {
        "depth": 32,
        "hidden_act": "silu",
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "in_chans": 3,
        "out_hidden_size": 2048,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "spatial_patch_size": 14,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
        "temporal_patch_size": 2,
    },
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vocab_size": 151936,
}

_QWEN2_VL_2B = {
    "architectures": ["Qwen2VLForConditionalGeneration"],
    "attention_dropout": 0.0,
    **_QWEN_IDS,
    "hidden_act": "silu",
    "hidden_size": 1536,
    "initializer_range": 0.02,
    "intermediate_size": 8960,
    "max_position_embeddings": 32768,
    "max_window_layers": 28,
    "model_type": "qwen2_vl",
    "num_attention_heads": 12,
    "num_hidden_layers": 28,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.41.2",
    "use_cache": True,
    "use_sliding_window": False,
    "vision_config": {
        "depth": 32,
        "embed_dim": 1280,
        "mlp_ratio": 4,
        "num_heads": 16,
        "in_chans": 3,
        "hidden_size": 1536,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "spatial_patch_size": 14,
        "temporal_patch_size": 2,
    },
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vocab_size": 151936,
}


def _qwen_preprocessor(processor_class: str) -> dict[str, Any]:
    """preprocessor_config.json of both Qwen models (mlx-vlm reads the top-level min/max_pixels)."""
    return {
        "min_pixels": 3136,
        "max_pixels": 12845056,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": processor_class,
    }


def _qwen_generation() -> dict[str, Any]:
    return {
        "bos_token_id": 151643,
        "pad_token_id": 151643,
        "do_sample": True,
        "eos_token_id": [151645, 151643],
        "top_k": 1,
        "top_p": 0.001,
        "temperature": 0.1,
    }


# ---------------------------------------------------------------- SmolVLM (Idefics3)

# SmolLM2's own special tokens sit at ids 0-16 of its 49152-token vocabulary.
_SMOLLM2_SPECIAL = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<repo_name>",
    "<reponame>",
    "<file_sep>",
    "<filename>",
    "<gh_stars>",
    "<issue_start>",
    "<issue_comment>",
    "<issue_closed>",
    "<jupyter_start>",
    "<jupyter_text>",
    "<jupyter_code>",
    "<jupyter_output>",
    "<jupyter_script>",
    "<empty_output>",
)
_SMOLVLM_ADDED = (
    *((i, tok, True) for i, tok in enumerate(_SMOLLM2_SPECIAL)),
    (49152, "<global-img>", True),
    *(
        (49153 + 6 * (r - 1) + (c - 1), f"<row_{r}_col_{c}>", True)
        for r in range(1, 7)
        for c in range(1, 7)
    ),
    (49189, "<fake_token_around_image>", True),
    (49190, "<image>", True),
    # 49191-49278: 88 further added tokens whose names could not be confirmed (see unconfirmed)
    *((49191 + i, f"<|reserved_special_token_{i}|>", True) for i in range(88)),
    (49279, "<end_of_utterance>", True),
)

# SmolVLM's published chat template (both sizes): message contents are lists of parts.
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def _smolvlm_config(text: dict[str, Any]) -> dict[str, Any]:
    """config.json of SmolVLM-256M/500M-Instruct; only the text model differs between them."""
    return {
        "architectures": ["Idefics3ForConditionalGeneration"],
        "image_token_id": 49190,
        "model_type": "idefics3",
        "pad_token_id": 128002,
        "scale_factor": 4,
        "text_config": {
            "architectures": ["VLlama3ForCausalLM"],
            "head_dim": 64,
            "hidden_act": "silu",
            "initializer_range": 0.041666666666666664,
            "is_llama_config": True,
            "max_position_embeddings": 8192,
            "model_type": "llama",
            "pad_token_id": 2,
            "pixel_shuffle_factor": 4,
            "rms_norm_eps": 1e-05,
            "rope_interleaved": False,
            "rope_theta": 100000,
            "torch_dtype": "bfloat16",
            "use_resampler": False,
            "vocab_size": 49280,
            **text,
        },
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.46.0",
        "use_cache": True,
        "vision_config": {
            "hidden_size": 768,
            "image_size": 512,
            "intermediate_size": 3072,
            "max_image_size": {"longest_edge": 512},
            "model_type": "idefics3",
            "num_attention_heads": 12,
            "num_hidden_layers": 12,
            "patch_size": 16,
            "size": {"longest_edge": 2048},
            "tie_word_embeddings": False,
            "use_base_siglip": True,
        },
        "vocab_size": 49280,
    }


_SMOLVLM_PREPROCESSOR = {
    "do_convert_rgb": True,
    "do_image_splitting": True,
    "do_normalize": True,
    "do_pad": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_processor_type": "Idefics3ImageProcessor",
    "image_std": [0.5, 0.5, 0.5],
    "max_image_size": {"longest_edge": 512},
    "processor_class": "Idefics3Processor",
    "resample": 1,
    "rescale_factor": 0.00392156862745098,
    "size": {"longest_edge": 2048},
}
_SMOLVLM_GENERATION = {"bos_token_id": 0, "eos_token_id": 49279, "pad_token_id": 2}


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class RealShape:
    """One published model: its config.json (full depth) and the tokenizer/processor facts."""

    name: str
    family: str  # "qwen2_5_vl" | "qwen2_vl" | "idefics3"
    hub_ids: tuple[str, ...]
    config: dict[str, Any]
    added_tokens: tuple[tuple[int, str, bool], ...]  # (published id, content, special)
    tokenizer: dict[str, Any]  # bos/eos/pad/unk tokens and model_max_length
    chat_template: str
    preprocessor: dict[str, Any]  # preprocessor_config.json
    processor: dict[str, Any] | None  # processor_config.json, where the model has one
    generation: dict[str, Any]  # generation_config.json
    sources: str
    unconfirmed: tuple[str, ...] = field(default=())

    @property
    def vocab_size(self) -> int:
        """Rows of the published embedding (the built tokenizer has exactly this many tokens)."""
        return int(self.config.get("vocab_size") or self.config["text_config"]["vocab_size"])

    def token_id(self, content: str) -> int:
        """The published id of an added/special token, e.g. token_id("<|image_pad|>") == 151655."""
        for i, tok, _ in self.added_tokens:
            if tok == content:
                return i
        raise KeyError(f"{content!r} is not a special token of {self.name}")


_QWEN_TOKENIZER = {
    "class": "Qwen2Tokenizer",
    "bos_token": None,
    "eos_token": "<|im_end|>",
    "pad_token": "<|endoftext|>",
    "unk_token": None,
}
_SMOLVLM_TOKENIZER = {
    "class": "GPT2Tokenizer",
    "bos_token": "<|im_start|>",
    "eos_token": "<end_of_utterance>",
    "pad_token": "<|im_end|>",
    "unk_token": "<|endoftext|>",
    "model_max_length": 8192,
    "additional_special_tokens": ["<fake_token_around_image>", "<image>", "<end_of_utterance>"],
}
_QWEN_UNCONFIRMED = (
    "generation_config.json sampling values (top_k/top_p/temperature) and the tokenizer's "
    "model_max_length are from memory, not from a stored copy",
)
_SMOLVLM_UNCONFIRMED = (
    "names of the added tokens 49191-49278 (their ids and count are confirmed; named "
    "<|reserved_special_token_N|> here); no prompt uses them",
    "vision_config.num_hidden_layers: absent from the published file (transformers' default, 12, "
    "which matches SigLIP base and the 256M/500M parameter counts); written out here",
)


def _smolvlm(size: str, text: dict) -> RealShape:
    """SmolVLM-<size>-Instruct: the sizes share everything but the text model's widths."""
    hub = f"HuggingFaceTB/SmolVLM-{size}-Instruct"
    return RealShape(
        name=f"smolvlm-{size.lower()}",
        family="idefics3",
        hub_ids=(
            hub,
            f"mlx-community/SmolVLM-{size}-Instruct-4bit",
            f"mlx-community/SmolVLM-{size}-Instruct-bf16",
        ),
        config=_smolvlm_config(text),
        added_tokens=_SMOLVLM_ADDED,
        tokenizer=_SMOLVLM_TOKENIZER,
        chat_template=SMOLVLM_CHAT_TEMPLATE,
        preprocessor=_SMOLVLM_PREPROCESSOR,
        processor={"image_seq_len": 64, "processor_class": "Idefics3Processor"},
        generation=_SMOLVLM_GENERATION,
        sources=f"{hub} config (re-published), hub pages",
        unconfirmed=_SMOLVLM_UNCONFIRMED,
    )


SHAPES: dict[str, RealShape] = {
    "qwen2.5-vl-3b": RealShape(
        name="qwen2.5-vl-3b",
        family="qwen2_5_vl",
        hub_ids=("Qwen/Qwen2.5-VL-3B-Instruct", "mlx-community/Qwen2.5-VL-3B-Instruct-4bit"),
        config=_QWEN25_VL_3B,
        added_tokens=_QWEN25_ADDED,
        tokenizer={**_QWEN_TOKENIZER, "model_max_length": 131072},
        chat_template=QWEN_CHAT_TEMPLATE,
        preprocessor=_qwen_preprocessor("Qwen2_5_VLProcessor"),
        processor=None,
        generation={**_qwen_generation(), "repetition_penalty": 1.05},
        sources="Qwen/Qwen2.5-VL-3B-Instruct config.json, preprocessor_config.json, tokenizer",
        unconfirmed=_QWEN_UNCONFIRMED,
    ),
    "qwen2-vl-2b": RealShape(
        name="qwen2-vl-2b",
        family="qwen2_vl",
        hub_ids=("Qwen/Qwen2-VL-2B-Instruct", "mlx-community/Qwen2-VL-2B-Instruct-4bit"),
        config=_QWEN2_VL_2B,
        added_tokens=_QWEN_ADDED,
        tokenizer={**_QWEN_TOKENIZER, "model_max_length": 32768},
        chat_template=QWEN_CHAT_TEMPLATE,
        preprocessor=_qwen_preprocessor("Qwen2VLProcessor"),
        processor=None,
        generation={**_qwen_generation(), "temperature": 0.01},
        sources="Qwen/Qwen2-VL-2B-Instruct config.json (re-published copies), transformers defaults",
        unconfirmed=_QWEN_UNCONFIRMED
        + ("transformers_version of the Qwen2-VL-2B config (copies show 4.45/4.46 dev)",),
    ),
    "smolvlm-256m": _smolvlm(
        "256M",
        {
            "hidden_size": 576,
            "intermediate_size": 1536,
            "num_attention_heads": 9,
            "num_hidden_layers": 30,
            "num_key_value_heads": 3,
        },
    ),
    "smolvlm-500m": _smolvlm(
        "500M",
        {
            "hidden_size": 960,
            "intermediate_size": 2560,
            "num_attention_heads": 15,
            "num_hidden_layers": 32,
            "num_key_value_heads": 5,
        },
    ),
}


def shape_for(model_id: str) -> RealShape | None:
    """The registry entry for a key ("qwen2.5-vl-3b") or any of its hub ids, case-insensitive."""
    want = str(model_id).strip().lower()
    for shape in SHAPES.values():
        if want == shape.name or want in (h.lower() for h in shape.hub_ids):
            return shape
    return None


def _shape(name: str) -> RealShape:
    shape = shape_for(name)
    if shape is None:
        raise KeyError(
            f"no published shape for {name!r}: choose one of {sorted(SHAPES)} or their hub ids"
        )
    return shape


def _depth(what: str, want: int | None, full: int, name: str) -> int:
    if want is None:
        return full
    if not 1 <= int(want) <= full:
        raise ValueError(f"{name}: {what} must be between 1 and {full} (published), got {want}")
    return int(want)


def published_config(
    name: str, text_layers: int | None = None, vision_layers: int | None = None
) -> dict[str, Any]:
    """config.json of `name` at full depth, or with fewer text layers / vision blocks.

    Qwen2.5-VL's full-attention blocks are the published ones below the new depth; if none is
    left, the last block is the full-attention one (so 2 blocks keep one windowed and one full).
    """
    shape = _shape(name)
    cfg = copy.deepcopy(shape.config)
    vision = cfg["vision_config"]
    if shape.family in QWEN_FAMILIES:
        cfg["num_hidden_layers"] = _depth(
            "text_layers", text_layers, cfg["num_hidden_layers"], shape.name
        )
        depth = _depth("vision_layers", vision_layers, vision["depth"], shape.name)
        vision["depth"] = depth
        if "fullatt_block_indexes" in vision:
            kept = [i for i in vision["fullatt_block_indexes"] if i < depth]
            vision["fullatt_block_indexes"] = kept or [depth - 1]
    else:
        text = cfg["text_config"]
        text["num_hidden_layers"] = _depth(
            "text_layers", text_layers, text["num_hidden_layers"], shape.name
        )
        vision["num_hidden_layers"] = _depth(
            "vision_layers", vision_layers, vision["num_hidden_layers"], shape.name
        )
    return cfg


# ---------------------------------------------------------------- the builder


def filler_token(i: int) -> str:
    """The token at id `i` of a built tokenizer where the real one has a learned BPE token."""
    return f"<|filler_{i}|>"


def placed_tokenizer(shape: RealShape, bpe_size: int = 2048):
    """A `tokenizers.Tokenizer` with exactly shape.vocab_size tokens: every added token at its
    published id, a small byte-level BPE (trained on the project's fixed corpus) in the lowest
    free ids, and filler tokens (never produced by encoding; they decode to their own text) in
    the rest, so every id the random model can sample decodes."""
    from tokenizers import Tokenizer

    bpe = json.loads(_train_tokenizer(default_corpus(), bpe_size, ()).to_str())
    placed = {i: tok for i, tok, _ in shape.added_tokens}
    free = (i for i in range(shape.vocab_size) if i not in placed)
    learned = sorted(bpe["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab = {tok: next(free) for tok, _ in learned}
    vocab.update({filler_token(i): i for i in free})
    # Added tokens are in the model vocabulary too: tokenizers gives an added token that is not
    # there a new id past the vocabulary instead of the one asked for.
    vocab.update({tok: i for i, tok in placed.items()})
    bpe["model"]["vocab"] = vocab
    bpe["added_tokens"] = [
        {
            "id": i,
            "content": tok,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": special,
        }
        for i, tok, special in shape.added_tokens
    ]
    tok = Tokenizer.from_str(json.dumps(bpe))
    if tok.get_vocab_size(with_added_tokens=True) != shape.vocab_size:
        raise RuntimeError(f"{shape.name}: built tokenizer does not have {shape.vocab_size} tokens")
    return tok


def _wrapped_tokenizer(shape: RealShape):
    """The transformers tokenizer of the shape (Qwen2Tokenizer or a fast GPT-2-style one)."""
    t = shape.tokenizer
    kwargs = {
        "tokenizer_object": placed_tokenizer(shape),
        "bos_token": t["bos_token"],
        "eos_token": t["eos_token"],
        "pad_token": t["pad_token"],
        "unk_token": t["unk_token"],
        "model_max_length": t["model_max_length"],
        "chat_template": shape.chat_template,
    }
    if shape.family in QWEN_FAMILIES:
        from transformers import Qwen2Tokenizer

        return Qwen2Tokenizer(**kwargs)
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        **kwargs, additional_special_tokens=t["additional_special_tokens"]
    )


def build_real_shape(
    name: str,
    out_dir: str | Path,
    *,
    text_layers: int | None = None,
    vision_layers: int | None = None,
    bits: int | None = None,
    group_size: int = 64,
    seed: int = 0,
    dtype: str = "float32",
) -> Path:
    """Write a checkpoint of `name` (a SHAPES key or hub id) with seeded random weights.

    config.json holds the published values (at the reduced depth if asked; torch_dtype names
    the stored dtype), the tokenizer places every special token at its published id and has
    one token per embedding row, and the chat template, preprocessor and generation configs
    are the published ones. `bits` (e.g. 4) quantises as `mlx_vlm.convert` does (vision tower
    unquantised) and records mlx-vlm's quantization keys in config.json. The same arguments
    give byte-identical weights.
    """
    shape = _shape(name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = published_config(shape.name, text_layers, vision_layers)
    config["torch_dtype"] = dtype
    if "text_config" in config:
        config["text_config"]["torch_dtype"] = dtype

    wrapped = _wrapped_tokenizer(shape)
    wrapped.save_pretrained(out)
    (out / "chat_template.json").write_text(json.dumps({"chat_template": shape.chat_template}))
    (out / "preprocessor_config.json").write_text(json.dumps(shape.preprocessor, indent=2))
    if shape.processor is not None:
        (out / "processor_config.json").write_text(json.dumps(shape.processor, indent=2))
    (out / "generation_config.json").write_text(json.dumps(shape.generation, indent=2))

    written = write_random_weights(
        out, config, seed=seed, dtype=dtype, bits=bits, group_size=group_size
    )
    (out / "config.json").write_text(json.dumps(written, indent=2))
    return out
