"""One loader for every supported model: a Hugging Face id or a local directory, plus an adapter.

Built on mlx-vlm (`mlx_vlm.utils`), with errors that say what to do: a missing path, an
unsupported architecture, an offline hub, pickle weights, an adapter trained on another model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hallucue_mlx.backend import resolve_dtype
from hallucue_mlx.config import MAX_IMAGE_PIXELS
from hallucue_mlx.models.arch import MODEL_TYPES, QWEN, family
from hallucue_mlx.safefile import read_state_json
from hallucue_mlx.safefile import safetensors_problem as _safetensors_problem

SUPPORTED_MODEL_TYPES = MODEL_TYPES  # mlx-vlm model_type -> family
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class ModelLoadError(ValueError):
    """A model or adapter could not be loaded; the message says why and how to fix it."""


def _example_hint() -> str:
    return (
        "give a local directory containing config.json or a Hugging Face id like "
        "Qwen/Qwen2.5-VL-3B-Instruct"
    )


EMBEDDED_NAME = "hallucue-tiny"


def embedded_model_path() -> Path:
    """The directory of the shipped hallucue-tiny model (inside the installed package)."""
    return Path(__file__).resolve().parent.parent / "assets" / EMBEDDED_NAME


def resolve_model_dir(model: str | Path) -> Path:
    """The local directory of `model`: the path itself, or the hub snapshot (downloaded if needed)."""
    if str(model) == EMBEDDED_NAME:
        path = embedded_model_path()
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"the embedded model is missing from {path}: reinstall hallucue-mlx, or rebuild it "
                "with `hallucue-mlx model build-tiny --out DIR` and pass --model DIR"
            )
        return path
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ModelLoadError(f"model {str(model)!r} has no config.json: {_example_hint()}")
        return path
    name = str(model)
    if not _HUB_ID.match(name) or name.startswith((".", "/", "~")):
        raise ModelLoadError(f"model {name!r} not found: {_example_hint()}")

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    patterns = ["*.json", "*.jsonl", "*.safetensors", "*.py", "*.model", "*.txt", "*.jinja"]
    try:
        return Path(snapshot_download(repo_id=name, allow_patterns=patterns))
    except GatedRepoError as e:
        raise ModelLoadError(
            f"model {name!r} is gated on the Hugging Face hub: accept its licence on the model "
            "page and log in with `hf auth login`"
        ) from e
    except RepositoryNotFoundError as e:
        raise ModelLoadError(
            f"model {name!r} not found on the Hugging Face hub: {_example_hint()}"
        ) from e
    except (LocalEntryNotFoundError, OSError) as e:
        # Offline mode, no network, or a partial cache all end here.
        raise ModelLoadError(
            f"model {name!r} is not in the local Hugging Face cache and the hub cannot be reached "
            "(offline or HF_HUB_OFFLINE=1), and there is no local directory "
            f"{str(path.resolve())!r} either. Run once online to download it, or pass a local "
            "directory with the converted model."
        ) from e


def read_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ModelLoadError(f"cannot read {path}: {e}") from e
    if not isinstance(config, dict):
        raise ModelLoadError(
            f"{path} must be a JSON object (with model_type etc.), got {type(config).__name__}: "
            "restore the model's config.json or download the model again"
        )
    return config


# No LoRA matrix a training makes holds an entry this large (A starts within 1/sqrt(in_dims), B at
# 0, and an AdamW step moves an entry by about the learning rate, at most 1): such an adapter was
# scaled or damaged by hand, and its model answers noise ("!!!!").
ADAPTER_MAX_ABS = 1e3


class BadAdapterWeights(ValueError):
    """An adapter's LoRA weights are not finite or absurdly large; the message names a tensor."""


def weights_problem(weights: dict[str, Any]) -> str | None:
    """Why these LoRA weights cannot be a trained adapter (a tensor with NaN or inf entries, or
    one over ADAPTER_MAX_ABS), or None: one pass over the (small) A/B matrices."""
    import mlx.core as mx

    names = sorted(weights)
    if not names:
        return None
    finite = mx.stack([mx.all(mx.isfinite(weights[k])) for k in names])
    peak = mx.stack([mx.max(mx.abs(weights[k].astype(mx.float32))) for k in names])
    mx.eval(finite, peak)
    for k, ok, top in zip(names, finite.tolist(), peak.tolist(), strict=True):
        if not ok:
            return f"{k} holds NaN or infinite entries"
        if top > ADAPTER_MAX_ABS:
            return (
                f"{k} holds an entry of {top:.3g}, over the {ADAPTER_MAX_ABS:g} no training makes"
            )
    return None


def family_of_config(config: dict[str, Any], where: str = "config.json") -> str:
    """The project family ("qwen2_5_vl", "qwen2_vl", "idefics3") of a config dict."""
    from mlx_vlm.utils import get_model_type

    model_type = get_model_type(config)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelLoadError(
            f"{where}: model_type {model_type!r} is not supported; supported model types are "
            f"{', '.join(SUPPORTED_MODEL_TYPES)} (Qwen2.5-VL, Qwen2-VL, SmolVLM/Idefics3)"
        )
    return SUPPORTED_MODEL_TYPES[model_type]


def model_family(model: Any) -> str:
    """Family of a loaded model, a config dict, or a local model directory."""
    config = getattr(model, "config", None)  # checked first: an mlx nn.Module is a dict too
    if config is not None:
        model_type = getattr(config, "model_type", None)
        return family_of_config({"model_type": model_type}, f"{type(model).__name__}.config")
    if isinstance(model, dict):
        return family_of_config(model)
    if isinstance(model, (str, Path)):
        model_dir = resolve_model_dir(model)
        return family_of_config(read_config(model_dir), str(model_dir / "config.json"))
    raise ModelLoadError(f"cannot tell the family of {type(model).__name__}: no config.model_type")


def check_safetensors(model_dir: Path) -> None:
    """ModelLoadError unless model_dir holds *.safetensors weights, each whole (header and size)."""
    files = sorted(model_dir.glob("*.safetensors"))
    for path in files:
        problem = _safetensors_problem(path)
        if problem is not None:
            raise ModelLoadError(
                f"weights file {path} is damaged ({problem}): download or convert the model "
                "again (an interrupted download leaves such files)"
            )
    if files:
        return
    pickles = sorted(p.name for p in model_dir.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    if pickles:
        raise ModelLoadError(
            f"{model_dir} holds only pickle weights ({', '.join(pickles[:3])}); hallucue-mlx loads "
            "safetensors only, because unpickling can run arbitrary code. Convert the checkpoint "
            "with `python -m mlx_vlm.convert --hf-path <dir> --mlx-path <out>` or use a "
            "safetensors release of the model."
        )
    raise ModelLoadError(f"{model_dir} has no *.safetensors weights")


def _linear_dims(module) -> tuple[int, int] | None:
    """(out, in) of an nn.Linear / nn.QuantizedLinear, None for anything else."""
    weight = getattr(module, "weight", None)
    if weight is None or weight.ndim != 2:
        return None
    bits = getattr(module, "bits", None)
    out_dims, in_dims = weight.shape
    return (out_dims, in_dims * 32 // bits) if bits else (out_dims, in_dims)


def _adapter_mismatches(model, saved: dict) -> list[str]:
    """Adapter tensors that do not fit the base model, checked before anything is attached."""
    modules = dict(model.named_modules())
    problems = []
    for key, array in saved.items():
        path, _, leaf = key.rpartition(".")
        module = modules.get(path)
        if module is None:
            problems.append(f"{key} has no module {path!r} in the model")
            continue
        dims = _linear_dims(module)
        if leaf not in ("lora_a", "lora_b") or dims is None:
            continue
        out_dims, in_dims = dims
        want = (in_dims, array.shape[1]) if leaf == "lora_a" else (array.shape[0], out_dims)
        if tuple(array.shape) != want:
            problems.append(f"{key}: adapter {tuple(array.shape)} vs model {want}")
    return problems


def _apply_adapter(model, adapter: str | Path, model_name: str):
    """Attach a saved LoRA adapter with mlx-vlm's mechanism, refusing one made for another model."""
    import mlx.core as mx
    from mlx_vlm.utils import apply_lora_layers

    adapter_path = Path(adapter).expanduser()
    weights_file = adapter_path
    if adapter_path.is_dir():
        weights_file = adapter_path / "adapters.safetensors"
        if not weights_file.is_file():
            weights_file = adapter_path / "weights.safetensors"
    if not weights_file.is_file():
        raise ModelLoadError(
            f"adapter {str(adapter)!r} not found: give the adapter directory (adapters.safetensors "
            "and adapter_config.json) or its .safetensors file"
        )
    problem = _safetensors_problem(weights_file)
    if problem is not None:
        raise ModelLoadError(
            f"adapter weights file {weights_file} is damaged ({problem}): train or copy the "
            "adapter again"
        )
    # mlx-vlm loads adapter weights with strict=False, which skips shape checks: check first.
    saved = mx.load(str(weights_file))
    problem = weights_problem({k: v for k, v in saved.items() if k.endswith(("lora_a", "lora_b"))})
    if problem is not None:
        raise ModelLoadError(
            f"adapter {str(adapter)!r} is not usable: {problem}{_saved_at(weights_file)}; it "
            "comes from a training that diverged or was damaged: use an earlier checkpoint "
            "(checkpoints/step_N) or train again"
        )
    problems = _adapter_mismatches(model, saved)
    if problems:
        raise ModelLoadError(
            f"adapter {str(adapter)!r} does not fit base model {model_name!r}: "
            f"{len(problems)} tensors do not match (e.g. {problems[0]}). "
            "Load the adapter with the base model it was trained on."
        )
    try:
        model = apply_lora_layers(model, adapter_path)
    except (FileNotFoundError, ValueError, AttributeError, KeyError) as e:
        raise ModelLoadError(
            f"cannot apply adapter {str(adapter)!r} to base model {model_name!r} (was it "
            f"trained on another base model?): {e}"
        ) from e
    _check_all_applied(model, saved, adapter)
    model.eval()
    return model


def _saved_at(weights_file: Path) -> str:
    """' (saved at step N)' when the adapter's folder is a checkpoint (state.json) or a finished
    training's adapter (../done.json); '' when that is not known."""
    folder = weights_file.parent
    for marker in (folder / "state.json", folder.parent / "done.json"):
        try:
            step = read_state_json(marker)["step" if marker.name == "state.json" else "steps"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(step, int):
            return f" (saved at step {step})"
    return ""


def _check_all_applied(model, saved: dict, adapter: str | Path) -> None:
    """strict=False also drops, silently, saved tensors that have no LoRA layer in the model
    (an adapter_config.json listing fewer layers than the weights hold): refuse a partial adapter."""
    from mlx.utils import tree_flatten

    have = {k for k, _ in tree_flatten(model.parameters())}
    dropped = sorted(k for k in saved if k not in have)
    if dropped:
        raise ModelLoadError(
            f"adapter {str(adapter)!r}: its adapter_config.json sets up LoRA for fewer layers "
            f"than its weights hold, so only {len(saved) - len(dropped)} of {len(saved)} tensors "
            f"would be applied (e.g. {dropped[0]} has no LoRA layer); fix num_layers and "
            "lora_parameters.keys in adapter_config.json, or use the adapter folder as saved"
        )


def set_image_sizes(
    processor: Any,
    family: str,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    max_image_pixels: int | None = MAX_IMAGE_PIXELS,
) -> None:
    """Tell the processor how large the images it passes on may be (None keeps the checkpoint's
    setting), and record the largest image the rollout accepts (forward.encode_prompt refuses
    bigger ones, naming the item, before the processor sees them)."""
    if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
        raise ModelLoadError(
            f"model.min_pixels ({min_pixels}) is larger than model.max_pixels ({max_pixels}); "
            "lower min_pixels or raise max_pixels"
        )
    if (min_pixels is not None or max_pixels is not None) and family not in QWEN:
        raise ModelLoadError(
            f"model.min_pixels / model.max_pixels apply to Qwen2-VL and Qwen2.5-VL; a {family} "
            "processor sizes images by their longest edge (size.longest_edge in its "
            "preprocessor_config.json). Set both to null for this model."
        )
    ip = getattr(processor, "image_processor", None)
    if ip is not None:
        size = dict(getattr(ip, "size", None) or {})
        # mlx-vlm reads the attributes, transformers 5 reads `size`: keep both in step
        if min_pixels is not None:
            ip.min_pixels = min_pixels
            size["shortest_edge"] = min_pixels
        if max_pixels is not None:
            ip.max_pixels = max_pixels
            size["longest_edge"] = max_pixels
        if size and family in QWEN:
            ip.size = size
    processor.max_image_pixels = max_image_pixels


def match_published_numerics(model: Any) -> list[str]:
    """Correct what mlx-vlm builds differently from the published model; returns what changed.

    mlx-vlm 0.7.10's Idefics3 vision tower makes its final LayerNorm (`post_layernorm`) with
    MLX's default eps 1e-5 instead of the config's `layer_norm_eps` (1e-6 for SmolVLM's SigLIP),
    which transformers uses: at SmolVLM-256M's width it moved the image features by 4e-5
    relative (`scripts/parity_transformers.py`). Idempotent."""
    import mlx.nn as nn

    changed: list[str] = []
    if getattr(model.config, "model_type", "") not in ("idefics3", "smolvlm"):
        return changed
    eps = float(model.config.vision_config.layer_norm_eps)
    for name, module in model.vision_model.named_modules():
        if isinstance(module, nn.LayerNorm) and module.eps != eps:
            changed.append(f"vision_model.{name}.eps {module.eps} -> {eps}")
            module.eps = eps
    return changed


def load_model(
    model: str | Path,
    adapter: str | Path | None = None,
    *,
    dtype: str | None = None,
    trust_remote_code: bool = False,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    max_image_pixels: int | None = MAX_IMAGE_PIXELS,
):
    """Load (model, processor) from a hub id or local directory, with an optional LoRA adapter.

    `dtype` is one of backend.DTYPES; None means "auto" (float32 on CPU, bfloat16 on Metal/CUDA).
    Floating-point parameters (adapter included) are cast to it. min/max_pixels and
    max_image_pixels: see set_image_sizes (config keys model.min_pixels, ...).
    """
    import mlx_vlm

    mx_dtype = resolve_dtype(dtype or "auto")
    model_dir = resolve_model_dir(model)
    family_of_config(read_config(model_dir), str(model_dir / "config.json"))
    check_safetensors(model_dir)
    try:
        loaded, processor = mlx_vlm.load(str(model_dir), trust_remote_code=trust_remote_code)
    except ValueError as e:
        raise ModelLoadError(f"cannot load model {str(model)!r} from {model_dir}: {e}") from e
    match_published_numerics(loaded)
    if adapter is not None:
        loaded = _apply_adapter(loaded, adapter, str(model))
    loaded.set_dtype(mx_dtype)
    set_image_sizes(processor, family(loaded), min_pixels, max_pixels, max_image_pixels)
    return loaded, processor
