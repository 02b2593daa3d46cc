"""`hallucue-mlx plan`: peak memory and time of a run config, predicted before anything runs.

Everything here is arithmetic on the model's config.json (or its published config, offline) and
the run config; nothing is loaded or run except two short speed measurements of this machine.
The memory model follows what our code keeps alive, phase by phase (rollout, reference, loss,
update; evaluation), with the constants measured at real widths by `scripts/check_plan.py`:

- weights: every stored tensor, floating ones cast to the compute dtype (quantized layers keep
  their packed integers; their scales and biases are floating);
- LoRA: parameters, AdamW's two moments (float32) and, during the update, gradients;
- rollout: the image features of every prompt, the prompts' KV cache (kept while decoding), the
  decoding cache of P x G rows x (prompt + completion) allocated up front, and the LoRA-folded
  copy of the adapted full-precision weights;
- loss forward/backward (`forward.completion_logprobs` under `nn.value_and_grad`), one
  micro-batch at a time (`train.micro_batch_size_per_device_for_update` completions): MLX keeps
  the forward's intermediates alive until the backward has used them, so memory grows with every
  layer and every prompt of the micro-batch; gradient checkpointing keeps only each layer's
  inputs. The vocabulary head runs in chunks of positions (`forward.head_logprobs`), so at most
  one chunk's float32 logits are alive, forward and backward; a group whose logits fit in one
  chunk runs unchunked (its logits alive until the backward).
- `auto_micro_batch`: with the key at 0, the largest micro-batch whose step peak fits the
  machine (the same arithmetic, nothing run); training resolves it the same way.

Times: decoding is bandwidth-bound (all weights read once per token, plus a per-layer overhead),
prefill, the loss forward and backward are compute-bound; the efficiency factors are stated below.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hallucue_mlx.backend import (
    backend_name,
    matmul_gflops,
    memory_gbps,
    quantized_cpu_warning,
    quantized_gflops,
)
from hallucue_mlx.config import RunConfig, TrainConfig
from hallucue_mlx.data.synth import DEFAULT_SIZES
from hallucue_mlx.models.arch import head_chunk_rows
from hallucue_mlx.models.load import (
    EMBEDDED_NAME,
    ModelLoadError,
    _safetensors_problem,
    embedded_model_path,
    family_of_config,
)
from hallucue_mlx.models.shapes import SHAPES, shape_for
from hallucue_mlx.safefile import FileKindError, read_input

GB = 1e9


class PlanError(ValueError):
    """The plan cannot be made (no config.json for the model, ...); the message names the fix."""


# ================================================================ chips

# Published figures: memory bandwidth (GB/s) and GPU FP32 TFLOPS (Apple GPUs run FP16 at the same
# rate). Apple published TFLOPS for M1 and M2; M3 and M4 are GPU cores x 128 ALUs x 2 x clock
# ("estimate"). memory_gb: the smallest memory the chip ships with.


@dataclass(frozen=True)
class Chip:
    name: str
    bandwidth_gbs: float
    tflops: float
    memory_gb: float
    source: str = "Apple"


CHIPS: dict[str, Chip] = {
    c.name.lower(): c
    for c in (
        Chip("M1", 68.25, 2.6, 8),
        Chip("M1 Pro", 200, 5.2, 16),
        Chip("M1 Max", 400, 10.4, 32),
        Chip("M1 Ultra", 800, 21.0, 64),
        Chip("M2", 100, 3.6, 8),
        Chip("M2 Pro", 200, 6.8, 16),
        Chip("M2 Max", 400, 13.6, 32),
        Chip("M2 Ultra", 800, 27.2, 64),
        Chip("M3", 100, 4.1, 8, "estimate"),
        Chip("M3 Pro", 150, 7.4, 18, "estimate"),
        Chip("M3 Max", 400, 16.4, 36, "estimate"),
        Chip("M3 Ultra", 819, 32.8, 96, "estimate"),
        Chip("M4", 120, 4.3, 16, "estimate"),
        Chip("M4 Pro", 273, 9.2, 24, "estimate"),
        Chip("M4 Max", 546, 18.4, 36, "estimate"),
        # M5 (October 2025): 153 GB/s and 16 GB from Apple; the 10-core GPU's FP32 rate is
        # estimated at the M4's clock (its per-core neural accelerators are not counted)
        Chip("M5", 153, 4.3, 16, "estimate"),
    )
}

# Efficiency: matmul-heavy passes reach COMPUTE_EFFICIENCY of the GPU's peak; a decoded token
# reads the weights at BANDWIDTH_EFFICIENCY of the peak bandwidth plus LAYER_OVERHEAD_S per layer
# (kernel launches). The last two fit the published MLX decode speeds on an M4 Pro (field notes:
# ~55 tok/s Qwen2.5-VL-3B-4bit, ~74 tok/s Qwen2-VL-2B-4bit) within 10%.
COMPUTE_EFFICIENCY = 0.4
BANDWIDTH_EFFICIENCY = 0.85
LAYER_OVERHEAD_S = 0.3e-3
# This machine: passes run at CPU_EFFICIENCY of the measured 1024^3 matmul speed.
CPU_EFFICIENCY = 0.5


# macOS lets the GPU wire about 2/3 of memory up to 36 GB and 3/4 above (MLX's recommended
# working set); past it the run swaps or is killed.
def usable_gb(memory_gb: float, gpu: bool = True) -> float:
    """Memory a run can use on a machine with memory_gb: the GPU working set on a Mac, else all."""
    if not gpu:
        return memory_gb
    return memory_gb * (2 / 3 if memory_gb <= 36 else 3 / 4)


def chip(name: str) -> Chip:
    """The chip called `name` (case-insensitive), or PlanError naming the known ones."""
    found = CHIPS.get(" ".join(name.split()).lower())
    if found is None:
        known = ", ".join(c.name for c in CHIPS.values())
        raise PlanError(f"unknown chip {name!r}; known chips: {known}")
    return found


# ================================================================ the model's shape


@dataclass(frozen=True)
class Arch:
    """What memory and time depend on, read from config.json."""

    family: str
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    tied: bool
    v_hidden: int
    v_layers: int
    v_intermediate: int
    v_heads: int
    patch: int
    patches_per_token: int  # patches merged into one image token
    v_window: int  # patches per attention window (all patches of an image: 0)
    v_full_layers: int  # vision blocks that attend over the whole image
    bits: int | None = None  # quantized weights
    group_size: int = 64
    # tensors of the checkpoint as (dtype, shape), when its weights are at hand (exact bytes)
    tensors: tuple[tuple[str, tuple[int, ...]], ...] = ()

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each decoder layer's linear layers, by mlx-vlm's names."""
        d, inter = self.hidden, self.intermediate
        return {
            "q_proj": (d, self.q_dim),
            "k_proj": (d, self.kv_dim),
            "v_proj": (d, self.kv_dim),
            "o_proj": (self.q_dim, d),
            "gate_proj": (d, inter),
            "up_proj": (d, inter),
            "down_proj": (inter, d),
        }

    @property
    def layer_params(self) -> int:
        """Parameters of one decoder layer (matrices; norms and biases are negligible)."""
        return sum(i * o for i, o in self.linears().values())

    @property
    def embed_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def vision_params(self) -> int:
        Dv, Iv = self.v_hidden, self.v_intermediate
        mats = 4 * Dv * Dv + (3 if self.family == "qwen2_5_vl" else 2) * Dv * Iv
        merged = Dv * self.patches_per_token
        # Qwen's merger is a two-layer MLP on merged patches; Idefics3's connector one projection
        merger = merged * self.hidden + (merged * merged if self.family != "idefics3" else 0)
        return self.v_layers * mats + merger + 3 * self.patch * self.patch * 2 * Dv


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    text = config.get("text_config") or {}
    return {**text, **{k: v for k, v in config.items() if k not in text or k == "vocab_size"}}


def arch_from_config(
    config: dict[str, Any], tensors: tuple[tuple[str, tuple[int, ...]], ...] = ()
) -> Arch:
    """An Arch from a config.json dict (Qwen2-VL, Qwen2.5-VL, Idefics3/SmolVLM); PlanError
    naming the key when the config is not an object, or lacks or mistypes a key it needs."""
    if not isinstance(config, dict):
        raise PlanError(
            f"config.json must be a JSON object (with model_type etc.), got "
            f"{type(config).__name__}: restore the model's config.json or download it again"
        )
    try:
        return _arch_from_config(config, tensors)
    except KeyError as e:
        raise PlanError(
            f"config.json has no {e.args[0]!r} (in it or its text_config / vision_config), which "
            "the plan needs: the folder is damaged or not a converted model; download or convert "
            "the model again"
        ) from None
    except (TypeError, ValueError, AttributeError, ZeroDivisionError) as e:
        if isinstance(e, PlanError):
            raise
        raise PlanError(
            f"config.json has a value of the wrong type or size ({e}): the folder is damaged; "
            "download or convert the model again"
        ) from None


def _arch_from_config(
    config: dict[str, Any], tensors: tuple[tuple[str, tuple[int, ...]], ...] = ()
) -> Arch:
    try:
        family = family_of_config(config)
    except ModelLoadError as e:
        raise PlanError(str(e)) from e
    t = _text_config(config) if family != "idefics3" else {**config["text_config"]}
    vocab = t.get("vocab_size") or config.get("vocab_size")
    v = config.get("vision_config") or {}
    quant = config.get("quantization") or config.get("quantization_config") or {}
    heads = t["num_attention_heads"]
    common = dict(
        family=family,
        vocab=int(vocab),
        hidden=t["hidden_size"],
        layers=t["num_hidden_layers"],
        heads=heads,
        kv_heads=t.get("num_key_value_heads", heads),
        head_dim=t.get("head_dim") or t["hidden_size"] // heads,
        intermediate=t["intermediate_size"],
        tied=bool(config.get("tie_word_embeddings", t.get("tie_word_embeddings", False))),
        bits=quant.get("bits"),
        group_size=quant.get("group_size", 64),
        tensors=tensors,
    )
    if family == "idefics3":
        s = config.get("scale_factor", 2)
        return Arch(
            **common,
            v_hidden=v["hidden_size"],
            v_layers=v["num_hidden_layers"],
            v_intermediate=v["intermediate_size"],
            v_heads=v["num_attention_heads"],
            patch=v["patch_size"],
            patches_per_token=s * s,
            v_window=0,
            v_full_layers=v["num_hidden_layers"],
        )
    merge = v.get("spatial_merge_size", 2)
    depth = v["depth"]
    if family == "qwen2_5_vl":
        Dv, Iv = v["hidden_size"], v["intermediate_size"]
        window = (v.get("window_size", 112) // v.get("patch_size", 14)) ** 2
        full = len(v.get("fullatt_block_indexes", []))
    else:
        Dv = v["embed_dim"]
        Iv = int(Dv * v.get("mlp_ratio", 4))
        window, full = 0, depth
    return Arch(
        **common,
        v_hidden=Dv,
        v_layers=depth,
        v_intermediate=Iv,
        v_heads=v["num_heads"],
        patch=v.get("patch_size", 14),
        patches_per_token=merge * merge,
        v_window=window,
        v_full_layers=full,
    )


# ================================================================ reading the model


_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "U32": 4, "I32": 4, "I64": 8}
_DTYPE_BYTES |= {"U8": 1, "I8": 1, "U16": 2, "I16": 2, "BOOL": 1, "U64": 8}


def safetensors_tensors(model_dir: Path) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """(dtype, shape) of every tensor in model_dir's *.safetensors, from their headers only."""
    out = []
    for path in sorted(model_dir.glob("*.safetensors")):
        problem = _safetensors_problem(path)
        if problem is not None:
            raise PlanError(
                f"weights file {path} is damaged ({problem}): download or convert the model again"
            )
        with path.open("rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        for name, t in header.items():
            if name != "__metadata__" and isinstance(t, dict):
                shape = t.get("shape")
                if not isinstance(shape, list) or not all(isinstance(x, int) for x in shape):
                    raise PlanError(f"weights file {path} has a damaged header (tensor {name})")
                out.append((t.get("dtype"), tuple(shape)))
    return tuple(out)


@dataclass(frozen=True)
class ModelSource:
    config: dict[str, Any]
    where: str  # what the config was read from, for the output
    model_dir: Path | None  # a local directory (its weights and processor files), if any


def _hub_cache_dir(model_id: str) -> Path | None:
    """The cached snapshot of a hub id, without touching the network; None if not cached."""
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(repo_id=model_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, or no huggingface_hub: both mean "no copy"
        return None
    return path if (path / "config.json").is_file() else None


def _config_json(model_dir: Path, name: str = "config.json") -> dict[str, Any]:
    """A model folder's JSON file as an object; PlanError naming it when it is not one."""
    path = model_dir / name
    try:
        data = json.loads(read_input(path, 64 << 20, "model config"))
    except FileKindError as e:
        raise PlanError(str(e)) from None
    except (OSError, ValueError) as e:
        raise PlanError(
            f"cannot read {path} ({e}): restore it, or download or convert the model again"
        ) from None
    if not isinstance(data, dict):
        raise PlanError(
            f"{path} must be a JSON object, got {type(data).__name__}: restore it, or download "
            "or convert the model again"
        )
    return data


def read_model(model_id: str) -> ModelSource:
    """The model's config.json: the embedded model, a local directory, the hub cache, or (offline)
    the published config of a model hallucue-mlx knows the shape of."""
    if model_id == EMBEDDED_NAME:
        d = embedded_model_path()
        return ModelSource(_config_json(d), "embedded model", d)
    path = Path(model_id).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise PlanError(
                f"model directory {model_id!r} has no config.json: give the folder of a converted model"
            )
        return ModelSource(_config_json(path), str(path), path)
    cached = _hub_cache_dir(model_id)
    if cached is not None:
        return ModelSource(_config_json(cached), "hub cache", cached)
    shape = shape_for(model_id)
    if shape is not None:
        config = json.loads(json.dumps(shape.config))
        bits = re.search(r"-(\d+)bit$", model_id)
        if bits:  # mlx-community's conversions: group size 64, vision tower unquantised
            config["quantization"] = {"group_size": 64, "bits": int(bits.group(1))}
        return ModelSource(config, "published config (not downloaded)", None)
    known = ", ".join(sorted({h for s in SHAPES.values() for h in s.hub_ids}))
    raise PlanError(
        f"model {model_id!r}: no local directory, no copy in the Hugging Face cache, and not a "
        f"model whose published config hallucue-mlx knows ({known}). Download it once "
        "(any hallucue-mlx command that loads it, while online) or pass model.id as a local "
        "directory with its config.json."
    )


# ================================================================ the workload


@dataclass(frozen=True)
class Workload:
    """What the run config asks for, plus the stated assumptions about its data."""

    prompts: int  # P, prompts per step
    generations: int  # G
    completion: int  # T, max completion tokens
    beta: float
    grad_checkpoint: bool
    lora_rank: int
    lora_targets: tuple[str, ...]
    lora_layers: int
    eval_batch: int
    eval_samples: int
    eval_tokens: int
    dtype_bytes: int
    text_tokens: int  # prompt text (template + question), assumed
    image: tuple[int, int] | None  # (width, height) of a typical image, assumed
    min_pixels: int | None = None  # None: the processor's
    max_pixels: int | None = None
    gpu: bool = True  # Metal: fused attention while decoding/prefilling; CPU: materialised scores
    micro_batch: int = 0  # completions per loss forward/backward (0: the whole batch)
    head_rows: int | None = None  # positions per chunk of the vocabulary head (0: unchunked)


@dataclass(frozen=True)
class Processor:
    """The image processor's settings that decide how many tokens an image becomes."""

    min_pixels: int = 56 * 56
    max_pixels: int = 14 * 14 * 4 * 16384
    longest_edge: int = 4 * 512  # idefics3: the image is resized to this longest edge ...
    tile: int = 512  # ... then cut into tiles of this side, plus one global tile
    splitting: bool = True


def processor_of(src: ModelSource, family: str) -> Processor:
    """The processor settings from preprocessor_config.json, or the family's published defaults."""
    p = Processor()
    pre: dict[str, Any] = {}
    if src.model_dir is not None and (src.model_dir / "preprocessor_config.json").is_file():
        pre = _config_json(src.model_dir, "preprocessor_config.json")
    if family == "idefics3":
        size = pre.get("size") or {}
        tile = pre.get("max_image_size") or {}
        return replace(
            p,
            longest_edge=size.get("longest_edge", p.longest_edge),
            tile=tile.get("longest_edge", p.tile),
            splitting=pre.get("do_image_splitting", p.splitting),
        )
    return replace(
        p,
        min_pixels=pre.get("min_pixels", p.min_pixels),
        max_pixels=pre.get("max_pixels", p.max_pixels),
    )


def image_tokens(
    arch: Arch, proc: Processor, image: tuple[int, int] | None, w: Workload
) -> tuple[int, int, int]:
    """(image tokens, vision patches, tiles) for one image of (width, height)."""
    if image is None:
        return 0, 0, 0
    width, height = image
    if arch.family == "idefics3":
        scale = proc.longest_edge / max(width, height)
        tw, th = max(1, round(width * scale)), max(1, round(height * scale))
        tiles = math.ceil(tw / proc.tile) * math.ceil(th / proc.tile) if proc.splitting else 1
        tiles += 1 if tiles > 1 else 0  # the global image beside the tiles
        per_tile = (proc.tile // arch.patch) ** 2
        return tiles * per_tile // arch.patches_per_token, tiles * per_tile, tiles
    lo = w.min_pixels or proc.min_pixels
    hi = w.max_pixels or proc.max_pixels
    f = arch.patch * int(math.isqrt(arch.patches_per_token))
    h_bar, w_bar = max(f, round(height / f) * f), max(f, round(width / f) * f)
    if h_bar * w_bar > hi:
        beta = math.sqrt(height * width / hi)
        h_bar, w_bar = math.floor(height / beta / f) * f, math.floor(width / beta / f) * f
    elif h_bar * w_bar < lo:
        beta = math.sqrt(lo / (height * width))
        h_bar, w_bar = math.ceil(height * beta / f) * f, math.ceil(width * beta / f) * f
    patches = (h_bar // arch.patch) * (w_bar // arch.patch)
    return patches // arch.patches_per_token, patches, 1


# ================================================================ memory

# What `nn.value_and_grad` over our loss keeps alive, per token and decoder layer, in elements of
# the compute dtype: ACT_D x hidden + ACT_I x intermediate (fitted at real widths of Qwen2.5-VL-3B,
# Qwen2-VL-2B and SmolVLM, float32: `scripts/check_plan.py --calibrate`). The backward
# needs BACKWARD_LAYERS more layers' worth as working memory. With gradient checkpointing a layer
# keeps CKPT_D x hidden per token, and one layer at a time is recomputed.
ACT_D = 12.4
ACT_I = 4.5
BACKWARD_LAYERS = 0.8
CKPT_D = 10.0
CKPT_RECOMPUTE_LAYERS = 1.6
# float32 (tokens x vocab) arrays alive per prompt in the loss (fitted with 64-token completions
# at the real vocabulary: logits, log-softmax, its gradient), plus one for the backward; and in
# a forward without gradient.
LOGIT_COPIES_GRAD = 3
LOGIT_COPIES = 3
# A chunked head (`forward.head_logprobs`) keeps about this many (chunk x vocab) float32 arrays
# alive while a chunk's backward recomputes it.
HEAD_CHUNK_COPIES = 4
# A vision block keeps about this many (patches x width) arrays alive at once (no gradient).
VISION_D = 4
VISION_I = 2


@dataclass
class Memory:
    """Predicted bytes by part, and the peaks of a GRPO step and of evaluation."""

    parts: dict[str, float] = field(default_factory=dict)
    train_peak: float = 0.0
    eval_peak: float = 0.0
    train_phase: str = ""  # which phase of the step sets its peak


def weight_bytes(arch: Arch, dtype_bytes: int) -> float:
    """Bytes of the loaded weights: from the checkpoint's tensors when known, else from the
    config (mlx-vlm's conversion quantizes the text model's linears and embedding, not the
    vision tower)."""
    if arch.tensors:
        total = 0.0
        for dtype, shape in arch.tensors:
            n = math.prod(shape)
            floating = dtype in ("F64", "F32", "F16", "BF16")
            total += n * (dtype_bytes if floating else _DTYPE_BYTES.get(dtype, 4))
        return total
    text = arch.layers * arch.layer_params + arch.embed_params
    vision = arch.vision_params * dtype_bytes
    if not arch.bits:
        return text * dtype_bytes + vision
    # packed weights plus a scale and a bias (compute dtype) per group
    return text * (arch.bits / 8 + 2 * dtype_bytes / arch.group_size) + vision


def lora_params(arch: Arch, w: Workload) -> int:
    layers = arch.layers if w.lora_layers < 0 else min(w.lora_layers, arch.layers)
    per_layer = sum(
        w.lora_rank * (i + o) for name, (i, o) in arch.linears().items() if name in w.lora_targets
    )
    return layers * per_layer


def folded_bytes(arch: Arch, w: Workload) -> float:
    """rollout.generate folds LoRA into full-precision base weights while decoding
    (models.lora.lora_folded) and keeps the originals to restore: a second copy of every adapted
    weight during rollouts. Quantized bases keep the side branch (nothing extra)."""
    if arch.bits:
        return 0.0
    layers = arch.layers if w.lora_layers < 0 else min(w.lora_layers, arch.layers)
    per_layer = sum(i * o for name, (i, o) in arch.linears().items() if name in w.lora_targets)
    return layers * per_layer * w.dtype_bytes


def kv_bytes(arch: Arch, rows: int, tokens: int, a: int) -> float:
    return arch.layers * 2 * rows * tokens * arch.kv_dim * a


def _act_per_token(arch: Arch, a: int) -> float:
    return (ACT_D * arch.hidden + ACT_I * arch.intermediate) * a


def vision_bytes(arch: Arch, patches: int, tiles: int, w: Workload, a: int) -> float:
    """Peak of one image through the vision tower (no gradient): a block's arrays, plus the
    attention scores where they are materialised (CPU; Metal fuses attention)."""
    if patches == 0:
        return 0.0
    block = patches * (VISION_D * arch.v_hidden + VISION_I * arch.v_intermediate) * a
    if w.gpu:
        return block
    span = patches // max(tiles, 1) if arch.v_window == 0 or arch.v_full_layers else arch.v_window
    return block + 2 * arch.v_heads * patches * span * a


def _prefill_bytes(arch: Arch, rows: int, length: int, w: Workload, a: int) -> float:
    """One layer's arrays for a batch of prompts (no gradient), plus its attention scores on CPU."""
    acts = rows * length * (4 * arch.hidden + 3 * arch.intermediate) * a
    scores = 0.0 if w.gpu else 3 * rows * arch.heads * length * length * a
    return acts + scores


def generate_bytes(
    arch: Arch, P: int, n: int, L: int, T: int, feats: float, vis: float, w: Workload, a: int
) -> float:
    """rollout.generate's peak: P prompts' features, their KV cache (kept while decoding), and
    either the prefill of one layer or the full decoding cache of P x n rows."""
    prompt_kv = kv_bytes(arch, P, L, a)
    decode = kv_bytes(arch, P * n, L + T, a) + P * n * arch.vocab * 4 * LOGIT_COPIES
    return P * feats + max(vis, prompt_kv + max(_prefill_bytes(arch, P, L, w, a), decode))


def micro_groups(w: Workload) -> tuple[int, int]:
    """(groups, completions per group) of one loss micro-batch (`grpo.micro_batches`)."""
    P, G = w.prompts, w.generations
    m = w.micro_batch if 0 < w.micro_batch < P * G else P * G
    return (min(P, m // G), G) if m >= G else (1, m)


def memory(arch: Arch, w: Workload, tokens_per_image: int, patches: int, tiles: int) -> Memory:
    """Peak memory of a GRPO step and of evaluation, by part (bytes)."""
    a = w.dtype_bytes
    L = w.text_tokens + tokens_per_image
    P, G, T = w.prompts, w.generations, w.completion
    feats = tokens_per_image * arch.hidden * a + patches * 3 * 2 * arch.patch**2 * 4
    vis = vision_bytes(arch, patches, tiles, w, a)
    lora = lora_params(arch, w)
    m = Memory()
    m.parts["weights"] = weight_bytes(arch, a)
    m.parts["LoRA + AdamW state"] = lora * 4 * 3
    m.parts["rollout (KV caches)"] = generate_bytes(arch, P, G, L, T, feats, vis, w, a)
    m.parts["rollout (LoRA folded into weights)"] = folded_bytes(arch, w)
    m.parts["vision tower (per image)"] = vis
    # one micro-batch at a time: k groups of g completions (g < G: a piece of one group)
    k, g = micro_groups(w)
    group_tokens = L + g * max(T - 1, 0)  # the prompt once, g completions
    n_mb = k * group_tokens
    act = _act_per_token(arch, a)
    rows = head_chunk_rows(arch.vocab) if w.head_rows is None else w.head_rows
    chunked = 0 < rows < g * T
    rows = rows if chunked else g * T
    chunk_logits = rows * arch.vocab * 4
    m.parts["reference log-probs"] = (
        P * feats + group_tokens * act + LOGIT_COPIES * chunk_logits if w.beta > 0 else 0.0
    )
    no_ck = n_mb * arch.layers * act + group_tokens * BACKWARD_LAYERS * act
    ck = n_mb * arch.layers * CKPT_D * arch.hidden * a
    ck += group_tokens * CKPT_RECOMPUTE_LAYERS * act
    # chunked: a chunk's logits live only in its forward and its recomputed backward; one piece:
    # every group's logits stay alive until the backward
    copies = HEAD_CHUNK_COPIES if chunked else k * LOGIT_COPIES_GRAD + 1
    logit_part = copies * chunk_logits
    m.parts["loss activations (no checkpointing)"] = no_ck
    m.parts["loss activations (checkpointing)"] = ck
    m.parts["loss logits (float32)"] = logit_part
    loss = P * feats + (ck if w.grad_checkpoint else no_ck) + logit_part + lora * 4 * 2
    update = lora * 4 * 4  # gradients, clipped gradients, new moments
    phases = {
        "rollout": m.parts["rollout (KV caches)"] + m.parts["rollout (LoRA folded into weights)"],
        "reference": m.parts["reference log-probs"],
        "loss": loss,
        "update": update,
    }
    m.train_phase = max(phases, key=phases.__getitem__)
    m.train_peak = m.parts["weights"] + m.parts["LoRA + AdamW state"] + phases[m.train_phase]
    Le = w.text_tokens + tokens_per_image
    m.parts["evaluation (KV caches)"] = generate_bytes(
        arch, w.eval_batch, w.eval_samples, Le, w.eval_tokens, feats, vis, w, a
    )
    m.eval_peak = m.parts["weights"] + m.parts["evaluation (KV caches)"]
    return m


# ================================================================ time


@dataclass(frozen=True)
class Speed:
    """How fast a machine runs the passes (effective rates, efficiency included)."""

    name: str
    flops: float  # FLOP/s of matmul-heavy passes
    bandwidth: float  # bytes/s read while decoding
    layer_overhead: float  # seconds per layer per decoded token
    memory_gb: float
    gpu: bool
    quant_flops: float | None = None  # CPU: quantized matmuls run at this (no fast kernel)


def chip_speed(c: Chip) -> Speed:
    return Speed(
        c.name,
        c.tflops * 1e12 * COMPUTE_EFFICIENCY,
        c.bandwidth_gbs * 1e9 * BANDWIDTH_EFFICIENCY,
        LAYER_OVERHEAD_S,
        c.memory_gb,
        True,
    )


def machine_speed(
    name: str, gflops: float, gbps: float, memory_gb: float, gpu: bool, quant_gflops: float | None
) -> Speed:
    """This machine from measured rates (backend.matmul_gflops, memory_gbps, quantized_gflops)."""
    eff = COMPUTE_EFFICIENCY if gpu else CPU_EFFICIENCY
    quant = None if gpu or quant_gflops is None else quant_gflops * 1e9
    return Speed(name, gflops * 1e9 * eff, gbps * 1e9, LAYER_OVERHEAD_S, memory_gb, gpu, quant)


@dataclass(frozen=True)
class Timing:
    rollout_s: float
    loss_s: float
    eval_item_s: float

    @property
    def step_s(self) -> float:
        return self.rollout_s + self.loss_s


def _text_flops(arch: Arch, tokens: float, ctx: float) -> float:
    return tokens * (2 * arch.layers * arch.layer_params + 4 * arch.layers * arch.q_dim * ctx)


def _vision_flops(arch: Arch, patches: int, tiles: int) -> float:
    if patches == 0:
        return 0.0
    span = patches / max(tiles, 1) if arch.v_window == 0 else arch.v_window
    mlp = (3 if arch.family == "qwen2_5_vl" else 2) * arch.v_hidden * arch.v_intermediate
    mats = 2 * patches * arch.v_layers * (4 * arch.v_hidden**2 + mlp)
    return mats + 4 * arch.v_layers * arch.v_hidden * patches * span


def timing(
    arch: Arch, w: Workload, s: Speed, tokens_per_image: int, patches: int, tiles: int
) -> Timing:
    """Seconds of a GRPO step (rollout; reference + loss forward/backward + update) and of one
    evaluation item, on machine s. Rollouts and answers are assumed to run to their token limit."""
    a = w.dtype_bytes
    L = w.text_tokens + tokens_per_image
    text_rate = s.quant_flops if (s.quant_flops and arch.bits) else s.flops
    head = 2 * arch.vocab * arch.hidden
    text_weights = weight_bytes(replace(arch, tensors=()), a) * (
        (arch.layers * arch.layer_params + arch.embed_params)
        / (arch.layers * arch.layer_params + arch.embed_params + arch.vision_params)
    )

    def prefill(rows: int) -> float:
        return (
            _vision_flops(arch, patches, tiles) * rows / s.flops
            + (_text_flops(arch, rows * L, L / 2) + rows * head) / text_rate
        )

    def decode(rows: int, steps: int) -> float:
        ctx = L + steps / 2
        read = text_weights + kv_bytes(arch, rows, int(ctx), a)
        compute = (_text_flops(arch, rows, ctx) + rows * head) / text_rate
        return steps * (max(read / s.bandwidth, compute) + arch.layers * s.layer_overhead)

    P, G, T = w.prompts, w.generations, w.completion
    rollout = prefill(P) + decode(P * G, T)
    k, g = micro_groups(w)
    runs = P * -(-G // g)  # prompt forwards: once per group, or once per piece of a group
    text = _text_flops(arch, P * G * T + runs * L, L + T / 2) / text_rate
    heads = P * G * T * head / text_rate
    # forward + backward (2 forwards' worth), one more with checkpointing, one for the reference;
    # a chunked head recomputes its logits in the backward
    passes = (1 if w.beta > 0 else 0) + (3 if w.grad_checkpoint else 2)
    head_passes = passes + (1 if g * T > head_chunk_rows(arch.vocab) else 0)
    rows = w.eval_batch * w.eval_samples
    eval_batch = prefill(w.eval_batch) + decode(rows, w.eval_tokens)
    return Timing(rollout, passes * text + head_passes * heads, eval_batch / w.eval_batch)


# ================================================================ the plan of a run config

# Stated assumptions about the data: prompt text tokens (chat template + instruction + question)
# and a typical image, per training benchmark. synth's are exact; the real benchmarks' vary.
TEXT_TOKENS = {"synth": 90}
DEFAULT_TEXT_TOKENS = 250
IMAGE_SIZES: dict[str, tuple[int, int] | None] = {"synth": (112, 112)}
DEFAULT_IMAGE = (800, 600)


@dataclass
class Plan:
    """A run config's predicted memory and times, and what to change if it does not fit."""

    model: str
    source: str
    arch: Arch
    work: Workload
    target: Speed
    usable_gb: float
    image_tokens: int
    patches: int
    tiles: int
    mem: Memory
    times: list[tuple[Speed, Timing, Memory, int, RunTime]]  # machine, step, peaks, micro-batch
    suggestions: list[tuple[str, float]]  # ("key=value", train peak GB) that fit
    eval_suggestions: list[tuple[str, float]]
    together: tuple[list[str], float]  # several keys at once, when no single one is enough
    notes: list[str]
    micro_batch: int = 0  # the loss's micro-batch on the target (chosen when the config says 0)
    micro_batch_auto: bool = False
    work_steps: int = 0  # train.steps
    run_time: RunTime | None = None  # the whole run (grid) on the target

    @property
    def fits(self) -> bool:
        return (
            self.mem.train_peak / GB <= self.usable_gb and self.mem.eval_peak / GB <= self.usable_gb
        )


@dataclass(frozen=True)
class RunTime:
    """Predicted seconds of the whole run (`hallucue-mlx run`: every training of the grid with
    its periodic evaluations, then every model evaluated on every eval set and condition)."""

    trainings: int
    train_s: float
    evaluations: int  # answers: models x items x conditions
    eval_s: float

    @property
    def total_s(self) -> float:
        return self.train_s + self.eval_s


def run_time(cfg: RunConfig, t: Timing) -> RunTime:
    """The whole run's time from one step's and one evaluated item's (counts: run_units)."""
    u = run_units(cfg)
    return RunTime(
        u["trainings"], u["steps"] * t.step_s, u["eval_items"], u["eval_items"] * t.eval_item_s
    )


def train_workload(
    t: TrainConfig,
    gpu: bool,
    image: tuple[int, int] | None = None,
    text_tokens: int | None = None,
    *,
    dtype: str | None = None,
    benchmark: str | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    prompts: int | None = None,
) -> Workload:
    """A training config's workload on a GPU (bf16 unless set) or a CPU (float32 unless set).
    The keyword arguments stand in for the TrainConfig's own (a run config keeps them in its
    model and data sections); prompts: this process's share of a step."""
    dtype = dtype or t.dtype
    bench = benchmark or t.benchmark
    dtype = dtype if dtype != "auto" else ("bfloat16" if gpu else "float32")
    return Workload(
        prompts=prompts or t.prompts_per_step,
        generations=t.num_generations,
        completion=t.max_completion_length,
        beta=t.beta,
        grad_checkpoint=t.grad_checkpoint,
        lora_rank=t.lora_rank,
        lora_targets=tuple(t.lora_targets),
        lora_layers=t.lora_layers,
        eval_batch=1,
        eval_samples=1,
        eval_tokens=1,
        dtype_bytes=4 if dtype == "float32" else 2,
        text_tokens=text_tokens or TEXT_TOKENS.get(bench, DEFAULT_TEXT_TOKENS),
        image=image or IMAGE_SIZES.get(bench, DEFAULT_IMAGE),
        min_pixels=min_pixels if min_pixels is not None else t.min_pixels,
        max_pixels=max_pixels if max_pixels is not None else t.max_pixels,
        gpu=gpu,
        micro_batch=t.micro_batch_size_per_device_for_update,
    )


def workload(
    cfg: RunConfig, gpu: bool, image: tuple[int, int] | None, text_tokens: int | None
) -> Workload:
    """The run config's workload on a GPU (bf16 unless set) or a CPU (float32 unless set)."""
    e = cfg.eval
    w = train_workload(
        cfg.train,
        gpu,
        image,
        text_tokens,
        dtype=cfg.model.dtype,
        benchmark=cfg.data.train.name,
        min_pixels=getattr(cfg.model, "min_pixels", None),
        max_pixels=getattr(cfg.model, "max_pixels", None),
    )
    return replace(
        w, eval_batch=e.batch_size, eval_samples=e.samples_per_item, eval_tokens=e.max_tokens
    )


def _peaks(arch: Arch, proc: Processor, w: Workload) -> Memory:
    toks, patches, tiles = image_tokens(arch, proc, w.image, w)
    return memory(arch, w, toks, patches, tiles)


def micro_batch_choices(prompts: int, generations: int) -> list[int]:
    """Micro-batch sizes in completions, largest first: whole groups (all of them down to one),
    then pieces of one group."""
    return [k * generations for k in range(prompts, 0, -1)] + list(range(generations - 1, 0, -1))


def fitting_micro_batch(arch: Arch, proc: Processor, w: Workload, usable: float) -> int:
    """The largest micro-batch whose GRPO step peak fits `usable` GB (1 when none does)."""
    for m in micro_batch_choices(w.prompts, w.generations):
        if _peaks(arch, proc, replace(w, micro_batch=m)).train_peak / GB <= usable:
            return m
    return 1


def auto_micro_batch(
    t: TrainConfig, model_id: str, prompts: int, backend: str, memory_gb: float | None = None
) -> int:
    """train.micro_batch_size_per_device_for_update = 0 resolved for this machine: the largest
    micro-batch (of a step's `prompts` groups) whose predicted peak fits its memory (macOS: the
    GPU's working set), from the same arithmetic as `plan`. A model plan cannot read: one group."""
    gpu = backend != "cpu"
    try:
        src = read_model(model_id)
        tensors = safetensors_tensors(src.model_dir) if src.model_dir is not None else ()
        arch = arch_from_config(src.config, tensors)
    except (PlanError, ModelLoadError, OSError, ValueError, KeyError):
        return t.num_generations
    w = train_workload(t, gpu, prompts=max(1, prompts))
    memory_gb = memory_gb if memory_gb is not None else physical_memory_gb()
    if memory_gb <= 0:
        return t.num_generations
    return fitting_micro_batch(arch, processor_of(src, arch.family), w, usable_gb(memory_gb, gpu))


def _halvings(value: int, low: int) -> list[int]:
    out = []
    while value // 2 >= low:
        value //= 2
        out.append(value)
    return out


def suggestions(arch: Arch, proc: Processor, w: Workload, usable: float) -> tuple[list, list]:
    """Single-key changes that bring the training (then the evaluation) peak within `usable`
    GB, the mildest change of each key first: [("section.key=value", peak GB)]."""
    train: list[tuple[str, float]] = []
    evals: list[tuple[str, float]] = []

    def first_fit(key: str, options: list[tuple[Any, Workload]], which: str, out: list) -> None:
        for value, changed in options:
            m = _peaks(arch, proc, changed)
            peak = (m.train_peak if which == "train" else m.eval_peak) / GB
            if peak <= usable:
                out.append((f"{key}={value}", peak))
                return

    first_fit(
        "train.micro_batch_size_per_device_for_update",
        [
            (m, replace(w, micro_batch=m))
            for m in micro_batch_choices(w.prompts, w.generations)
            if m < (w.micro_batch or w.prompts * w.generations)
        ],
        "train",
        train,
    )
    if not w.grad_checkpoint:
        first_fit(
            "train.grad_checkpoint", [("true", replace(w, grad_checkpoint=True))], "train", train
        )
    first_fit(
        "train.prompts_per_step",
        [(p, replace(w, prompts=p)) for p in _halvings(w.prompts, 1)],
        "train",
        train,
    )
    first_fit(
        "train.max_completion_length",
        [(t, replace(w, completion=t)) for t in _halvings(w.completion, 32)],
        "train",
        train,
    )
    if w.image is not None and arch.family != "idefics3":
        pixels = [256 * 28 * 28 * k for k in (4, 2, 1)]
        now = image_tokens(arch, proc, w.image, w)[0]
        opts = [
            (p, changed)
            for p in pixels
            if image_tokens(arch, proc, w.image, changed := replace(w, max_pixels=p))[0] < now
        ]
        first_fit("model.max_pixels", opts, "train", train)
        first_fit("model.max_pixels", opts, "eval", evals)
    first_fit(
        "eval.batch_size",
        [(b, replace(w, eval_batch=b)) for b in _halvings(w.eval_batch, 1)],
        "eval",
        evals,
    )
    first_fit(
        "eval.max_tokens",
        [(t, replace(w, eval_tokens=t)) for t in _halvings(w.eval_tokens, 64)],
        "eval",
        evals,
    )
    return train, evals


def combined(arch: Arch, proc: Processor, w: Workload, usable: float) -> tuple[list[str], float]:
    """Changes applied one after another (checkpointing, one prompt a step, shorter
    completions, smaller images, smaller evaluation batches) until both peaks fit: the keys
    and the resulting peak GB; the keys of every step tried when nothing fits."""
    steps: list[tuple[str, Workload]] = []
    cur = w
    if cur.micro_batch != 1:
        cur = replace(cur, micro_batch=1)
        steps.append(("train.micro_batch_size_per_device_for_update=1", cur))
    if not cur.grad_checkpoint:
        cur = replace(cur, grad_checkpoint=True)
        steps.append(("train.grad_checkpoint=true", cur))
    for t in _halvings(w.completion, 32):
        cur = replace(cur, completion=t)
        steps.append((f"train.max_completion_length={t}", cur))
        if t <= 256 and cur.prompts > 1:
            cur = replace(cur, prompts=1)
            steps.append(("train.prompts_per_step=1", cur))
    if cur.prompts > 1:
        cur = replace(cur, prompts=1)
        steps.append(("train.prompts_per_step=1", cur))
    smaller = replace(cur, max_pixels=256 * 28 * 28)
    if (
        arch.family != "idefics3"
        and image_tokens(arch, proc, w.image, smaller)[0]
        < (image_tokens(arch, proc, w.image, cur)[0])
    ):
        cur = smaller
        steps.append((f"model.max_pixels={256 * 28 * 28}", cur))
    for b in _halvings(w.eval_batch, 1):
        cur = replace(cur, eval_batch=b)
        steps.append((f"eval.batch_size={b}", cur))
    keys: dict[str, str] = {}
    peak = float("inf")
    for key, changed in steps:
        keys[key.split("=")[0]] = key
        m = _peaks(arch, proc, changed)
        peak = max(m.train_peak, m.eval_peak) / GB
        if peak <= usable:
            break
    return list(keys.values()), peak


def make_plan(
    cfg: RunConfig,
    *,
    chip_name: str | None = None,
    memory_gb: float | None = None,
    image: tuple[int, int] | None = None,
    text_tokens: int | None = None,
    here: Speed | None = None,
    compare: tuple[str, ...] = ("M2", "M3 Pro", "M4 Max"),
) -> Plan:
    """The plan of run config `cfg` for the named chip (else for `here`, this machine, whose
    measured speed the caller passes; None: no row for it)."""
    src = read_model(cfg.model.id)
    tensors = safetensors_tensors(src.model_dir) if src.model_dir is not None else ()
    arch = arch_from_config(src.config, tensors)
    proc = processor_of(src, arch.family)
    if chip_name is not None:
        target = chip_speed(chip(chip_name))
    elif here is not None:
        target = here
    else:
        raise PlanError("give --chip NAME, or let plan measure this machine")
    mem_gb = memory_gb if memory_gb is not None else target.memory_gb
    target = replace(target, memory_gb=mem_gb)
    usable = usable_gb(mem_gb, target.gpu)
    w = workload(cfg, target.gpu, image, text_tokens)
    auto = w.micro_batch == 0
    if auto:
        w = replace(w, micro_batch=fitting_micro_batch(arch, proc, w, usable))
    toks, patches, tiles = image_tokens(arch, proc, w.image, w)
    mem = memory(arch, w, toks, patches, tiles)
    speeds = [target] if chip_name else [chip_speed(chip(c)) for c in compare]
    if here is not None:
        speeds.append(here if chip_name else target)
    times = []
    for s in speeds:
        ws = workload(cfg, s.gpu, image, text_tokens)
        if ws.micro_batch == 0:
            ws = replace(
                ws, micro_batch=fitting_micro_batch(arch, proc, ws, usable_gb(s.memory_gb, s.gpu))
            )
        t = timing(arch, ws, s, toks, patches, tiles)
        times.append(
            (s, t, memory(arch, ws, toks, patches, tiles), ws.micro_batch, run_time(cfg, t))
        )
    train_fix, eval_fix = suggestions(arch, proc, w, usable)
    together = combined(arch, proc, w, usable)
    notes = []
    if arch.bits and not target.gpu:
        notes.append(
            quantized_cpu_warning(
                arch.bits, target.quant_flops / 1e9 if target.quant_flops else None
            )
        )
    return Plan(
        model=cfg.model.id,
        source=src.where,
        arch=arch,
        work=w,
        target=target,
        usable_gb=usable,
        image_tokens=toks,
        patches=patches,
        tiles=tiles,
        mem=mem,
        times=times,
        suggestions=train_fix,
        eval_suggestions=eval_fix,
        together=together,
        notes=notes,
        micro_batch=w.micro_batch,
        micro_batch_auto=auto,
        work_steps=cfg.train.steps,
        run_time=run_time(cfg, timing(arch, w, target, toks, patches, tiles)),
    )


# ================================================================ output


def _gb(x: float) -> str:
    return f"{x / GB:.2f}"


def _minutes(s: float) -> str:
    if s >= 4 * 86400:
        return f"{s / 86400:.1f} days"
    if s >= 7200:
        return f"{s / 3600:.1f} h"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def render(plan: Plan, console: Any = None) -> None:
    """The plan as rich tables: memory by part, whether it fits and what to change, times."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    a, w, m = plan.arch, plan.work, plan.mem
    weights = f"{a.bits}-bit" if a.bits else ("float32" if w.dtype_bytes == 4 else "bfloat16")
    console.print(
        f"[bold]{plan.model}[/bold] ({a.family}, {a.layers} layers, hidden {a.hidden}, vocab "
        f"{a.vocab}, {weights} weights; config from {plan.source})"
    )
    img = (
        f"{w.image[0]}x{w.image[1]} image -> {plan.image_tokens} tokens" if w.image else "no image"
    )
    console.print(
        f"Assumed prompt: {w.text_tokens} text tokens + {img}; training {w.prompts} prompts x "
        f"{w.generations} completions of up to {w.completion} tokens; evaluation "
        f"{w.eval_batch} prompts x {w.eval_samples} of up to {w.eval_tokens} tokens."
    )
    how = "chosen for this machine: the largest that fits" if plan.micro_batch_auto else "set"
    console.print(
        f"Loss micro-batch (train.micro_batch_size_per_device_for_update): {plan.micro_batch} "
        f"completions ({how}); the vocabulary head runs in chunks of "
        f"{head_chunk_rows(a.vocab)} positions."
    )
    table = Table(title=f"Peak memory on {plan.target.name} (GB)")
    table.add_column("part")
    table.add_column("GB", justify="right")
    ck = "checkpointing" if w.grad_checkpoint else "no checkpointing"
    for name, value in m.parts.items():
        if name.startswith("loss activations"):
            name += "  <- in use" if f"({ck})" in name else ""
        table.add_row(name, _gb(value))
    table.add_row(
        f"[bold]GRPO step peak[/bold] (at the {m.train_phase})", f"[bold]{_gb(m.train_peak)}[/bold]"
    )
    table.add_row("[bold]evaluation peak[/bold]", f"[bold]{_gb(m.eval_peak)}[/bold]")
    console.print(table)
    where = f"{plan.target.name}: {plan.usable_gb:.1f} GB usable"
    if plan.fits:
        console.print(f"[green]Fits[/green] ({where}).")
    else:
        console.print(f"[red]Does not fit[/red] ({where}).")
        over_train = m.train_peak / GB > plan.usable_gb
        fixes = (plan.suggestions if over_train else []) + (
            plan.eval_suggestions if m.eval_peak / GB > plan.usable_gb else []
        )
        for key, peak in fixes:
            console.print(f"  --set {key}  -> {peak:.2f} GB")
        keys, peak = plan.together
        if not fixes and peak <= plan.usable_gb:
            sets = " ".join(f"--set {k}" for k in keys)
            console.print(f"  no single key is enough; together: {sets} -> {peak:.2f} GB")
        elif not fixes:
            console.print(
                f"  even with {', '.join(keys)} the peak is {peak:.2f} GB: use a smaller or "
                "4-bit model, or a machine with more memory"
            )
    times = Table(title="Time (rollouts and answers run to their token limit)")
    for col in (
        "machine",
        "memory",
        "step peak",
        "micro-batch",
        "s / GRPO step",
        "rollout",
        "loss",
        "s / eval item",
        "whole run",
    ):
        times.add_column(col, justify="left" if col == "machine" else "right")
    for s, t, mm, micro, total in plan.times:
        times.add_row(
            s.name,
            f"{s.memory_gb:.0f} GB",
            f"{mm.train_peak / GB:.1f} GB",
            str(micro),
            _minutes(t.step_s),
            _minutes(t.rollout_s),
            _minutes(t.loss_s),
            _minutes(t.eval_item_s),
            _minutes(total.total_s),
        )
    console.print(times)
    for note in plan.notes:
        console.print(f"[yellow]{note}[/yellow]")


def physical_memory_gb() -> float:
    """This machine's RAM in GB (0 when the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB
    except (ValueError, OSError, AttributeError):
        return 0.0


def this_machine(reps: int = 2) -> Speed:
    """This machine's Speed from short measurements (about a second): a float32 matmul, a
    matrix-vector product (decode's bandwidth) and, on a CPU, a 4-bit matmul."""
    backend = backend_name()
    gpu = backend != "cpu"
    quant = None if gpu else quantized_gflops()
    name = f"this machine ({'CPU' if not gpu else backend})"
    return machine_speed(
        name, matmul_gflops(reps=reps), memory_gbps(reps=reps), physical_memory_gb(), gpu, quant
    )


def quantized_bits(model_id: str) -> int | None:
    """The weight bits of a model's config (None: not quantized); PlanError if unreadable."""
    return arch_from_config(read_model(model_id).config).bits


# ================================================================ the whole run's time


def run_units(cfg: RunConfig) -> dict[str, Any]:
    """What `hallucue-mlx run` of `cfg` computes, counted without loading data: trainings and
    their steps, evaluated item-conditions (the test benchmarks, the train slice, and the
    periodic evaluations during training). `unknown` names benchmarks whose size the config
    does not give (n: null on a downloaded benchmark): the total leaves them out."""
    g, t = cfg.grid, cfg.train
    corrupted = [c for c in g.train_conditions if c != "none"]
    control = 1 if g.random_reward_control else 0  # clean items: trained once, like clean GRPO
    per_seed = len(g.train_conditions) + len(corrupted) * max(len(g.ratios) - 1, 0) + control
    trainings = per_seed * g.seeds
    models = trainings + (1 if g.include_base else 0)  # a sweep evaluates the base once
    items, unknown = 0, []
    for spec in cfg.data.eval:
        if spec.n is not None:
            items += spec.n
        elif spec.name == "synth" and spec.path is None:
            items += DEFAULT_SIZES.get(spec.split or "test", 0)
        else:
            unknown.append(spec.name)
    items += cfg.data.train_slice_n
    evals = models * items * len(g.eval_conditions)
    periodic = 0
    if t.eval_every and t.n_eval:
        points = t.steps // t.eval_every + 1 + (1 if t.steps % t.eval_every else 0)
        clean_only = 1 if "none" in g.train_conditions else 0
        conds = clean_only + control + 2 * len(corrupted) * max(len(g.ratios), 1)
        periodic = points * t.n_eval * conds * g.seeds
    return {
        "trainings": trainings,
        "steps": trainings * t.steps,
        "models": models,
        "eval_items": evals + periodic,
        "unknown": unknown,
    }


def render_total(plan: Plan, cfg: RunConfig, console: Any = None) -> None:
    """The whole run's predicted time on each machine of the plan: training steps x s/step plus
    evaluated item-conditions x s/item (rollouts and answers at their token limit, so an upper
    estimate where answers stop early)."""
    from rich.console import Console

    console = console or Console()
    u = run_units(cfg)
    what = (
        f"{u['trainings']} training(s) x {cfg.train.steps} steps, {u['models']} model(s) "
        f"evaluated: {u['eval_items']:,} item-conditions"
    )
    console.print(f"[bold]Whole run[/bold] (`hallucue-mlx run` of this config): {what}.")
    for s, t, *_ in plan.times:
        total = u["steps"] * t.step_s + u["eval_items"] * t.eval_item_s
        days = f"{total / 86400:,.0f} days" if total >= 2 * 86400 else _minutes(total)
        console.print(f"  {s.name}: about {days} in all")
    if u["unknown"]:
        console.print(
            f"  not counted: {', '.join(u['unknown'])} (n: null; set data.eval.N.n to count it)"
        )
