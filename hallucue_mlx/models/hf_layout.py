"""An MLX checkpoint written back in Hugging Face layout: mlx-vlm's `sanitize` undone.

mlx-vlm converts a Hugging Face checkpoint by renaming its weights to its own module tree and
moving convolution weights to MLX's channels-last layout. This module is the inverse, per family,
so a checkpoint built here (random weights at a real model's shapes) can be loaded by
transformers (`scripts/parity_transformers.py`) and by mlx-vlm's own `convert` (the import
tests). The names are the ones the public releases use:

- Qwen2-VL / Qwen2.5-VL (`qwen2_vl/qwen2_vl.py`, `qwen2_5_vl/qwen2_5_vl.py` and `vision.py` in
  mlx-vlm): `language_model.model.*` -> `model.*`, `language_model.lm_head.*` -> `lm_head.*`,
  `vision_tower.*` -> `visual.*`; the patch embedding's Conv3d weight (out, t, h, w, in) ->
  PyTorch's (out, in, t, h, w). With `newer_names`, transformers 5's own module names
  (`model.language_model.*`, `model.visual.*`) instead.
- Idefics3 / SmolVLM (`idefics3/idefics3.py`, `vision.py`): `language_model.lm_head.*` ->
  `lm_head.*`, `language_model.*` -> `model.text_model.*`, `vision_model.*` ->
  `model.vision_model.*`, `connector.*` -> `model.connector.*`; the patch embedding's Conv2d
  weight (out, h, w, in) -> (out, in, h, w).

Imports no torch: the weights are written with MLX as safetensors marked format "pt".
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlx.core as mx

from hallucue_mlx.models.load import family_of_config, read_config

HF_FAMILIES = ("qwen2_5_vl", "qwen2_vl", "idefics3")


def _qwen_name(key: str, newer_names: bool) -> str:
    if key.startswith("language_model.lm_head."):
        return key.removeprefix("language_model.")
    if key.startswith("language_model.model."):
        rest = key.removeprefix("language_model.model.")
        return ("model.language_model." if newer_names else "model.") + rest
    if key.startswith("vision_tower."):
        rest = key.removeprefix("vision_tower.")
        return ("model.visual." if newer_names else "visual.") + rest
    raise ValueError(f"weight {key!r} is not one of mlx-vlm's Qwen-VL names; cannot map it")


def _idefics3_name(key: str) -> str:
    if key.startswith("language_model.lm_head."):
        return key.removeprefix("language_model.")
    if key.startswith("language_model."):
        return "model.text_model." + key.removeprefix("language_model.")
    if key.startswith(("vision_model.", "connector.")):
        return "model." + key
    raise ValueError(f"weight {key!r} is not one of mlx-vlm's Idefics3 names; cannot map it")


def hf_weights(
    weights: dict[str, mx.array], family: str, newer_names: bool = False
) -> dict[str, mx.array]:
    """mlx-vlm's weights of a `family` model, renamed and laid out as in a Hugging Face release."""
    if family not in HF_FAMILIES:
        raise ValueError(f"family {family!r} has no Hugging Face mapping; use one of {HF_FAMILIES}")
    if newer_names and family == "idefics3":
        raise ValueError("newer_names applies to the Qwen-VL families only")
    out = {}
    for key, value in weights.items():
        if family == "idefics3":
            name = _idefics3_name(key)
            if name.endswith("embeddings.patch_embedding.weight"):
                value = value.transpose(0, 3, 1, 2)  # (out, h, w, in) -> (out, in, h, w)
        else:
            name = _qwen_name(key, newer_names)
            if name.endswith("patch_embed.proj.weight"):
                value = value.transpose(0, 4, 1, 2, 3)  # (out, t, h, w, in) -> (out, in, t, h, w)
        out[name] = value
    return out


def to_hf_layout(
    mlx_dir: str | Path, out: str | Path, *, newer_names: bool = False, shards: int = 2
) -> Path:
    """Write the MLX checkpoint in `mlx_dir` to the new folder `out` as a Hugging Face release:
    weights renamed and laid out by `hf_weights`, in `shards` safetensors files (format "pt")
    with a `model.safetensors.index.json`, beside copies of every other file of `mlx_dir`
    (config, tokenizer, processor and chat-template files). Quantized checkpoints are refused:
    a Hugging Face release holds float weights."""
    mlx_dir, out = Path(mlx_dir), Path(out)
    config = read_config(mlx_dir)
    family = family_of_config(config, str(mlx_dir / "config.json"))
    if "quantization" in config:
        raise ValueError(
            f"{mlx_dir} is quantized; write the Hugging Face layout from its float checkpoint"
        )
    weights: dict[str, mx.array] = {}
    for f in sorted(mlx_dir.glob("*.safetensors")):
        weights.update(mx.load(str(f)))
    if not weights:
        raise FileNotFoundError(f"{mlx_dir} holds no .safetensors weights")
    weights = hf_weights(weights, family, newer_names)
    out.mkdir(parents=True)
    for f in mlx_dir.iterdir():
        if f.is_file() and not f.name.endswith((".safetensors", ".safetensors.index.json")):
            shutil.copy(f, out / f.name)
    keys = sorted(weights)
    shards = max(1, min(shards, len(keys)))
    index: dict[str, str] = {}
    for i in range(shards):
        part = keys[i * len(keys) // shards : (i + 1) * len(keys) // shards]
        shard = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        mx.save_safetensors(str(out / shard), {k: weights[k] for k in part}, {"format": "pt"})
        index.update(dict.fromkeys(part, shard))
    total = sum(v.nbytes for v in weights.values())
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": index}, indent=2)
    )
    return out
