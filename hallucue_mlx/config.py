"""The run configuration behind `hallucue-mlx run`: sections, YAML loading, --set overrides, checks.

A run config has the sections model, data, train, eval, grid and output, plus a top-level seed.
`train` is train.TrainConfig and `eval` is evaluate.EvalConfig, minus the keys the grid sets per
cell (the training corruption, the model, the data, the seed): those live in one place only, so a
config cannot say two things at once. Every key carries its help text in the dataclass metadata;
`describe()` and `dump_yaml(comments=True)` print it.

Errors are `ConfigError`s that name the key (`train.steps`) and, for unknown keys or bad choices,
list the valid ones.
"""

from __future__ import annotations

import copy
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from hallucue_mlx.corrupt import CORRUPTIONS
from hallucue_mlx.train import TrainConfig


class ConfigError(ValueError):
    """A bad run config: the message names the key and the fix."""


def _f(default: Any, help: str, **meta: Any) -> Any:
    """A dataclass field with its help text (and optional 'min' / 'choices' checks) in metadata."""
    if isinstance(default, (list, dict)):
        return field(
            default_factory=lambda: type(default)(default), metadata={"help": help, **meta}
        )
    if is_dataclass(default):
        return field(
            default_factory=lambda: copy.deepcopy(default), metadata={"help": help, **meta}
        )
    return field(default=default, metadata={"help": help, **meta})


# ================================================================ sections


@dataclass
class ModelSection:
    """The base model every cell starts from."""

    id: str = _f(
        "hallucue-tiny",
        "Base model: 'hallucue-tiny' (the embedded offline model), a local directory or a "
        "Hugging Face id such as mlx-community/Qwen2.5-VL-3B-Instruct-4bit.",
    )
    adapter: str | None = _f(
        None, "A LoRA adapter merged into the base before anything else (null: none)."
    )
    dtype: str = _f(
        "auto",
        "Compute dtype: auto (float32 on CPU, bfloat16 on Metal/CUDA), float32, bfloat16, float16.",
        choices=("auto", "float32", "bfloat16", "float16"),
    )


@dataclass
class BenchmarkSpec:
    """One benchmark split: which items, how many, from where."""

    name: str = _f("synth", "Benchmark name (see `hallucue-mlx data list`).")
    split: str | None = _f(None, "Split (null: the benchmark's default evaluation split).")
    n: int | None = _f(None, "Seeded stratified subset of N items (null: the whole split).", min=1)
    path: str | None = _f(
        None,
        "Local copy (a `hallucue-mlx data prepare` folder, save_to_disk folder, parquet or json); "
        "null: the built-in generator (synth) or the Hugging Face hub cache.",
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
    )
    train_slice_n: int = _f(
        100,
        "The first N training items are also evaluated (the paper's train-split settings).",
        min=1,
    )
    seed: int = _f(0, "Seed of the subset choice (which items of each split are used).")


@dataclass
class GridSection:
    """Which models are trained and which conditions they are evaluated under."""

    train_conditions: list[str] = _f(
        list(CORRUPTIONS),
        "One GRPO training per corruption (none = standard GRPO; blank, random, text_removal).",
        choices=CORRUPTIONS,
    )
    eval_conditions: list[str] = _f(
        list(CORRUPTIONS), "Every model is evaluated under each of these.", choices=CORRUPTIONS
    )
    ratio: float = _f(
        1.0, "Share of training items corrupted (the paper: 1.0). 0 < ratio <= 1.", min=0.0
    )
    include_base: bool = _f(True, "Also evaluate the untrained base model (the reference row).")


@dataclass
class OutputSection:
    """Where the run folder goes."""

    dir: str = _f("runs/default", "Run folder (manifest, train/, eval/, results.json, report).")


def _eval_config_cls() -> type:
    from hallucue_mlx.evaluate import EvalConfig

    return EvalConfig


def _default_eval() -> Any:
    return _eval_config_cls()()


@dataclass
class RunConfig:
    """Everything `hallucue-mlx run` does, in one object."""

    seed: int = _f(0, "Seed of training (data order, corruption draws, LoRA init, sampling).")
    model: ModelSection = _f(ModelSection(), "The base model.")
    data: DataSection = _f(DataSection(), "Training and evaluation data.")
    train: TrainConfig = _f(TrainConfig(), "GRPO settings (train.TrainConfig).")
    eval: Any = field(
        default_factory=_default_eval,
        metadata={"help": "Evaluation settings (evaluate.EvalConfig)."},
    )
    grid: GridSection = _f(GridSection(), "The train x eval comparison grid.")
    output: OutputSection = _f(OutputSection(), "Output location.")


# Keys of TrainConfig / EvalConfig that the grid sets per cell, and where the user sets them.
TRAIN_OWNED = {
    "model": "model.id",
    "dtype": "model.dtype",
    "benchmark": "data.train.name",
    "train_split": "data.train.split",
    "n_train": "data.train.n",
    "eval_split": "data.eval (the periodic evaluation uses the first eval benchmark)",
    "corruption": "grid.train_conditions",
    "corruption_ratio": "grid.ratio",
    "seed": "seed",
}
EVAL_OWNED = {
    "conditions": "grid.eval_conditions",
    "seed": "seed",
    "template": "train.prompt_template (models are evaluated with the prompt they were trained on)",
}

# Lower bounds of TrainConfig / EvalConfig keys the owning modules do not check themselves.
TRAIN_MIN = {
    "n_eval": 0,
    "eval_every": 0,
    "save_every": 1,
    "keep_checkpoints": 1,
    "max_bad_steps": 1,
    "warmup_steps": 0,
    "num_generations": 2,
    "learning_rate": 0.0,
    "beta": 0.0,
    "max_grad_norm": 0.0,
    "lora_alpha": 0.0,
    "max_minutes": 0.0,
}
STRICT_POSITIVE = {"learning_rate", "lora_alpha", "ratio", "max_minutes"}


def _owned(cls: type) -> dict[str, str]:
    if cls is TrainConfig:
        return TRAIN_OWNED
    if cls is _eval_config_cls():
        return EVAL_OWNED
    return {}


def _section_fields(cls: type) -> list:
    owned = _owned(cls)
    return [f for f in fields(cls) if f.name not in owned]


def _hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    if cls is RunConfig:
        hints["eval"] = _eval_config_cls()
    return hints


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


# ================================================================ building from plain data


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """`value` (from YAML or --set) as type `tp`, or a ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, key)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin in (list, tuple):
        arg = (typing.get_args(tp) or (Any,))[0]
        if isinstance(value, str) and arg is str:
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        out = [_coerce(arg, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if is_dataclass(tp):
        if is_dataclass(value) and type(value) is tp:
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {_keys_of(tp)}, got {value!r}")
        return _build(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # PyYAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if tp is dict or origin is dict:
        if isinstance(value, dict):
            return value
        raise ConfigError(f"{key}: expected a mapping, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def _keys_of(cls: type) -> str:
    return ", ".join(f.name for f in _section_fields(cls))


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    """An instance of dataclass `cls` from a mapping; unknown keys name the valid ones."""
    hints = _hints(cls)
    valid = {f.name: f for f in _section_fields(cls)}
    owned = _owned(cls)
    kwargs = {}
    for k, v in data.items():
        key = f"{where}.{k}" if where else str(k)
        if k in owned:
            raise ConfigError(f"{key} is set by the grid, not here: use {owned[k]}")
        if k not in valid:
            raise ConfigError(
                f"unknown key {key!r}; valid keys{' of ' + where if where else ''}: "
                f"{', '.join(valid)}"
            )
        kwargs[k] = _coerce(hints[k], v, key)
    try:
        return cls(**kwargs)
    except ValueError as e:  # checks in the section's own __post_init__
        raise ConfigError(str(e)) from None


def from_dict(data: dict[str, Any]) -> RunConfig:
    """A validated RunConfig from a nested mapping (a YAML document)."""
    if not isinstance(data, dict):
        raise ConfigError(f"a run config must be a mapping of sections, got {type(data).__name__}")
    cfg = _build(RunConfig, data, "")
    validate(cfg)
    return cfg


# ================================================================ validation


def _check_section(obj: Any, where: str) -> None:
    """Per-field 'min' and 'choices' metadata of this module's sections, recursively."""
    for f in fields(obj):
        v = getattr(obj, f.name)
        key = f"{where}.{f.name}" if where else f.name
        lo = f.metadata.get("min")
        if lo is not None and v is not None and v < lo:
            raise ConfigError(f"{key} must be >= {lo}, got {v}")
        choices = f.metadata.get("choices")
        if choices is not None:
            for x in v if isinstance(v, list) else [v]:
                if x not in choices:
                    raise ConfigError(
                        f"{key}: {x!r} is not valid; choose from {', '.join(choices)}"
                    )
            if isinstance(v, list) and len(set(v)) != len(v):
                raise ConfigError(f"{key} lists a value twice: {v}")
        subs = v if isinstance(v, list) else [v]
        for i, x in enumerate(subs):
            if is_dataclass(x) and type(x).__module__ == __name__:
                _check_section(x, f"{key}[{i}]" if isinstance(v, list) else key)


def _check_bounds(obj: Any, where: str, mins: dict[str, float]) -> None:
    for name, lo in mins.items():
        if not hasattr(obj, name):
            continue
        v = getattr(obj, name)
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if name in STRICT_POSITIVE and v <= lo:
            raise ConfigError(f"{where}.{name} must be > {lo}, got {v}")
        if v < lo:
            raise ConfigError(f"{where}.{name} must be >= {lo}, got {v}")


def validate(cfg: RunConfig) -> None:
    """Raise ConfigError naming the first bad key; return None when the config is usable."""
    from hallucue_mlx.data.bench import BENCHMARKS
    from hallucue_mlx.prompts import TEMPLATES

    _check_section(cfg, "")
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
    if not cfg.data.eval:
        raise ConfigError("data.eval is empty: list at least one evaluation benchmark")
    names = [s.name for s in cfg.data.eval]
    if len(set(names)) != len(names):
        raise ConfigError(f"data.eval lists a benchmark twice: {names}")
    if not cfg.grid.eval_conditions:
        raise ConfigError(f"grid.eval_conditions is empty; choose from {', '.join(CORRUPTIONS)}")
    if not cfg.grid.train_conditions and not cfg.grid.include_base:
        raise ConfigError(
            "grid.train_conditions is empty and grid.include_base is false: nothing to run"
        )
    if cfg.model.adapter is not None and cfg.grid.train_conditions:
        raise ConfigError(
            "model.adapter is only supported for evaluation-only grids (grid.train_conditions: "
            "[]); to train on top of an adapter, fuse it into the base model first"
        )
    if not 0 < cfg.grid.ratio <= 1:
        raise ConfigError(f"grid.ratio must be in (0, 1], got {cfg.grid.ratio}")
    if cfg.train.prompt_template not in (*TEMPLATES, "auto"):
        raise ConfigError(
            f"train.prompt_template: {cfg.train.prompt_template!r} is not valid; choose from "
            f"{', '.join(TEMPLATES)}, auto"
        )
    _check_bounds(cfg.train, "train", TRAIN_MIN)
    try:
        cfg.train.validate()
    except ValueError as e:
        msg = str(e)  # TrainConfig's messages start with the field name
        known = msg.split(" ", 1)[0] in {f.name for f in fields(TrainConfig)}
        raise ConfigError(f"train.{msg}" if known else f"train: {msg}") from None
    try:
        eval_config_for(cfg)  # EvalConfig checks its values when built
    except ValueError as e:
        raise ConfigError(str(e)) from None


# ================================================================ files and overrides


def _parse_value(text: str) -> Any:
    """A --set value as YAML (numbers, true/false, null, [a, b]); plain text stays text."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
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


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of `data` with each 'section.key=value' applied (value parsed as YAML)."""
    out = json.loads(json.dumps(data))
    defaults = to_dict(default_config_object())
    for kv in overrides:
        if "=" not in kv:
            raise ConfigError(f"--set takes section.key=value, got {kv!r}")
        k, v = kv.split("=", 1)
        k = k.strip()
        if not k:
            raise ConfigError(f"--set takes section.key=value, got {kv!r}")
        _set_path(out, k, _parse_value(v), defaults)
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
    shipped = packaged_config_dir() / (p.name if p.suffix else f"{p.name}.yaml")
    if shipped.is_file() and len(p.parts) <= 2:
        return shipped
    names = sorted(x.stem for x in packaged_config_dir().glob("*.yaml"))
    raise ConfigError(f"config {path} not found; give a YAML file or a shipped config: {names}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must be a mapping of sections (model, data, train, ...)")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML run config (None: the packaged default), apply --set overrides, validate."""
    p = resolve_config_path(path)
    data = apply_overrides(load_yaml(p), overrides or [])
    try:
        return from_dict(data)
    except ConfigError as e:
        where = f"{p} with --set {' '.join(overrides)}" if overrides else str(p)
        raise ConfigError(f"{where}: {e}") from None


# ================================================================ output


def to_dict(cfg: Any) -> Any:
    """Plain nested data (what YAML/JSON hold), without the grid-owned keys."""
    if is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in _section_fields(type(cfg))}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(x) for x in cfg]
    return cfg


def config_hash(cfg: RunConfig) -> str:
    """sha256 of everything that decides the cells' results (the output folder excluded)."""
    d = to_dict(cfg)
    d.pop("output", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def describe(cls: type = RunConfig, where: str = "") -> dict[str, str]:
    """{'section.key': help} for every key of the config."""
    out: dict[str, str] = {}
    hints = _hints(cls)
    for f in _section_fields(cls):
        key = f"{where}.{f.name}" if where else f.name
        tp = hints[f.name]
        sub = _dataclass_in(tp) if f.name != "eval" or cls is not RunConfig else _eval_config_cls()
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
    from hallucue_mlx.prompts import resolve_template

    return resolve_template(cfg.train.prompt_template, cfg.model.id)


def train_config_for(cfg: RunConfig, condition: str) -> TrainConfig:
    """The TrainConfig of one grid training: the shared settings plus this cell's corruption."""
    return replace(
        cfg.train,
        model=cfg.model.id,
        dtype=cfg.model.dtype,
        benchmark=cfg.data.train.name,
        train_split=cfg.data.train.split or "train",
        n_train=cfg.data.train.n,
        corruption=condition,
        corruption_ratio=cfg.grid.ratio if condition != "none" else 1.0,
        seed=cfg.seed,
        prompt_template=prompt_template(cfg),
    )


def eval_config_for(cfg: RunConfig) -> Any:
    """The EvalConfig every evaluation of the grid uses: conditions, seed and prompt from the grid."""
    return replace(
        cfg.eval,
        conditions=tuple(cfg.grid.eval_conditions),
        seed=cfg.seed,
        template=prompt_template(cfg),
    )


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
