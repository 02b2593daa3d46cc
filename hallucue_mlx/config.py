"""Every settings dataclass, and the one way they are built, checked, overridden and printed.

`RunConfig` (what `hallucue-mlx run` does) has the sections model, data, train, eval, grid and
output, plus a top-level seed. `train` is a `TrainConfig` and `eval` an `EvalConfig`, minus the keys
the grid sets per cell (the training corruption, the model, the data, the seed): those live in one
place only, so a config cannot say two things at once. The `train` and `eval` commands build the
same dataclasses from their flags, which the CLI generates from these fields.

Every field carries its help text and its checks in the dataclass metadata (`_f`): `choices`,
`min` / `gt` / `max` bounds, `nonempty`, `note` (why a bound) and `check` (a callable). `check()`
applies them to any of these dataclasses; `describe()` and `dump_yaml(comments=True)` print the help.

Errors are `ConfigError`s that name the key (`train.steps`) and, for unknown keys or bad choices,
list the valid ones. This module imports no MLX: settings are read and checked before any model.
"""

from __future__ import annotations

import copy
import difflib
import functools
import hashlib
import json
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from hallucue_mlx.backend import DTYPES
from hallucue_mlx.corrupt import CORRUPTIONS
from hallucue_mlx.data.bench import BENCHMARKS
from hallucue_mlx.prompts import TEMPLATES, resolve_template
from hallucue_mlx.runfolder import RANDOM_REWARD

# rewards.RANDOM_REWARD_FUNCTION, named here: config imports rewards (sympy) only to check a
# custom reward function
RANDOM_REWARD_FUNCTION = "hallucue_mlx.rewards:random_reward"

# Allowed values of the enum-like GRPO settings (TRL's names); grpo.py uses these.
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo")
SCALE_REWARDS = ("group", "batch", "none")
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")
# LoRA targets: the Qwen2/2.5-VL decoder projections; the LM head and embeddings stay frozen.
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
VISION_TARGETS = ("qkv", "proj", "fc1", "fc2")  # Qwen2-VL / Qwen2.5-VL vision tower (lora_vision)
LORA_TARGET_CHOICES = DEFAULT_TARGETS + VISION_TARGETS
TEMPLATE_CHOICES = (*TEMPLATES, "auto")
# How `run` uses several processes (mlx.launch -n N): whole cells per rank, or each training
# data-parallel over all ranks. One process ignores it.
GRID_PARALLEL = ("cells", "data")


class ConfigError(ValueError):
    """A bad setting: the message names the key and the fix; `key` is the dotted key, if one."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def _f(default: Any, help: str, **meta: Any) -> Any:
    """A dataclass field with its help text and checks in metadata. List, dict and dataclass
    defaults are copied per instance, so no two configs share one mutable default."""
    if isinstance(default, (list, dict)) or is_dataclass(default):
        return field(
            default_factory=lambda: copy.deepcopy(default), metadata={"help": help, **meta}
        )
    return field(default=default, metadata={"help": help, **meta})


MAX_IMAGE_PIXELS = 4096 * 4096  # a 46-megapixel photo has run an 8 GB Mac out of memory in mlx-vlm
_MIN_PIXELS_HELP = (
    "Fewest pixels the processor scales an image up to (Qwen families; null: the checkpoint's "
    "processor config). EasyR1: 262144."
)
_MAX_PIXELS_HELP = (
    "Most pixels the processor scales an image down to (Qwen families: visual tokens = "
    "pixels / 784; null: the checkpoint's processor config, 12845056 for Qwen's releases). "
    "EasyR1: 4194304."
)
_IMAGE_LIMIT_HELP = (
    "Refuse an item whose image has more pixels than this, before the processor and the vision "
    "tower see it (null: no limit). 16777216 = 4096x4096."
)


def _pixels(n: int | None) -> None:
    if n is not None and (isinstance(n, bool) or n < 28 * 28):
        raise ValueError(f"{n!r} is not valid; use null or a pixel count >= 784 (28 x 28)")


MAX_SEED = 2**31 - 1  # every seed consumer (numpy, mx.random, random) accepts it, offsets included
# Every whole number a user gives is at most this (MLX counts shapes and steps in 32-bit
# integers: a larger one ended in std::bad_cast), checked with the key's own bounds (check).
MAX_INT = 2**31 - 1
# Bounds of the settings that size a step or a response: beyond them a step never finishes (and
# ignores Ctrl-C inside one MLX call) or the buffers outgrow any machine.
MAX_TOKENS = 32768  # the longest context of a supported model
MAX_GENERATIONS = 256  # completions per prompt, responses per item
MAX_PROMPTS_PER_STEP = 1024
MAX_BATCH = 4096
MAX_ITEMS = 10_000_000  # items of a subset (n)
MAX_STEPS = 10_000_000
MAX_SEEDS = 100  # grid.seeds: training runs of every condition


def _layer_count(n: int) -> None:
    if n != -1 and n < 1:
        raise ValueError(f"{n} is not valid; use -1 (all layers) or a count >= 1")


def _reward_loads(name: str | None) -> None:
    """A custom reward function must import now, not after the model has loaded."""
    if name is not None:
        # imported here: rewards pulls in sympy, slow to import and needed only for this check
        from hallucue_mlx.rewards import load_reward_function

        load_reward_function(name)


def _ratio_list(values: list[Any]) -> None:
    for r in values:
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r <= 1:
            raise ValueError(f"{r!r} is not a ratio; each must be a number with 0 < ratio <= 1")
    if len(set(values)) != len(values):
        raise ValueError(f"lists a ratio twice: {values}")


def _section_fields(cls: type) -> list:
    """The fields a run config's section has: a TrainConfig / EvalConfig without grid-owned keys."""
    owned = _OWNED.get(cls, {})
    return [f for f in fields(cls) if f.name not in owned]


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        arg = (typing.get_args(tp) or (Any,))[0]
        return f"a list of {_type_name(arg)}"
    if is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


# ================================================================ coercion: plain data -> typed


def _coerce_union(tp: Any, value: Any, key: str) -> Any:
    args = typing.get_args(tp)
    # the help texts say None; YAML says null: both spell "not set" on the command line
    if type(None) in args and (value is None or str(value).lower() in ("none", "null")):
        return None
    for a in args:
        if a is type(None):
            continue
        try:
            return _coerce(a, value, key)
        except ConfigError:
            pass
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}", key)


def _coerce_list(tp: Any, value: Any, key: str) -> Any:
    arg = (typing.get_args(tp) or (Any,))[0]
    if isinstance(value, str) and arg is str:  # "none,blank" from a flag or --set
        value = [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}", key)
    out = [_coerce(arg, v, f"{key}[{i}]") for i, v in enumerate(value)]
    return tuple(out) if typing.get_origin(tp) is tuple else out


def _coerce_scalar(tp: Any, value: Any, key: str) -> Any:
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and not isinstance(value, bool):
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    if tp is float and not isinstance(value, bool):
        number: float | None = None
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:  # PyYAML reads 1e-4 (no dot) as a string
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if not math.isfinite(number):
                raise ConfigError(f"{key}: expected a finite number, got {value!r}", key)
            return number
    if tp is str and isinstance(value, str):
        return value
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    raise ConfigError(f"{key}: expected {words.get(tp, _type_name(tp))}, got {value!r}", key)


def coerce_value(tp: Any, value: Any, key: str) -> Any:
    """`value` (from YAML, --set or a flag) as type `tp`, or a ConfigError naming `key`: the one
    rule for typed settings (run configs here, warm-up settings in warmup.warmup_overrides)."""
    return _coerce(tp, value, key)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """`value` (from YAML, --set or a flag) as type `tp`, or a ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(tp, value, key)
    if origin in (list, tuple):
        return _coerce_list(tp, value, key)
    if is_dataclass(tp):
        if type(value) is tp:
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {_keys_of(tp)}, got {value!r}", key)
        return _build(tp, value, key, _OWNED.get(tp, {}))
    if tp is dict or origin is dict:
        if isinstance(value, dict):
            return value
        raise ConfigError(f"{key}: expected a mapping, got {value!r}", key)
    if tp in (bool, int, float, str):
        return _coerce_scalar(tp, value, key)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}", key)


def _keys_of(cls: type) -> str:
    return ", ".join(f.name for f in _section_fields(cls))


def _build(cls: type, data: dict[str, Any], where: str, owned: dict[str, str]) -> Any:
    """An instance of dataclass `cls` from a mapping; unknown keys name the valid ones."""
    hints = _hints(cls)
    valid = {f.name: f for f in fields(cls) if f.name not in owned}
    kwargs = {}
    for k, v in data.items():
        key = f"{where}.{k}" if where else str(k)
        if k in owned:
            raise ConfigError(f"{key} is set by the grid, not here: use {owned[k]}", key)
        if k not in valid:
            close = difflib.get_close_matches(str(k), list(valid), n=1)
            raise ConfigError(
                f"unknown key {key!r}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; valid keys{' of ' + where if where else ''}: {', '.join(valid)}",
                key,
            )
        kwargs[k] = _coerce(hints[k], v, key)
    return cls(**kwargs)


def build(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """A checked instance of settings dataclass `cls` (every field settable) from a mapping,
    e.g. `build(TrainConfig, {"steps": 3}, "train")`; errors name `where.key`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'settings'} must be a mapping of keys, got {data!r}", where)
    obj = _build(cls, data, where, {})
    check(obj, where)
    return obj


def from_dict(data: dict[str, Any]) -> RunConfig:
    """A validated RunConfig from a nested mapping (a YAML document)."""
    if not isinstance(data, dict):
        raise ConfigError(f"a run config must be a mapping of sections, got {type(data).__name__}")
    cfg = _build(RunConfig, data, "", {})
    validate(cfg)
    return cfg


# ================================================================ validation


def _fmt(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"  # an int bound in full (a seed's max)


def _bounds_text(meta: Any) -> str | None:
    """'>= 1', '> 0', 'in [0, 1]', 'in (0, 1]' from a field's min / gt / max metadata."""
    lo, gt, hi = meta.get("min"), meta.get("gt"), meta.get("max")
    if hi is not None:
        left = f"({_fmt(gt)}" if gt is not None else f"[{_fmt(lo)}"
        return f"in {left}, {_fmt(hi)}]"
    if gt is not None:
        return f"> {_fmt(gt)}"
    if lo is not None:
        return f">= {_fmt(lo)}"
    return None


def _in_bounds(meta: Any, v: float) -> bool:
    lo, gt, hi = meta.get("min"), meta.get("gt"), meta.get("max")
    return (
        math.isfinite(v)
        and (lo is None or v >= lo)
        and (gt is None or v > gt)
        and (hi is None or v <= hi)
    )


def _check_value(f: Any, v: Any, key: str, optional: bool) -> None:
    """One field's metadata checks: bounds, choices, nonempty, a custom `check`."""
    meta = f.metadata
    bounds = _bounds_text(meta)
    if bounds is not None and v is not None:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{key}: expected a number {bounds}, got {v!r}", key)
        if not _in_bounds(meta, v):
            why = f" ({meta['note']})" if "note" in meta else ""
            raise ConfigError(
                f"{key} must be {bounds}{' or null' if optional else ''}, got {v}{why}", key
            )
    most = meta.get("most")  # a sanity limit above the valid range: its own message
    if most is not None and isinstance(v, (int, float)) and not isinstance(v, bool) and v > most:
        why = f" ({meta['most_note']})" if "most_note" in meta else ""
        raise ConfigError(f"{key} must be at most {_fmt(most)}, got {v}{why}", key)
    for x in v if isinstance(v, (list, tuple)) else [v]:
        if isinstance(x, int) and not isinstance(x, bool) and abs(x) > MAX_INT:
            raise ConfigError(
                f"{key} must be at most {MAX_INT} in size (MLX counts in 32-bit integers), got {x}",
                key,
            )
    choices = meta.get("choices")
    many = isinstance(v, (list, tuple))
    if meta.get("nonempty") and isinstance(v, str) and not v.strip():
        raise ConfigError(f"{key} is empty; give a value (a path or a name)", key)
    if meta.get("nonempty") and many and not v:
        listed = f"; choose from {', '.join(choices)}" if choices else ""
        raise ConfigError(f"{key} is empty{listed}", key)
    if choices is not None:
        for x in v if many else [v]:
            if x not in choices:
                raise ConfigError(
                    f"{key}: {x!r} is not valid; choose from {', '.join(choices)}", key
                )
        if many and len(set(v)) != len(v):
            raise ConfigError(f"{key} lists a value twice: {', '.join(v)}", key)
    custom: Callable[[Any], None] | None = meta.get("check")
    if custom is not None:
        try:
            custom(v)
        except (ValueError, ImportError) as e:
            raise ConfigError(f"{key}: {e}", key) from None


def check(obj: Any, where: str = "") -> None:
    """Every field's metadata checks of settings dataclass `obj`, recursively; errors name the
    key (`where.field`) and, for choices, the allowed values."""
    hints = _hints(type(obj))
    for f in fields(obj):
        v = getattr(obj, f.name)
        key = f"{where}.{f.name}" if where else f.name
        optional = type(None) in typing.get_args(hints[f.name])
        _check_value(f, v, key, optional)
        subs = v if isinstance(v, list) else [v]
        for i, x in enumerate(subs):
            if is_dataclass(x) and not isinstance(x, type):
                check(x, f"{key}[{i}]" if isinstance(v, list) else key)


def validate(cfg: RunConfig) -> None:
    """Raise ConfigError naming the first bad key; return None when the config is usable."""

    check(cfg)
    specs = [("data.train", cfg.data.train)] + [
        (f"data.eval[{i}]", s) for i, s in enumerate(cfg.data.eval)
    ]
    for key, spec in specs:
        if spec.name not in BENCHMARKS:
            raise ConfigError(
                f"{key}.name: unknown benchmark {spec.name!r}; choose from {', '.join(BENCHMARKS)}"
            )
        splits = BENCHMARKS[spec.name].splits
        if spec.split is not None and splits and spec.path is None and spec.split not in splits:
            raise ConfigError(
                f"{key}.split: {spec.name} has no split {spec.split!r}; choose from "
                f"{', '.join(splits)}"
            )
    if cfg.grid.seeds > 1 and cfg.grid.ratios:
        raise ConfigError(
            "grid.seeds and grid.ratios each make `run` a sweep, and a sweep varies one key: "
            "set one of them (grid.seeds=1 or grid.ratios=[])",
            "grid.seeds",
        )
    names = [s.name for s in cfg.data.eval]
    if len(set(names)) != len(names):
        raise ConfigError(f"data.eval lists a benchmark twice: {names}")
    if not trained_models(cfg) and not cfg.grid.include_base:
        raise ConfigError(
            "grid.train_conditions is empty, grid.random_reward_control is false and "
            "grid.include_base is false: nothing to run"
        )
    cfg.train.validate("train")
    if cfg.train.mini_batches > 1 and cfg.grid.parallel == "data":
        raise ConfigError(
            "train.mini_batches > 1 splits one process's rollout batch; with grid.parallel: data "
            "the batch is spread over processes; valid: grid.parallel: cells, or mini_batches: 1",
            "train.mini_batches",
        )
    if cfg.model.adapter is not None and trained_models(cfg):
        raise ConfigError(
            "model.adapter is only supported for evaluation-only grids (grid.train_conditions: "
            "[], grid.random_reward_control: false); to train on top of an adapter, fuse it into "
            "the base model first"
        )
    eval_config_for(cfg)  # the EvalConfig the grid evaluates with checks itself when built


# ================================================================ training and evaluation


@dataclass
class TrainConfig:
    """Every knob of a GRPO run. Defaults are the paper's preset where the paper states one."""

    # model and data
    model: str = _f(
        "hallucue-tiny", "Base model: a local directory or a Hugging Face id.", nonempty=True
    )
    dtype: str = _f(
        "auto",
        "Compute dtype: auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16.",
        choices=DTYPES,
    )
    min_pixels: int | None = _f(None, _MIN_PIXELS_HELP, check=_pixels)
    max_pixels: int | None = _f(None, _MAX_PIXELS_HELP, check=_pixels)
    max_image_pixels: int | None = _f(MAX_IMAGE_PIXELS, _IMAGE_LIMIT_HELP, min=1)
    benchmark: str = _f("synth", "Training benchmark.", nonempty=True)
    train_split: str = _f("train", "Split the training prompts come from.", nonempty=True)
    n_train: int | None = _f(
        None, "Use only the first N training items (None: all).", min=1, most=MAX_ITEMS
    )
    eval_split: str = _f(
        "validation",
        "Held-out split of the training benchmark for the periodic greedy evaluation (not the "
        "test split: a curve on test items invites choosing settings on them).",
        nonempty=True,
    )
    n_eval: int = _f(
        48,
        "Held-out items per periodic evaluation condition (0: no evaluation).",
        min=0,
        most=MAX_ITEMS,
    )
    prompt_template: str = _f(
        "auto",
        "Prompt template (prompts.TEMPLATES); auto: 'short' for hallucue-tiny (its warm-up "
        "format), 'easyr1' (the paper's) otherwise.",
        choices=TEMPLATE_CHOICES,
    )
    corruption: str = _f(
        "none", "Training corruption: none, blank, random, text_removal.", choices=CORRUPTIONS
    )
    corruption_ratio: float = _f(
        1.0, "Share of training items corrupted (drawn once per item).", min=0, max=1
    )
    # rollouts
    num_generations: int = _f(
        5,
        "Completions per prompt (G). Paper: 5.",
        min=2,
        most=MAX_GENERATIONS,
        note="GRPO compares completions within a group",
    )
    prompts_per_step: int = _f(
        4,
        "Prompts per step; a step samples prompts_per_step * G completions.",
        min=1,
        most=MAX_PROMPTS_PER_STEP,
    )
    temperature: float = _f(
        0.7, "Sampling temperature. Paper: 0.7.", gt=0, note="GRPO needs sampling"
    )
    top_p: float = _f(
        1.0, "Nucleus sampling mass (1: off, keeps the policy gradient unbiased).", gt=0, max=1
    )
    max_completion_length: int = _f(
        128,
        "Maximum completion tokens; longer ones are truncated (flagged).",
        min=1,
        most=MAX_TOKENS,
    )
    # objective (TRL's names)
    loss_type: str = _f(
        "dapo",
        "grpo, dr_grpo, dapo (bnpo): how per-token losses are averaged.",
        choices=LOSS_TYPES,
    )
    scale_rewards: str = _f(
        "group", "Advantage scaling: group, batch or none.", choices=SCALE_REWARDS
    )
    drop_zero_std_groups: bool = _f(
        False,
        "Leave groups whose rewards are all equal (zero advantage) out of the update (DAPO's "
        "dynamic-sampling filter, without refilling): more signal per update on a peaked model.",
    )
    epsilon: float = _f(0.2, "Lower clip range of the importance ratio.", min=0)
    epsilon_high: float | None = _f(
        None, "Upper clip range (None: epsilon). DAPO uses 0.28.", min=0
    )
    beta: float = _f(0.01, "KL coefficient (k3 estimator, LoRA-off reference). Paper: 0.01.", min=0)
    importance_sampling_level: str = _f(
        "token", "token (GRPO) or sequence (GSPO).", choices=IMPORTANCE_SAMPLING_LEVELS
    )
    num_iterations: int = _f(1, "Updates per rollout batch (mu).", min=1, most=64)
    mini_batches: int = _f(
        1,
        "EasyR1's batching: the rollout batch (prompts_per_step prompts) is split into this many "
        "mini-batches of whole groups, one AdamW update each, per pass (num_iterations). EasyR1: "
        "rollout_batch_size 512 / global_batch_size 128 = 4 (global_batch_size counts prompts). "
        "1: one update on the whole rollout batch.",
        min=1,
        most=64,
    )
    accuracy_weight: float = _f(0.9, "Reward weight of answer accuracy.", min=0)
    format_weight: float = _f(
        0.1, "Reward weight of the <think>..</think> \\boxed{} format.", min=0
    )
    reward_function: str | None = _f(
        None,
        "Your own reward, 'pkg.module:function' called as fn(response, item) -> float or "
        "rewards.Reward; replaces the weighted accuracy + format reward (None: built-in).",
        check=_reward_loads,
    )
    # LoRA
    lora_rank: int = _f(8, "LoRA rank.", min=1, most=4096)
    lora_alpha: float = _f(
        16.0,
        "LoRA alpha (scale = alpha / rank).",
        gt=0,
        most=1e4,
        most_note="a larger scale makes every update overflow",
    )
    lora_dropout: float = _f(0.0, "LoRA dropout.", min=0, max=0.99)
    lora_targets: list[str] = _f(
        list(DEFAULT_TARGETS),
        "Linear layers to adapt (of each decoder layer; with lora_vision also the vision "
        "tower's: qkv, proj, fc1, fc2).",
        choices=LORA_TARGET_CHOICES,
        nonempty=True,
    )
    lora_layers: int = _f(-1, "Adapt only the last N decoder layers (-1: all).", check=_layer_count)
    lora_vision: bool = _f(
        False,
        "Also adapt the vision tower's linear layers named in lora_targets (Qwen2-VL / Qwen2.5-VL; "
        "their vision attention is 'qkv' and 'proj', their MLP 'gate_proj', 'up_proj', "
        "'down_proj' or 'fc1', 'fc2'); the image features are then recomputed in every loss "
        "pass. EasyR1 trains the vision tower (freeze_vision_tower: false).",
    )
    # optimisation
    learning_rate: float = _f(
        2e-4,
        "Peak AdamW learning rate.",
        gt=0,
        most=1,
        most_note="above 1 every update overshoots; 1e-6 to 1e-3 is usual for LoRA",
    )
    weight_decay: float = _f(0.0, "AdamW weight decay.", min=0)
    warmup_steps: int = _f(5, "Linear warm-up, in optimizer updates.", min=0)
    min_lr_ratio: float = _f(
        0.1,
        "Cosine decay ends at learning_rate * min_lr_ratio.",
        min=0,
        max=1,
        note="below 0 the learning rate turns negative",
    )
    max_grad_norm: float = _f(1.0, "Gradient-norm clipping (0: off).", min=0)
    grad_checkpoint: bool = _f(
        False, "Recompute decoder activations in the backward pass (less memory)."
    )
    micro_batch_size_per_device_for_update: int = _f(
        0,
        "Completions per loss forward/backward (EasyR1's name; gradients are accumulated over "
        "the micro-batches, normalised by the whole batch): whole groups when at least G, else "
        "pieces of one group. 0: `plan`'s choice for this machine (the largest that fits).",
        min=0,
    )
    # loop
    steps: int = _f(200, "Training steps (rollout batches).", min=1, most=MAX_STEPS)
    seed: int = _f(
        0, "Seed of data order, corruption draws, LoRA init and sampling.", min=0, max=MAX_SEED
    )
    eval_every: int = _f(
        50, "Greedy held-out evaluation every N steps, and at start and end (0: never).", min=0
    )
    save_every: int = _f(25, "Checkpoint every N steps (and at the end).", min=1)
    keep_checkpoints: int = _f(2, "How many step checkpoints to keep.", min=1)
    max_bad_steps: int = _f(5, "Abort after this many non-finite updates in a row.", min=1)
    max_minutes: float | None = _f(
        None, "Stop (as a finished run) after the step that crosses this much training time.", gt=0
    )

    def validate(self, where: str = "train") -> None:
        """Raise ConfigError naming the first bad key (`train.loss_type`)."""
        check(self, where)
        if self.mini_batches > self.prompts_per_step:
            raise ConfigError(
                f"{where}.mini_batches = {self.mini_batches} is more than "
                f"{where}.prompts_per_step = {self.prompts_per_step}: a mini-batch holds whole "
                "groups; valid: mini_batches <= prompts_per_step (EasyR1: 512 prompts in 4)",
                f"{where}.mini_batches",
            )
        if self.prompts_per_step % self.mini_batches:
            raise ConfigError(
                f"{where}.prompts_per_step = {self.prompts_per_step} does not split into "
                f"{where}.mini_batches = {self.mini_batches} equal mini-batches; valid: a divisor "
                "of prompts_per_step (EasyR1: rollout_batch_size divisible by global_batch_size)",
                f"{where}.mini_batches",
            )
        if not set(self.lora_targets) & set(DEFAULT_TARGETS):
            raise ConfigError(
                f"{where}.lora_targets = {list(self.lora_targets)} names no decoder layer, so "
                f"LoRA would adapt nothing of the language model; valid: at least one of "
                f"{', '.join(DEFAULT_TARGETS)} (the vision names act with lora_vision: true)",
                f"{where}.lora_targets",
            )


@dataclass(frozen=True)
class EvalConfig:
    """How a model is evaluated; embedded as the `eval` section of a run config. Checked (and
    its values coerced: "none,blank" for conditions) when built."""

    conditions: tuple[str, ...] = _f(
        CORRUPTIONS,
        f"Conditions to evaluate under, in order; any of {', '.join(CORRUPTIONS)}.",
        choices=CORRUPTIONS,
        nonempty=True,
    )
    ratio: float = _f(
        1.0, "Share of items corrupted under each corrupted condition (0-1).", min=0, max=1
    )
    temperature: float = _f(0.0, "Sampling temperature; 0 is greedy decoding.", min=0)
    samples_per_item: int = _f(
        1,
        "Responses per item and condition (more than 1 needs temperature > 0).",
        min=1,
        most=MAX_GENERATIONS,
    )
    max_tokens: int = _f(
        64,
        "Maximum response tokens; longer responses are cut and flagged truncated. 64 fits the "
        "tiny synth models' short answers; reasoning models need 1024 or more.",
        min=1,
        most=MAX_TOKENS,
    )
    batch_size: int = _f(
        16,
        "Prompts per generate call (each prompt decodes samples_per_item rows).",
        min=1,
        most=MAX_BATCH,
    )
    top_p: float = _f(1.0, "Nucleus sampling mass when temperature > 0 (1: off).", gt=0, max=1)
    seed: int = _f(
        0,
        "Seed of the corruption choices (random-image donors, ratio) and sampling.",
        min=0,
        max=MAX_SEED,
    )
    template: str = _f(
        "easyr1",
        f"Prompt template; one of {', '.join(sorted(TEMPLATES))}.",
        choices=tuple(sorted(TEMPLATES)),
    )

    def __post_init__(self) -> None:
        hints = _hints(EvalConfig)
        for f in fields(self):
            value = _coerce(hints[f.name], getattr(self, f.name), f"eval.{f.name}")
            object.__setattr__(self, f.name, value)
        check(self, "eval")
        if self.samples_per_item > 1 and self.temperature == 0:
            raise ConfigError(
                f"eval.samples_per_item = {self.samples_per_item} with eval.temperature = 0 gives "
                "identical greedy samples; valid: temperature > 0, or samples_per_item = 1",
                "eval.samples_per_item",
            )


# ================================================================ run config sections


@dataclass
class ModelSection:
    """The base model every cell starts from."""

    id: str = _f(
        "hallucue-tiny",
        "Base model: 'hallucue-tiny' (the embedded offline model), a local directory or a "
        "Hugging Face id such as mlx-community/Qwen2.5-VL-3B-Instruct-4bit.",
        nonempty=True,
    )
    adapter: str | None = _f(
        None,
        "A LoRA adapter merged into the base before anything else (null: none).",
        nonempty=True,
    )
    dtype: str = _f(
        "auto",
        "Compute dtype: auto (float32 on CPU, bfloat16 on Metal/CUDA), float32, bfloat16, float16.",
        choices=DTYPES,
    )
    min_pixels: int | None = _f(None, _MIN_PIXELS_HELP, check=_pixels)
    max_pixels: int | None = _f(None, _MAX_PIXELS_HELP, check=_pixels)
    max_image_pixels: int | None = _f(MAX_IMAGE_PIXELS, _IMAGE_LIMIT_HELP, min=1)


@dataclass
class BenchmarkSpec:
    """One benchmark split: which items, how many, from where."""

    name: str = _f("synth", "Benchmark name (see `hallucue-mlx data list`).", nonempty=True)
    split: str | None = _f(
        None, "Split (null: the benchmark's default evaluation split).", nonempty=True
    )
    n: int | None = _f(
        None, "Seeded stratified subset of N items (null: the whole split).", min=1, most=MAX_ITEMS
    )
    path: str | None = _f(
        None,
        "Local copy (a `hallucue-mlx data prepare` folder, save_to_disk folder, parquet or json); "
        "null: the built-in generator (synth) or the Hugging Face hub cache.",
        nonempty=True,
    )


@dataclass
class DataSection:
    """Training items, evaluation benchmarks and the train-split slice that is evaluated too."""

    train: BenchmarkSpec = _f(
        BenchmarkSpec(name="synth", split="train"),
        "Training benchmark split: name, split, n, path.",
    )
    eval: list[BenchmarkSpec] = _f(
        [BenchmarkSpec(name="synth", split="test")],
        "Evaluation benchmarks (their test split), each with name, split, n, path.",
        nonempty=True,
    )
    train_slice_n: int = _f(
        100,
        "The first N training items are also evaluated (the paper's train-split settings).",
        min=1,
    )
    seed: int = _f(
        0, "Seed of the subset choice (which items of each split are used).", min=0, max=MAX_SEED
    )


@dataclass
class GridSection:
    """Which models are trained and which conditions they are evaluated under."""

    train_conditions: list[str] = _f(
        list(CORRUPTIONS),
        "One GRPO training per corruption (none = standard GRPO; blank, random, text_removal).",
        choices=CORRUPTIONS,
    )
    eval_conditions: list[str] = _f(
        list(CORRUPTIONS),
        "Every model is evaluated under each of these.",
        choices=CORRUPTIONS,
        nonempty=True,
    )
    ratio: float = _f(
        1.0, "Share of training items corrupted (the paper: 1.0). 0 < ratio <= 1.", gt=0, max=1
    )
    include_base: bool = _f(True, "Also evaluate the untrained base model (the reference row).")
    ratios: list[float] = _f(
        [],
        "A ratio sweep: train every corrupted condition at each of these ratios (clean GRPO and "
        "the base once) and report accuracy against the ratio; empty: one run at grid.ratio.",
        check=_ratio_list,
    )
    seeds: int = _f(
        1,
        "Train every condition under this many seeds (seed, seed + 1, ...): `run` makes a sweep "
        "of `seed` whose report gives each model's across-seed mean, spread and 95% intervals "
        "covering seeds and items. 1: one run, intervals over items only.",
        min=1,
        most=MAX_SEEDS,
    )
    random_reward_control: bool = _f(
        False,
        "Also train the control 'GRPO, random reward' (model random_reward): clean GRPO's recipe "
        "with a fair coin flip for the accuracy reward (the format reward real; "
        "rewards.random_reward), evaluated like every model: a gain clean GRPO has over it came "
        "from the reward signal, not from training alone.",
    )
    parallel: str = _f(
        "cells",
        "Under several processes (grid.processes, or mlx.launch -n N): cells gives each rank "
        "whole models (a "
        "training and its evaluations; the run folder must be on a filesystem every rank "
        "shares); data trains each model data-parallel over all ranks (rank 0 evaluates). One "
        "process ignores it; results do not depend on it.",
        choices=GRID_PARALLEL,
    )
    processes: int | None = _f(
        None,
        "Processes `run` (command or Python API) starts on this machine, each computing whole "
        "models (grid.parallel) with its share of the cores. null: on the CPU backend one per "
        "core, at most one per model and as many as the memory holds (MLX runs a CPU process's "
        "elementwise work on one core); one on Metal and CUDA. A sweep (grid.ratios, grid.seeds, "
        "the sweep command) counts one value's models and shares each value's grid in turn; "
        "under mlx.launch the launcher decides. Results do not depend on it.",
        min=1,
        most=256,
    )


@dataclass
class OutputSection:
    """Where the run folder goes."""

    dir: str = _f(
        "runs/default",
        "Run folder (manifest, train/, eval/, results.json, report).",
        nonempty=True,
    )


@dataclass
class RunConfig:
    """Everything `hallucue-mlx run` does, in one object."""

    seed: int = _f(
        0,
        "Seed of training (data order, corruption draws, LoRA init, sampling).",
        min=0,
        max=MAX_SEED,
    )
    model: ModelSection = _f(ModelSection(), "The base model.")
    data: DataSection = _f(DataSection(), "Training and evaluation data.")
    train: TrainConfig = _f(TrainConfig(), "GRPO settings (train.TrainConfig).")
    eval: EvalConfig = _f(EvalConfig(), "Evaluation settings (evaluate.EvalConfig).")
    grid: GridSection = _f(GridSection(), "The train x eval comparison grid.")
    output: OutputSection = _f(OutputSection(), "Output location.")


# Keys of TrainConfig / EvalConfig that the grid sets per cell, and where the user sets them.
TRAIN_OWNED = {
    "model": "model.id",
    "dtype": "model.dtype",
    "benchmark": "data.train.name",
    "train_split": "data.train.split",
    "n_train": "data.train.n",
    "eval_split": "data.train (the periodic evaluation uses its validation split, if it has one)",
    "corruption": "grid.train_conditions",
    "corruption_ratio": "grid.ratio",
    "seed": "seed",
}
EVAL_OWNED = {
    "conditions": "grid.eval_conditions",
    "seed": "seed",
    "template": "train.prompt_template (models are evaluated with the prompt they were trained on)",
}
_OWNED: dict[type, dict[str, str]] = {TrainConfig: TRAIN_OWNED, EvalConfig: EVAL_OWNED}


@dataclass(frozen=True)
class Setting:
    """One field of a settings dataclass as a command-line flag needs it."""

    name: str
    kind: type  # bool, int, float, str, or list (comma-separated on the command line)
    help: str
    default: Any
    choices: tuple[str, ...] | None


def settings(cls: type) -> list[Setting]:
    """Every field of settings dataclass `cls`, in order: the CLI's flags are made from these."""
    out = []
    for f in fields(cls):
        tp = _hints(cls)[f.name]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
            tp = args[0]
        kind = list if typing.get_origin(tp) in (list, tuple) else tp
        default = f.default_factory() if f.default is MISSING else f.default
        choices = f.metadata.get("choices")
        out.append(Setting(f.name, kind, f.metadata["help"], default, choices))
    return out


# ================================================================ files and overrides


def _parse_value(text: str) -> Any:
    """A --set value as YAML (numbers, true/false, null, [a, b]); plain text stays text."""
    try:
        return yaml.load(text, Loader=_StrictLoader) if text.strip() else ""  # noqa: S506
    except yaml.YAMLError:
        return text


def _set_path(tree: dict[str, Any], dotted: str, value: Any, defaults: dict[str, Any]) -> None:
    """tree[a][b][c] = value for 'a.b.c'; list entries by index or benchmark name."""
    parts = dotted.split(".")
    node: Any = tree
    shadow: Any = defaults
    for i, p in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            idx = _list_index(node, p, ".".join(parts[:i]))
            if last:
                node[idx] = value
                return
            node = node[idx]
            shadow = shadow[idx] if isinstance(shadow, list) and idx < len(shadow) else {}
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {'.'.join(parts[:i])} is not a section")
        if last:
            node[p] = value
            return
        if p not in node:
            sub = shadow.get(p) if isinstance(shadow, dict) else None
            if sub is None:
                # let the builder report the unknown key with the valid ones
                node[p] = {}
            else:
                node[p] = json.loads(json.dumps(sub))
        elif not isinstance(node[p], (dict, list)):
            raise ConfigError(f"--set {dotted}: {where} is a value, not a section")
        node = node[p]
        shadow = shadow.get(p, {}) if isinstance(shadow, dict) else {}


def _list_index(node: list, p: str, where: str) -> int:
    if p.lstrip("-").isdigit():
        idx = int(p)
        if not 0 <= idx < len(node):
            raise ConfigError(f"--set: {where} has {len(node)} entries, no index {idx}")
        return idx
    names = [e.get("name") for e in node if isinstance(e, dict)]
    if p in names:
        return names.index(p)
    raise ConfigError(f"--set: {where} has no entry {p!r}; use an index or one of {names}")


def apply_overrides(
    data: dict[str, Any], overrides: list[str], defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A copy of `data` with each 'section.key=value' applied (value parsed as YAML). `defaults`
    fills a section the data leaves out (None: the run config's defaults)."""
    out = json.loads(json.dumps(data))
    defaults = to_dict(default_config_object()) if defaults is None else defaults
    for kv in overrides:
        if "=" not in kv:
            raise ConfigError(f"--set takes section.key=value, got {kv!r}")
        k, v = kv.split("=", 1)
        k = k.strip()
        if not k:
            raise ConfigError(f"--set takes section.key=value, got {kv!r}")
        _set_path(out, k, _parse_value(v), defaults)
    return out


def _plain(value: Any) -> Any:
    """Python values as YAML's safe dumper writes them: tuples as lists, paths as text."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _yaml_flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def override_strings(overrides: Sequence[str] | Mapping[str, Any] | None) -> list[str]:
    """--set strings ('section.key=value') from a list of them, or from a mapping such as
    {"train.steps": 20, "grid.eval_conditions": ["none", "blank"]} whose values are Python
    objects, written as YAML that parses back to the same value: a mapping then takes the very
    path --set takes (the same checks, the same messages)."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        return [overrides]
    if not isinstance(overrides, Mapping):
        bad = [o for o in overrides if not isinstance(o, str)]
        if bad:
            raise ConfigError(f"an override is a 'section.key=value' string, got {bad[0]!r}")
        return list(overrides)
    out = []
    for key, value in overrides.items():
        if not isinstance(key, str) or not key.strip() or "=" in key:
            raise ConfigError(f"an override's key is a dotted 'section.key', got {key!r}")
        plain = _plain(value)
        try:
            text = _yaml_flow(plain)
            same = _yaml_flow(_parse_value(text)) == text
        except yaml.YAMLError:
            same = False
        if not same:
            raise ConfigError(
                f"{key}: {value!r} is not a value a config holds; valid: text, a number, "
                "true/false, None, or a list or mapping of those",
                key,
            )
        out.append(f"{key}={text}")
    return out


def default_config_object() -> RunConfig:
    """RunConfig() with every default (not the shipped default.yaml)."""
    return RunConfig()


def packaged_config_dir() -> Path:
    """The configs shipped inside the package (copies of the repository's configs/)."""
    return Path(__file__).resolve().parent / "configs"


def default_config_path() -> Path:
    return packaged_config_dir() / "default.yaml"


def resolve_config_path(path: str | Path | None) -> Path:
    """A config file: the given path, a shipped config by name ('paper-qwen25vl-3b'), or the default."""
    if path is None:
        return default_config_path()
    p = Path(path)
    if p.is_file():
        return p
    # only a bare name ('paper-qwen25vl-3b') picks a shipped config: a path or a file name that
    # does not exist is an error, never a shipped file that happens to share its name
    bare = str(path) == p.name and not p.suffix
    shipped = packaged_config_dir() / f"{p.name}.yaml"
    if bare and shipped.is_file():
        return shipped
    names = sorted(x.stem for x in packaged_config_dir().glob("*.yaml"))
    raise ConfigError(
        f"config {path} not found; give an existing YAML file or a shipped config by its bare "
        f"name: {names}"
    )


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without the shapes that lose data silently: a key given twice in one mapping
    (the last would win), anchors, aliases and merge keys (`<<`)."""

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(f"alias *{event.anchor}", event.start_mark, _NO_ANCHORS)
        event = self.peek_event()
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise _Refused(f"anchor &{anchor}", event.start_mark, _NO_ANCHORS)
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_CONFIG_DEPTH:
                raise _Refused(
                    f"nesting deeper than {MAX_CONFIG_DEPTH} levels",
                    event.start_mark,
                    "a config is a few mappings deep: write the keys its sections have",
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _Refused("merge key <<", key_node.start_mark, _NO_ANCHORS)
            key = self.construct_object(key_node, deep=True)
            try:
                dup = key in seen
                seen.add(key)
            except TypeError:
                continue  # an unhashable key: SafeLoader reports it
            if dup:
                raise _Refused(
                    f"duplicate key {key!r}",
                    key_node.start_mark,
                    "the later value would silently replace the earlier; give each key once",
                )
        return super().construct_mapping(node, deep=deep)


_NO_ANCHORS = "write each value out in full (anchors, aliases and merges can hide overrides)"
MAX_CONFIG_DEPTH = 32
_PLAIN = "a config holds text, numbers, true/false, null, lists and mappings only"


def _refuse_tag(tag: str, what: str, fix: str) -> None:
    def construct(loader: Any, node: Any) -> Any:
        shown = f" {node.value}" if isinstance(node.value, str) and len(node.value) < 40 else ""
        raise _Refused(f"{what}{shown}", node.start_mark, fix)

    _StrictLoader.add_constructor(f"tag:yaml.org,2002:{tag}", construct)


# Types YAML has and a config has not (they reached the settings as dates, bytes and sets).
_refuse_tag("timestamp", "the date", f"quote it if it is text ('2024-01-01'); {_PLAIN}")
for _tag, _what in (
    ("binary", "!!binary"),
    ("set", "!!set"),
    ("omap", "!!omap"),
    ("pairs", "!!pairs"),
):
    _refuse_tag(_tag, f"a {_what} value", _PLAIN)


class _Refused(yaml.YAMLError):
    def __init__(self, what: str, mark: Any, fix: str) -> None:
        super().__init__(what)
        self.what, self.line, self.fix = what, mark.line + 1, fix


# A run config is a few KB; a file this large is not one (and YAML's cost grows with it).
MAX_CONFIG_BYTES = 1_000_000


def load_yaml(path: str | Path, what: str = "sections (model, data, train, ...)") -> dict[str, Any]:
    """A YAML (or JSON) file's mapping; ConfigError when missing, unreadable or not a mapping, or
    over MAX_CONFIG_BYTES, or when it holds a shape that would lose data silently (duplicate
    keys, anchors, aliases, merges: aliases can also nest exponentially)."""
    p = Path(path)
    if p.exists() and not p.is_file() and not p.is_dir():  # a FIFO or device would block
        raise ConfigError(f"config {p} is not a regular file (a FIFO or device); give a YAML file")
    if not p.is_file():
        raise ConfigError(f"config {p} not found")
    size = p.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{p} is {size} bytes, over the {MAX_CONFIG_BYTES} a config may have: not a config"
        )
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506
    except _Refused as e:
        raise ConfigError(f"{p} line {e.line}: {e.what} is not allowed; {e.fix}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p} is not valid YAML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p} is not a text file (not UTF-8): give a YAML or JSON file") from None
    except OSError as e:
        raise ConfigError(f"cannot read config {p}: {e.strerror or e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must be a mapping of {what}")
    return data


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
) -> RunConfig:
    """Load a YAML run config (None: the packaged default), apply --set overrides (a list of
    'section.key=value', or a mapping: override_strings), validate."""
    p = resolve_config_path(path)
    sets = override_strings(overrides)
    data = apply_overrides(load_yaml(p), sets)
    try:
        return from_dict(data)
    except ConfigError as e:
        where = f"{p} with --set {' '.join(sets)}" if sets else str(p)
        raise ConfigError(f"{where}: {e}", e.key) from None


# ================================================================ output


def to_dict(cfg: Any) -> Any:
    """Plain nested data (what YAML/JSON hold), without the grid-owned keys."""
    if is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in _section_fields(type(cfg))}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(x) for x in cfg]
    return cfg


IMAGE_KEY_DEFAULTS = {"min_pixels": None, "max_pixels": None, "max_image_pixels": MAX_IMAGE_PIXELS}


def image_sizes(section: ModelSection | TrainConfig) -> dict[str, int | None]:
    """The image-size keys of a model section or training config, as load_model takes them."""
    return {key: getattr(section, key) for key in IMAGE_KEY_DEFAULTS}


def config_hash(cfg: RunConfig) -> str:
    """sha256 of everything that decides the cells' results (the output folder and how
    processes share the work excluded)."""
    d = to_dict(cfg)
    d.pop("output", None)
    d["grid"].pop("parallel", None)
    d["grid"].pop("processes", None)
    # how the loss splits its batch changes the numbers by float summation order only
    d["train"].pop("micro_batch_size_per_device_for_update", None)
    if not d["grid"].get("ratios"):  # no sweep: the hash of folders made before the key existed
        d["grid"].pop("ratios", None)
    if d["grid"].get("seeds") == 1:  # likewise
        d["grid"].pop("seeds", None)
    if not d["grid"].get("random_reward_control"):  # likewise
        d["grid"].pop("random_reward_control", None)
    for key, default in IMAGE_KEY_DEFAULTS.items():  # likewise for the image-size keys
        if d["model"].get(key) == default:
            d["model"].pop(key, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def describe(cls: type = RunConfig, where: str = "") -> dict[str, str]:
    """{'section.key': help} for every key of the config."""
    out: dict[str, str] = {}
    hints = _hints(cls)
    for f in _section_fields(cls):
        key = f"{where}.{f.name}" if where else f.name
        tp = hints[f.name]
        sub = _dataclass_in(tp)
        out[key] = f.metadata.get("help", "")
        if sub is not None:
            out.update(describe(sub, key + ("[]" if typing.get_origin(tp) is list else "")))
    return out


def _dataclass_in(tp: Any) -> type | None:
    if is_dataclass(tp):
        return tp
    for a in typing.get_args(tp):
        if is_dataclass(a):
            return a
    return None


def dump_yaml(cfg: RunConfig, comments: bool = True) -> str:
    """The resolved config as YAML; with comments, each key's help above it."""
    data = to_dict(cfg)
    if not comments:
        return yaml.safe_dump(data, sort_keys=False)
    helps = describe()
    lines: list[str] = []

    def emit(node: Any, where: str, indent: int) -> None:
        pad = "  " * indent
        for k, v in node.items():
            key = f"{where}.{k}" if where else k
            h = helps.get(key) or helps.get(key.replace(".eval.", ".eval[]."))
            if h:
                lines.append(f"{pad}# {h}")
            if isinstance(v, dict):
                lines.append(f"{pad}{k}:")
                emit(v, key, indent + 1)
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                lines.append(f"{pad}{k}:")
                for entry in v:
                    flow = yaml.safe_dump(entry, default_flow_style=True, sort_keys=False).strip()
                    lines.append(f"{pad}  - {flow}")
            else:
                flow = yaml.safe_dump(v, default_flow_style=True).strip()
                if flow.endswith("\n..."):
                    flow = flow[:-4].strip()
                flow = flow.removesuffix("...").strip()
                lines.append(f"{pad}{k}: {flow}")

    emit(data, "", 0)
    return "\n".join(lines) + "\n"


# ================================================================ derived per-cell configs


def prompt_template(cfg: RunConfig) -> str:
    """train.prompt_template with 'auto' resolved: 'short' for hallucue-tiny (the format it was
    warmed up with), 'easyr1' (the paper's) for any other model."""
    return resolve_template(cfg.train.prompt_template, cfg.model.id)


def trained_models(cfg: RunConfig) -> list[str]:
    """The grid's trainings by model name: one per training condition (named after it), then
    the random-reward control (RANDOM_REWARD) when grid.random_reward_control is set."""
    controls = [RANDOM_REWARD] if cfg.grid.random_reward_control else []
    return [*cfg.grid.train_conditions, *controls]


def train_config_for(cfg: RunConfig, model: str) -> TrainConfig:
    """The TrainConfig of one grid training, by model name: the shared settings plus the
    model's corruption (a training condition names its model), or for the random-reward control
    (RANDOM_REWARD) clean GRPO's settings with rewards.random_reward as the reward."""
    if model == RANDOM_REWARD:
        clean = train_config_for(cfg, "none")
        return replace(clean, reward_function=RANDOM_REWARD_FUNCTION)
    condition = model  # checked with the other keys by TrainConfig.validate
    return replace(
        cfg.train,
        model=cfg.model.id,
        dtype=cfg.model.dtype,
        min_pixels=cfg.model.min_pixels,
        max_pixels=cfg.model.max_pixels,
        max_image_pixels=cfg.model.max_image_pixels,
        benchmark=cfg.data.train.name,
        train_split=cfg.data.train.split or "train",
        n_train=cfg.data.train.n,
        corruption=condition,
        corruption_ratio=cfg.grid.ratio if condition != "none" else 1.0,
        seed=cfg.seed,
        prompt_template=prompt_template(cfg),
    )


def eval_config_for(cfg: RunConfig) -> EvalConfig:
    """The EvalConfig every evaluation of the grid uses: conditions, seed and prompt from the grid."""
    return replace(
        cfg.eval,
        conditions=tuple(cfg.grid.eval_conditions),
        seed=cfg.seed,
        template=prompt_template(cfg),
    )


def run_dir(cfg: RunConfig, quick: bool = False) -> Path:
    """The run folder when none is given: output.dir, plus '-quick' for a smoke run (so a smoke
    run never continues, or is refused by, the full run's folder)."""
    return Path(cfg.output.dir + ("-quick" if quick else ""))


def quick(cfg: RunConfig) -> RunConfig:
    """A smoke-run version: few steps and items, every cell still run."""
    t = replace(
        cfg.train,
        steps=min(cfg.train.steps, 2),
        prompts_per_step=2,
        num_generations=2,
        max_completion_length=min(cfg.train.max_completion_length, 48),
        eval_every=0,
        save_every=1,
        warmup_steps=0,
    )

    def few(n: int | None, k: int) -> int:
        return k if n is None else min(n, k)

    data = replace(
        cfg.data,
        train=replace(cfg.data.train, n=few(cfg.data.train.n, 8)),
        eval=[replace(s, n=few(s.n, 8)) for s in cfg.data.eval],
        train_slice_n=min(cfg.data.train_slice_n, 4),
    )
    ev = replace(cfg.eval, max_tokens=min(cfg.eval.max_tokens, 48), samples_per_item=1)
    ev = replace(ev, temperature=0.0) if ev.samples_per_item == 1 else ev
    out = replace(cfg, train=t, data=data, eval=ev)
    validate(out)
    return out
