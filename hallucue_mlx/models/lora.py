"""LoRA on the language model's linear layers, in the adapter format `mlx_vlm.load` reads.

The layer keeps mlx-vlm's parameter names (`linear`, `lora_a`, `lora_b`, `scale`), so a saved
`adapters.safetensors` + `adapter_config.json` loads with `mlx_vlm.load(base, adapter_path=dir)`.
The KL reference of GRPO is the same model with every LoRA scale set to 0 (`lora_disabled`): no
second copy of the weights. Quantized bases (QuantizedLinear) work unchanged (QLoRA).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from hallucue_mlx import atomic
from hallucue_mlx.config import DEFAULT_TARGETS
from hallucue_mlx.models import arch
from hallucue_mlx.models.load import BadAdapterWeights, weights_problem
from hallucue_mlx.runfolder import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from hallucue_mlx.safefile import safetensors_problem


@dataclass
class LoraConfig:
    rank: int = field(default=8, metadata={"help": "LoRA rank r."})
    alpha: float = field(
        default=16.0, metadata={"help": "LoRA alpha; the update is scaled by alpha / rank."}
    )
    dropout: float = field(
        default=0.0,
        metadata={"help": "Dropout on the LoRA input (0 keeps rollout and loss log-probs equal)."},
    )
    target_modules: tuple[str, ...] = field(
        default=DEFAULT_TARGETS,
        metadata={"help": "Names of the linear layers to adapt (last name component)."},
    )
    num_layers: int = field(
        default=-1, metadata={"help": "Adapt only the last N decoder layers (-1: all)."}
    )
    train_vision: bool = field(
        default=False,
        metadata={"help": "Also adapt the vision tower's blocks (frozen by default)."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of the LoRA A initialisation."})

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def validate(self) -> None:
        if self.rank < 1:
            raise ValueError(f"lora rank must be >= 1, got {self.rank}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"lora dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ValueError(
                "lora target_modules is empty; name at least one linear layer, e.g. q_proj"
            )


class LoRALinear(nn.Module):
    """y = linear(x) + scale * (dropout(x) @ A) @ B, with B = 0 at start (identity update)."""

    def __init__(self, linear: nn.Module, rank: int, scale: float, dropout: float, key: mx.array):
        super().__init__()
        out_dims, in_dims = linear.weight.shape
        if isinstance(linear, nn.QuantizedLinear):
            in_dims = in_dims * 32 // linear.bits
        self.linear = linear
        self.dropout = nn.Dropout(p=dropout)
        self.scale = scale
        bound = 1 / math.sqrt(in_dims)
        self.lora_a = mx.random.uniform(-bound, bound, (in_dims, rank), key=key)
        self.lora_b = mx.zeros((rank, out_dims))

    def __call__(self, x: mx.array) -> mx.array:
        y = self.linear(x)
        if self.scale == 0:  # LoRA switched off (the GRPO reference): skip the low-rank matmuls
            return y
        # the scale goes on B (rank x out), not on the (rows, out) product: two full-size
        # passes fewer per layer in a loss forward + backward; with a power-of-two scale (the
        # default alpha / rank = 2) the same numbers bit for bit
        z = (self.dropout(x) @ self.lora_a) @ (self.scale * self.lora_b)
        return y + z.astype(x.dtype)


def _is_linear(m: nn.Module) -> bool:
    return isinstance(m, (nn.Linear, nn.QuantizedLinear))


def _target_names(model: nn.Module, cfg: LoraConfig) -> list[str]:
    """Full module names (from the model root) of the layers to adapt."""
    layers = arch.text_stack(model).layers
    n = len(layers) if cfg.num_layers < 0 else min(cfg.num_layers, len(layers))
    at = arch.layer_prefix(model)
    prefixes = [f"{at}.{i}." for i in range(len(layers) - n, len(layers))]
    if cfg.train_vision and hasattr(model, "vision_tower"):
        prefixes.append("vision_tower.")
    targets = set(cfg.target_modules)
    names = sorted(
        name
        for name, m in model.named_modules()
        if _is_linear(m) and name.rsplit(".", 1)[-1] in targets and name.startswith(tuple(prefixes))
    )
    if not names:
        available = sorted(
            {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if _is_linear(m)}
        )
        raise ValueError(
            f"no linear layer matches lora target_modules={list(cfg.target_modules)}; "
            f"available names: {available}"
        )
    return names


def apply_lora(model: nn.Module, cfg: LoraConfig) -> list[str]:
    """Freeze the model and wrap the target linear layers in LoRALinear; returns their names."""
    cfg.validate()
    model.freeze()
    names = _target_names(model, cfg)
    modules = dict(model.named_modules())
    keys = mx.random.split(mx.random.key(cfg.seed), len(names))
    new = [
        (name, LoRALinear(modules[name], cfg.rank, cfg.scale, cfg.dropout, keys[i]))
        for i, name in enumerate(names)
    ]
    model.update_modules(tree_unflatten(new))
    model._hallucue_lora = (cfg, names)
    mx.eval(model.trainable_parameters())
    return names


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [m for _, m in model.named_modules() if isinstance(m, LoRALinear)]


@contextmanager
def lora_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block the model is the base model (every LoRA scale is 0)."""
    layers = lora_layers(model)
    scales = [m.scale for m in layers]
    for m in layers:
        m.scale = 0.0
    try:
        yield model
    finally:
        for m, s in zip(layers, scales):
            m.scale = s


@contextmanager
def lora_folded(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block each LoRA layer over a full-precision base computes with W + scale * (A B)^T
    in one matmul and its side branch off: a decoded token costs one matmul per adapted layer
    instead of three small ones, which dominate decoding on small models. Quantized bases keep
    the side branch (folding would need dequantizing). Weights and scales are restored on exit;
    take no gradients inside."""
    saved = []
    for m in lora_layers(model):
        if m.scale == 0 or isinstance(m.linear, nn.QuantizedLinear):
            continue
        w = m.linear.weight
        saved.append((m, w, m.scale))
        m.linear.weight = w + (m.scale * (m.lora_a @ m.lora_b)).T.astype(w.dtype)
        m.scale = 0.0
        # one layer at a time: evaluated together, the products of every layer were alive at
        # once (measured: the fold cost 1.9x the adapted weights, not 1x)
        mx.eval(m.linear.weight)
    try:
        yield model
    finally:
        for m, w, s in saved:
            m.linear.weight = w
            m.scale = s


def adapter_weights(model: nn.Module) -> dict[str, mx.array]:
    """The LoRA A/B matrices by full parameter name."""
    return {k: v for k, v in tree_flatten(model.parameters()) if k.endswith((".lora_a", ".lora_b"))}


def _quantization_of_base(model: nn.Module) -> dict[str, dict]:
    """Quantization of the base layers by their pre-LoRA names (mlx-vlm restores it before LoRA)."""
    out = {}
    for name, m in model.named_modules():
        base, base_name = m, name
        if isinstance(m, LoRALinear):
            base = m.linear
        elif name.endswith(".linear"):
            continue
        if isinstance(base, (nn.QuantizedLinear, nn.QuantizedEmbedding)):
            out[base_name] = {
                "group_size": base.group_size,
                "bits": base.bits,
                "mode": getattr(base, "mode", "affine"),
            }
    return out


def adapter_config(model: nn.Module) -> dict:
    cfg, names = model._hallucue_lora
    return {
        "fine_tune_type": "lora",
        "num_layers": cfg.num_layers,
        "lora_parameters": {
            "rank": cfg.rank,
            "dropout": cfg.dropout,
            "scale": cfg.scale,
            "keys": names,
        },
        "base_quantization": _quantization_of_base(model),
        # Ours, for resuming with the same settings (mlx-vlm ignores it).
        "hallucue_lora": {**asdict(cfg), "target_modules": list(cfg.target_modules)},
    }


def save_adapter(model: nn.Module, out_dir: str | Path) -> Path:
    """Write adapters.safetensors + adapter_config.json (each atomically) into out_dir."""
    if not hasattr(model, "_hallucue_lora"):
        raise ValueError(
            "save_adapter: the model has no LoRA layers; call apply_lora(model, cfg) first"
        )
    out = Path(out_dir)
    weights = adapter_weights(model)
    problem = weights_problem(weights)
    if problem is not None:
        raise BadAdapterWeights(f"the LoRA weights to save in {out} are not usable: {problem}")
    out.mkdir(parents=True, exist_ok=True)
    # atomic's temp name keeps the .safetensors suffix (MLX would append one otherwise).
    atomic.write_with(out / ADAPTER_WEIGHTS, lambda p: mx.save_safetensors(str(p), weights))
    atomic.write_json(out / ADAPTER_CONFIG, adapter_config(model), indent=2, end="")
    return out


def read_lora_config(adapter_dir: str | Path) -> LoraConfig:
    path = Path(adapter_dir) / ADAPTER_CONFIG
    if not path.is_file():
        raise FileNotFoundError(
            f"no {ADAPTER_CONFIG} in {adapter_dir}; pass a folder written by save_adapter"
        )
    raw = json.loads(path.read_text())
    if "hallucue_lora" in raw:
        d = dict(raw["hallucue_lora"])
        d["target_modules"] = tuple(d["target_modules"])
        return LoraConfig(**d)
    p = raw["lora_parameters"]
    targets = tuple(sorted({k.rsplit(".", 1)[-1] for k in p["keys"]}))
    return LoraConfig(
        rank=p["rank"],
        alpha=p["scale"] * p["rank"],
        dropout=p["dropout"],
        target_modules=targets,
        num_layers=raw.get("num_layers", -1),
    )


def load_adapter_weights(model: nn.Module, adapter_dir: str | Path) -> None:
    """Load saved A/B matrices into a model that already has the same LoRA layers."""
    path = Path(adapter_dir) / ADAPTER_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"no {ADAPTER_WEIGHTS} in {adapter_dir}")
    problem = safetensors_problem(path)
    if problem is not None:
        raise BadAdapterWeights(f"{path} is damaged ({problem}); it cannot be loaded")
    weights = mx.load(str(path))
    problem = weights_problem(weights)
    if problem is not None:
        raise BadAdapterWeights(f"{path} cannot be loaded: {problem}")
    have = adapter_weights(model)
    missing = sorted(set(have) - set(weights))
    if missing:
        raise ValueError(
            f"{path} lacks {len(missing)} LoRA weights, e.g. {missing[0]}; was it saved with the same LoRA config?"
        )
    extra = sorted(set(weights) - set(have))
    if extra:
        raise ValueError(
            f"{path} holds {len(weights)} LoRA tensors but its {ADAPTER_CONFIG} sets up LoRA for "
            f"only {len(weights) - len(extra)} of them (e.g. {extra[0]} has no LoRA layer); fix "
            f"num_layers / target_modules in {ADAPTER_CONFIG}, or use the folder as saved"
        )
    model.load_weights(list(weights.items()), strict=False)
    mx.eval(model.parameters())


def attach_adapter(model: nn.Module, adapter_dir: str | Path) -> LoraConfig:
    """Apply the LoRA layers described in adapter_dir and load its weights (for resume and eval)."""
    cfg = read_lora_config(adapter_dir)
    apply_lora(model, cfg)
    load_adapter_weights(model, adapter_dir)
    return cfg


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; quantized weights count their packed size."""
    trainable = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    total = sum(v.size for _, v in tree_flatten(model.parameters()))
    return trainable, total
