"""LoRA GRPO training with corruption-aware rollouts: the loop, checkpoints and resume.

Per step: take the next `prompts_per_step` training items (seeded order; each item's corruption was
drawn once, up front, so rollout and loss see the same corrupted input), encode each prompt once,
decode `num_generations` completions per prompt as one batch, score them, normalise rewards per
group, then `num_iterations` AdamW updates of the LoRA weights on the clipped surrogate (+ beta *
k3 KL to the LoRA-off reference). Everything random derives from `seed` and the step number, so a
resumed run continues exactly as if it had never stopped.

Simplifications against textbook GRPO, on purpose: one process, the whole rollout batch in one
loss (dapo and bnpo coincide); the reference is the base model with LoRA off, not a frozen copy.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from hallucue_mlx import atomic
from hallucue_mlx.grpo import (
    LOSS_TYPES,
    SCALE_REWARDS,
    LossConfig,
    group_advantages,
    make_batch,
    policy_loss,
    reference_logprobs,
)
from hallucue_mlx.models.lora import (
    DEFAULT_TARGETS,
    LoraConfig,
    apply_lora,
    load_adapter_weights,
    save_adapter,
)
from hallucue_mlx.rollout import Episode, encode_prompt, generate, logit_bias

# ================================================================ configuration


def _f(default: Any, help: str) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: default, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every knob of a GRPO run. Defaults are the paper's preset where the paper states one."""

    # model and data
    model: str = _f("hallucue-tiny", "Base model: a local directory or a Hugging Face id.")
    dtype: str = _f(
        "auto", "Compute dtype: auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16."
    )
    benchmark: str = _f("synth", "Training benchmark.")
    train_split: str = _f("train", "Split the training prompts come from.")
    n_train: int | None = _f(None, "Use only the first N training items (None: all).")
    eval_split: str = _f("test", "Held-out split for the periodic greedy evaluation.")
    n_eval: int = _f(48, "Held-out items per periodic evaluation condition (0: no evaluation).")
    prompt_template: str = _f(
        "auto",
        "Prompt template (prompts.TEMPLATES); auto: 'short' for hallucue-tiny (its warm-up "
        "format), 'easyr1' (the paper's) otherwise.",
    )
    corruption: str = _f("none", "Training corruption: none, blank, random, text_removal.")
    corruption_ratio: float = _f(1.0, "Share of training items corrupted (drawn once per item).")
    # rollouts
    num_generations: int = _f(5, "Completions per prompt (G). Paper: 5.")
    prompts_per_step: int = _f(
        4, "Prompts per step; a step samples prompts_per_step * G completions."
    )
    temperature: float = _f(0.7, "Sampling temperature. Paper: 0.7.")
    top_p: float = _f(1.0, "Nucleus sampling mass (1: off, keeps the policy gradient unbiased).")
    max_completion_length: int = _f(
        128, "Maximum completion tokens; longer ones are truncated (flagged)."
    )
    # objective (TRL's names)
    loss_type: str = _f("dapo", "grpo, dr_grpo, dapo (bnpo): how per-token losses are averaged.")
    scale_rewards: str = _f("group", "Advantage scaling: group, batch or none.")
    drop_zero_std_groups: bool = _f(
        False,
        "Leave groups whose rewards are all equal (zero advantage) out of the update (DAPO's "
        "dynamic-sampling filter, without refilling): more signal per update on a peaked model.",
    )
    epsilon: float = _f(0.2, "Lower clip range of the importance ratio.")
    epsilon_high: float | None = _f(None, "Upper clip range (None: epsilon). DAPO uses 0.28.")
    beta: float = _f(0.01, "KL coefficient (k3 estimator, LoRA-off reference). Paper: 0.01.")
    importance_sampling_level: str = _f("token", "token (GRPO) or sequence (GSPO).")
    num_iterations: int = _f(1, "Updates per rollout batch (mu).")
    accuracy_weight: float = _f(0.9, "Reward weight of answer accuracy.")
    format_weight: float = _f(0.1, "Reward weight of the <think>..</think> \\boxed{} format.")
    reward_function: str | None = _f(
        None,
        "Your own reward, 'pkg.module:function' called as fn(response, item) -> float or "
        "rewards.Reward; replaces the weighted accuracy + format reward (None: built-in).",
    )
    # LoRA
    lora_rank: int = _f(8, "LoRA rank.")
    lora_alpha: float = _f(16.0, "LoRA alpha (scale = alpha / rank).")
    lora_dropout: float = _f(0.0, "LoRA dropout.")
    lora_targets: list[str] = _f(list(DEFAULT_TARGETS), "Linear layers to adapt.")
    lora_layers: int = _f(-1, "Adapt only the last N decoder layers (-1: all).")
    # optimisation
    learning_rate: float = _f(2e-4, "Peak AdamW learning rate.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    warmup_steps: int = _f(5, "Linear warm-up, in optimizer updates.")
    min_lr_ratio: float = _f(0.1, "Cosine decay ends at learning_rate * min_lr_ratio.")
    max_grad_norm: float = _f(1.0, "Gradient-norm clipping (0: off).")
    grad_checkpoint: bool = _f(
        False, "Recompute decoder activations in the backward pass (less memory)."
    )
    # loop
    steps: int = _f(200, "Training steps (rollout batches).")
    seed: int = _f(0, "Seed of data order, corruption draws, LoRA init and sampling.")
    eval_every: int = _f(
        50, "Greedy held-out evaluation every N steps, and at start and end (0: never)."
    )
    save_every: int = _f(25, "Checkpoint every N steps (and at the end).")
    keep_checkpoints: int = _f(2, "How many step checkpoints to keep.")
    max_bad_steps: int = _f(5, "Abort after this many non-finite updates in a row.")
    max_minutes: float | None = _f(
        None, "Stop (as a finished run) after the step that crosses this much training time."
    )

    def validate(self) -> None:
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type {self.loss_type!r} is not one of {LOSS_TYPES}")
        if self.scale_rewards not in SCALE_REWARDS:
            raise ValueError(f"scale_rewards {self.scale_rewards!r} is not one of {SCALE_REWARDS}")
        if self.num_generations < 2:
            raise ValueError(
                "num_generations must be >= 2: GRPO compares completions within a group"
            )
        for name in (
            "prompts_per_step",
            "max_completion_length",
            "steps",
            "num_iterations",
            "lora_rank",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("save_every", "keep_checkpoints", "max_bad_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("n_eval", "eval_every", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.n_train is not None and self.n_train < 1:
            raise ValueError(f"n_train must be >= 1 or None (all items), got {self.n_train}")
        for name in ("learning_rate", "lora_alpha"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be > 0 or None, got {self.max_minutes}")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0 for GRPO sampling")
        if not 0 <= self.corruption_ratio <= 1:
            raise ValueError(f"corruption_ratio must be in [0, 1], got {self.corruption_ratio}")
        if self.reward_function is not None:
            from hallucue_mlx.rewards import load_reward_function

            load_reward_function(self.reward_function)  # fail before the model loads, naming it

    def lora(self) -> LoraConfig:
        return LoraConfig(
            rank=self.lora_rank,
            alpha=self.lora_alpha,
            dropout=self.lora_dropout,
            target_modules=tuple(self.lora_targets),
            num_layers=self.lora_layers,
            seed=self.seed,
        )

    def loss(self) -> LossConfig:
        return LossConfig(
            loss_type=self.loss_type,
            epsilon=self.epsilon,
            epsilon_high=self.epsilon_high,
            beta=self.beta,
            importance_sampling_level=self.importance_sampling_level,
            max_completion_length=self.max_completion_length,
            temperature=self.temperature,
        )


# The paper's GRPO settings (EasyR1 on Qwen2.5-VL): 5 rollouts, T = 0.7, KL 0.01 (k3).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"num_generations": 5, "temperature": 0.7, "beta": 0.01},
}


def config_help() -> dict[str, str]:
    return {f.name: f.metadata.get("help", "") for f in fields(TrainConfig)}


def _coerce(name: str, value: str) -> Any:
    """Parse a --set key=value string into the field's type."""
    f = {f.name: f for f in fields(TrainConfig)}.get(name)
    if f is None:
        raise ValueError(f"unknown training setting {name!r}; known: {sorted(config_help())}")
    default = TrainConfig().__getattribute__(name)
    if value.lower() in ("none", "null") and (default is None or "None" in str(f.type)):
        return None
    if isinstance(default, bool):
        if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ValueError(f"{name} takes true/false, got {value!r}")
        return value.lower() in ("1", "true", "yes")
    try:
        if isinstance(default, int) and not isinstance(default, bool):
            return int(value)
        if isinstance(default, float) or "float" in str(f.type):
            return float(value)
        if isinstance(default, list):
            return [v.strip() for v in value.split(",") if v.strip()]
        if "int" in str(f.type):
            return int(value)
    except ValueError:
        kind = "an integer" if "int" in str(f.type) else "a number"
        raise ValueError(f"{name} takes {kind}, got {value!r}") from None
    return value


def _check_type(name: str, value: Any) -> None:
    """A setting from a YAML/JSON file must have its field's type (ints pass as floats)."""
    f = {f.name: f for f in fields(TrainConfig)}[name]
    t = str(f.type)
    ok = {
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    }
    base = t.replace(" | None", "")
    if value is None and "None" in t:
        return
    words = {
        "bool": "true or false",
        "int": "an integer",
        "float": "a number",
        "str": "a string",
        "list[str]": "a list of strings",
    }
    if base in ok and not ok[base](value):
        raise ValueError(f"{name} takes {words[base]}, got {value!r} ({type(value).__name__})")


def make_config(
    base: TrainConfig | None = None, preset: str | None = None, **overrides: Any
) -> TrainConfig:
    """A TrainConfig from a preset plus overrides (strings are parsed as --set values)."""
    cfg = base or TrainConfig()
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        cfg = replace(cfg, **PRESETS[preset])
    parsed = {
        k: (
            _coerce(k, v)
            if isinstance(v, str) and not isinstance(getattr(cfg, k, None), str)
            else v
        )
        for k, v in overrides.items()
    }
    unknown = sorted(set(parsed) - set(config_help()))
    if unknown:
        raise ValueError(f"unknown training settings {unknown}; known: {sorted(config_help())}")
    for k, v in parsed.items():
        _check_type(k, v)
    cfg = replace(cfg, **parsed)
    cfg.validate()
    return cfg


# ================================================================ data


def load_items(benchmark: str, split: str, n: int | None, seed: int) -> list:
    """Items of a benchmark split, through the one benchmark entry point."""
    from hallucue_mlx.data.bench import load_benchmark

    return load_benchmark(benchmark, split, n=n, seed=seed)


def corrupted_pool(items: list, name: str, ratio: float, seed: int) -> list[tuple[Any, Any]]:
    """Each item's corruption drawn once for the whole run: [(item as trained on, record)]."""
    if name == "none":
        return [(it, None) for it in items]
    from hallucue_mlx.corrupt import Corruption, apply

    return apply(items, Corruption(name, ratio=ratio, seed=seed))


def step_indices(step: int, per_step: int, n_items: int, seed: int) -> list[int]:
    """Item indices for a step: epochs walk a seeded permutation; pure function of the step."""
    out = []
    for pos in range(step * per_step, (step + 1) * per_step):
        epoch, k = divmod(pos, n_items)
        perm = np.random.default_rng([seed, epoch]).permutation(n_items)
        out.append(int(perm[k]))
    return out


def updated_groups(rewards: list[float], group_size: int, drop_zero_std: bool) -> list[int]:
    """The groups a step's update uses: all, or (drop_zero_std) those whose rewards differ.

    A group with equal rewards has zero advantages: it adds no policy gradient, only KL and
    tokens to average over. Dropping it is DAPO's dynamic-sampling filter without refilling the
    batch. When no group has spread, all are kept (the update then carries only the KL term).
    """
    g = np.asarray(rewards, np.float64).reshape(-1, group_size)
    every = list(range(len(g)))
    if not drop_zero_std:
        return every
    spread = [i for i in every if np.ptp(g[i]) > 0]
    return spread or every


def step_key(seed: int, step: int) -> mx.array:
    return mx.random.key(seed * 1_000_003 + step)


# ================================================================ optimizer and checkpoints


def make_optimizer(cfg: TrainConfig) -> optim.Optimizer:
    total = cfg.steps * cfg.num_iterations
    warm = min(cfg.warmup_steps, max(total - 1, 0))
    decay = optim.cosine_decay(
        cfg.learning_rate, max(total - warm, 1), cfg.learning_rate * cfg.min_lr_ratio
    )
    if warm > 0:
        # start at lr / (warm + 1), not 0: the first update must not be wasted
        start = cfg.learning_rate / (warm + 1)
        lr = optim.join_schedules(
            [optim.linear_schedule(start, cfg.learning_rate, warm), decay], [warm]
        )
    else:
        lr = decay
    # Bias correction as in PyTorch/TRL: MLX's default (off) makes the first ~100 updates 2-6x
    # larger than the learning rate, which on a peaked model is enough to derail GRPO.
    return optim.AdamW(learning_rate=lr, weight_decay=cfg.weight_decay, bias_correction=True)


CKPT_DIR = "checkpoints"
LATEST = "latest"


def save_checkpoint(
    out_dir: Path, step: int, model: nn.Module, opt: optim.Optimizer, cfg: TrainConfig, extra: dict
) -> Path:
    """checkpoints/step_N/ (adapter, optimizer state, RNG, position), then the `latest` pointer is
    replaced atomically: a crash mid-write leaves the previous checkpoint in force."""
    root = out_dir / CKPT_DIR
    d = root / f"step_{step:06d}"
    tmpd = root / f".tmp_step_{step:06d}"
    shutil.rmtree(tmpd, ignore_errors=True)
    tmpd.mkdir(parents=True)
    save_adapter(model, tmpd)
    state = dict(tree_flatten(opt.state))
    mx.save_safetensors(str(tmpd / "optimizer.safetensors"), state)
    # RNG: every random draw of a step derives from (seed, step), so these two restore it exactly
    rng = {"seed": cfg.seed, "next_step": step}
    atomic.write_json(
        tmpd / "state.json",
        {
            "step": step,
            "data_position": step * cfg.prompts_per_step,
            "rng": rng,
            "config": asdict(cfg),
            **extra,
        },
        indent=2,
        end="",
    )
    shutil.rmtree(d, ignore_errors=True)
    os.replace(tmpd, d)
    atomic.write_json(root / LATEST, {"checkpoint": d.name, "step": step}, indent=2, end="")
    # prune old step checkpoints
    olds = sorted(p for p in root.glob("step_*") if p.is_dir() and p != d)
    for p in olds[: max(0, len(olds) - (cfg.keep_checkpoints - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return d


def latest_checkpoint(out_dir: Path) -> Path | None:
    p = out_dir / CKPT_DIR / LATEST
    if not p.is_file():
        return None
    d = out_dir / CKPT_DIR / json.loads(p.read_text())["checkpoint"]
    return d if d.is_dir() else None


def _restore(ckpt: Path, model: nn.Module, opt: optim.Optimizer) -> dict:
    load_adapter_weights(model, ckpt)
    state = mx.load(str(ckpt / "optimizer.safetensors"))
    opt.state = tree_unflatten(list(state.items()))
    mx.eval(opt.state)
    return json.loads((ckpt / "state.json").read_text())


# ================================================================ evaluation


def greedy_eval(
    model: nn.Module, processor: Any, pool: list, cfg: TrainConfig, reward_cfg: Any, batch: int = 16
) -> dict[str, float]:
    """Greedy accuracy / format / reward on (item, record) pairs."""
    from hallucue_mlx.rewards import score

    acc = fmt = rew = 0.0
    for i in range(0, len(pool), batch):
        chunk = [it for it, _ in pool[i : i + batch]]
        prompts = [
            encode_prompt(processor, model, it, template=cfg.prompt_template) for it in chunk
        ]
        outs = generate(
            model, processor, prompts, n=1, temperature=0.0, max_tokens=cfg.max_completion_length
        )
        for it, g in zip(chunk, outs):
            r = score(g[0].text, it, reward_cfg)
            acc, fmt, rew = acc + r.accuracy, fmt + r.format, rew + r.total
    n = max(len(pool), 1)
    return {"accuracy": acc / n, "format": fmt / n, "reward": rew / n}


# ================================================================ the loop


@dataclass
class TrainResult:
    out_dir: Path
    adapter_dir: Path | None
    steps_done: int
    interrupted: bool = False
    time_up: bool = False  # stopped by max_minutes (a finished run, adapter saved)
    last_metrics: dict[str, Any] = field(default_factory=dict)
    evals: list[dict[str, Any]] = field(default_factory=list)


class TrainingDiverged(RuntimeError):
    """Too many non-finite updates in a row; the last good checkpoint is kept."""


class _StopFlag:
    """First Ctrl-C: finish the current step, checkpoint, stop. Second: stop at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old = None

    def __enter__(self) -> _StopFlag:
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


class TrainView:
    """Rich live view: step, reward, accuracy, KL, tokens/s, ETA (silent when quiet)."""

    def __init__(self, total: int, start: int, quiet: bool = False) -> None:
        self.quiet = quiet
        if quiet:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]GRPO"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "reward {task.fields[reward]}  acc {task.fields[acc]}  kl {task.fields[kl]}"
            ),
            TextColumn("{task.fields[tps]} tok/s"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.task = self.progress.add_task(
            "train", total=total, completed=start, reward="-", acc="-", kl="-", tps="-"
        )

    def __enter__(self) -> TrainView:
        if not self.quiet:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if not self.quiet:
            self.progress.stop()

    def update(self, step: int, rec: dict) -> None:
        if self.quiet:
            return
        self.progress.update(
            self.task,
            completed=step,
            reward=f"{rec['reward']:.3f}",
            acc=f"{rec['accuracy']:.2f}",
            kl=f"{rec.get('kl', 0.0):.4f}",
            tps=f"{rec['rollout_tokens_per_s']:.0f}",
        )

    def warn(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"[yellow]{message}[/yellow]")

    def note(self, rec: dict) -> None:
        if self.quiet:
            return
        parts = [
            f"{k.split('/')[1]} acc {v:.3f}" for k, v in rec.items() if k.endswith("/accuracy")
        ]
        self.console.print(f"eval @ step {rec['step']}: " + ", ".join(parts))


def _jsonl_lines(path: Path) -> list[str]:
    """The complete JSON lines of an appended log; a line torn by a kill mid-append is dropped."""
    out = []
    for ln in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            json.loads(ln)
        except json.JSONDecodeError:
            continue
        out.append(ln)
    return out


def _finite(*xs: mx.array) -> bool:
    return all(math.isfinite(float(x.item())) for x in xs)


def _load(cfg: TrainConfig, model_path: str | None):
    from hallucue_mlx.models.load import load_model

    return load_model(model_path or cfg.model, dtype=cfg.dtype)


def train(
    config: TrainConfig,
    model_path: str | Path | None = None,
    out_dir: str | Path = "runs/train",
    resume: bool = False,
    *,
    quiet: bool = False,
    stop_after: int | None = None,
    model_and_processor: tuple[Any, Any] | None = None,
    items: list | None = None,
    eval_items: list | None = None,
    on_step: Any = None,
) -> TrainResult:
    """Run (or resume) GRPO; writes metrics.jsonl, rollouts.jsonl, checkpoints/ and adapter/ in out_dir.

    stop_after: stop (with a checkpoint) once this many steps are done in total, as if interrupted.
    model_and_processor: an already loaded base model (tests, benchmarks) instead of loading one.
    items / eval_items: the training / held-out items (the grid loads them, local copies included)
    instead of loading config.benchmark's splits; pass the same ones again on resume.
    on_step(step, record): called after each step and periodic evaluation (live views).
    """
    from hallucue_mlx.rewards import RewardConfig, score

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start_step, extra = 0, {}
    ckpt = latest_checkpoint(out) if resume else None
    if resume and ckpt is None:
        raise FileNotFoundError(
            f"--resume: no checkpoint in {out / CKPT_DIR}; start without --resume"
        )
    if ckpt is not None:
        saved = json.loads((ckpt / "state.json").read_text())["config"]
        # the saved run's settings win, except how long to run
        config = replace(TrainConfig(**saved), steps=config.steps)
    if config.prompt_template == "auto":
        from hallucue_mlx.prompts import resolve_template

        config = replace(
            config, prompt_template=resolve_template("auto", model_path or config.model)
        )
    config.validate()
    cfg = config
    atomic.write_json(out / "train_config.json", asdict(cfg), indent=2, end="")

    model, processor = (
        model_and_processor
        if model_and_processor is not None
        else _load(cfg, str(model_path) if model_path else None)
    )
    if not hasattr(model, "_hallucue_lora"):
        apply_lora(model, cfg.lora())
    opt = make_optimizer(cfg)
    if ckpt is not None:
        extra = _restore(ckpt, model, opt)
        start_step = int(extra["step"])

    reward_cfg = RewardConfig(
        accuracy_weight=cfg.accuracy_weight,
        format_weight=cfg.format_weight,
        function=cfg.reward_function,
    )
    lcfg = cfg.loss()
    bias = logit_bias(model, processor)
    tok = getattr(processor, "tokenizer", processor)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    if items is None:
        items = load_items(cfg.benchmark, cfg.train_split, cfg.n_train, cfg.seed)
    pool = corrupted_pool(
        items,
        cfg.corruption,
        cfg.corruption_ratio,
        cfg.seed,
    )
    if not pool:
        raise ValueError(f"no training items in {cfg.benchmark}/{cfg.train_split}")
    eval_pools: dict[str, list] = {}
    if cfg.eval_every and cfg.n_eval:
        held = (
            eval_items[: cfg.n_eval]
            if eval_items is not None
            else load_items(cfg.benchmark, cfg.eval_split, cfg.n_eval, cfg.seed)
        )
        eval_pools["clean"] = [(it, None) for it in held]
        if cfg.corruption != "none":
            eval_pools[cfg.corruption] = corrupted_pool(held, cfg.corruption, 1.0, cfg.seed)

    # metrics.jsonl / rollouts.jsonl: drop lines of steps redone after a resume
    metrics_path, rollouts_path = out / "metrics.jsonl", out / "rollouts.jsonl"
    for p in (metrics_path, rollouts_path):
        if p.exists():
            keep = [ln for ln in _jsonl_lines(p) if json.loads(ln).get("step", 0) <= start_step]
            atomic.write_text(p, "".join(ln + "\n" for ln in keep) if resume else "")

    loss_and_grad = nn.value_and_grad(
        model, lambda b: policy_loss(model, b, lcfg, bias, cfg.grad_checkpoint)
    )
    bad_in_row = int(extra.get("bad_in_row", 0))
    result = TrainResult(out, None, start_step)
    last_step_time: list[float] = []
    train_seconds = float(extra.get("train_seconds", 0.0))  # across resumes

    def run_eval(step: int) -> None:
        model.eval()
        rec: dict[str, Any] = {"step": step, "event": "eval"}
        for cond, ep in eval_pools.items():
            for k, v in greedy_eval(model, processor, ep, cfg, reward_cfg).items():
                rec[f"eval/{cond}/{k}"] = v
        result.evals.append(rec)
        with metrics_path.open("a") as f:
            f.write(json.dumps(rec) + "\n")

    view = TrainView(cfg.steps, start_step, quiet=quiet)
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    step = start_step
    with _StopFlag() as stop, view:
        if eval_pools and step == 0:
            run_eval(0)
            view.note(result.evals[-1])
        while step < end:
            t0 = time.perf_counter()
            mx.reset_peak_memory()
            mx.random.seed(cfg.seed * 7919 + step)  # dropout's global RNG, per step (resume-exact)
            # ---- rollout
            model.eval()
            idx = step_indices(step, cfg.prompts_per_step, len(pool), cfg.seed)
            chosen = [pool[i] for i in idx]
            prompts = [
                encode_prompt(processor, model, it, template=cfg.prompt_template)
                for it, _ in chosen
            ]
            groups = generate(
                model,
                processor,
                prompts,
                n=cfg.num_generations,
                temperature=cfg.temperature,
                max_tokens=cfg.max_completion_length,
                key=step_key(cfg.seed, step),
                top_p=cfg.top_p,
            )
            t_roll = time.perf_counter() - t0
            # ---- rewards and advantages
            episodes: list[Episode] = []
            prompt_ids = [p.input_ids.tolist() for p in prompts]
            for g, ((it, rec), comps) in enumerate(zip(chosen, groups)):
                for c in comps:
                    r = score(c.text, it, reward_cfg)
                    episodes.append(
                        Episode(
                            item_id=it.id,
                            group=g,
                            prompt_ids=prompt_ids[g],
                            completion_ids=c.ids,
                            logprobs=c.logprobs,
                            text=c.text,
                            truncated=c.truncated,
                            reward=r.total,
                            accuracy=r.accuracy,
                            format=r.format,
                            grader_error=r.grade.grader_error is not None,
                            corruption=(
                                rec.corruption if rec is not None and rec.applied else "none"
                            ),
                        )
                    )
            adv, rmetrics = group_advantages(
                np.array([e.reward for e in episodes]), cfg.num_generations, cfg.scale_rewards
            )
            for e, a in zip(episodes, adv):
                e.advantage = float(a)
            used = updated_groups(
                [e.reward for e in episodes], cfg.num_generations, cfg.drop_zero_std_groups
            )
            used_set = set(used)
            kept = [e for e in episodes if e.group in used_set]
            batch = make_batch(
                [prompts[g] for g in used],
                [e.completion_ids for e in kept],
                [e.logprobs for e in kept],
                np.array([e.advantage for e in kept], np.float32),
                pad_id,
            )
            if cfg.beta > 0:
                batch.ref_logps = reference_logprobs(model, batch, bias, cfg.temperature)
            # ---- updates
            model.train()
            t1 = time.perf_counter()
            step_metrics: dict[str, float] = {}
            skipped = 0
            for _ in range(cfg.num_iterations):
                (loss, lm_), grads = loss_and_grad(batch)
                if cfg.max_grad_norm > 0:
                    grads, gnorm = optim.clip_grad_norm(grads, cfg.max_grad_norm)
                else:
                    gnorm = optim.clip_grad_norm(grads, float("inf"))[1]
                mx.eval(loss, gnorm, lm_, grads)
                if not _finite(loss, gnorm):
                    skipped += 1
                    bad_in_row += 1
                    if bad_in_row >= cfg.max_bad_steps:
                        last = latest_checkpoint(out)
                        raise TrainingDiverged(
                            f"{bad_in_row} non-finite updates in a row at step {step + 1}; stopped. "
                            f"Last good checkpoint: {last or 'none'}. Lower learning_rate or check the data."
                        )
                    continue
                bad_in_row = 0
                lr = (
                    float(opt.learning_rate.item())
                    if isinstance(opt.learning_rate, mx.array)
                    else float(opt.learning_rate)
                )
                opt.update(model, grads)
                mx.eval(model.trainable_parameters(), opt.state)
                # metrics of the first update describe the rollout batch (as TRL logs them)
                if not step_metrics:
                    step_metrics = {
                        "loss": float(loss.item()),
                        "grad_norm": float(gnorm.item()),
                        "learning_rate": lr,
                    }
                    step_metrics.update({k: float(v.item()) for k, v in lm_.items()})
            t_upd = time.perf_counter() - t1
            step += 1
            # ---- log
            lengths = np.array([len(e.completion_ids) for e in episodes])
            n_tok = int(lengths.sum())
            rec = {
                "step": step,
                **rmetrics,
                "reward/accuracy/mean": float(np.mean([e.accuracy for e in episodes])),
                "reward/format/mean": float(np.mean([e.format for e in episodes])),
                "accuracy": float(np.mean([e.accuracy for e in episodes])),
                "format": float(np.mean([e.format for e in episodes])),
                **step_metrics,
                "completions/mean_length": float(lengths.mean()),
                "completions/min_length": int(lengths.min()),
                "completions/max_length": int(lengths.max()),
                "completions/clipped_ratio": float(np.mean([e.truncated for e in episodes])),
                "corrupted_fraction": float(np.mean([e.corruption != "none" for e in episodes])),
                "grader_errors": int(sum(e.grader_error for e in episodes)),
                "skipped_updates": skipped,
                "groups_updated": len(used),
                "rollout_tokens": n_tok,
                "rollout_tokens_per_s": n_tok / max(t_roll, 1e-9),
                "rollout_time": t_roll,
                "update_time": t_upd,
                "step_time": time.perf_counter() - t0,
                "peak_memory_gb": mx.get_peak_memory() / 1e9,
            }
            if skipped:
                rec["warning"] = f"{skipped} non-finite update(s) skipped"
                view.warn(
                    f"step {step}: {rec['warning']} (non-finite loss or gradient; "
                    f"{bad_in_row} in a row, the run stops at {cfg.max_bad_steps})"
                )
            with metrics_path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            with rollouts_path.open("a") as f:
                for e in episodes:
                    d = asdict(e)
                    d.pop("prompt_ids")
                    d.pop("logprobs")
                    f.write(json.dumps({"step": step, **d}) + "\n")
            result.last_metrics = rec
            result.steps_done = step
            last_step_time.append(rec["step_time"])
            train_seconds += rec["step_time"]
            view.update(step, rec)
            if on_step is not None:
                on_step(step, rec)
            result.time_up = cfg.max_minutes is not None and train_seconds >= 60 * cfg.max_minutes
            last = step == cfg.steps or result.time_up
            if eval_pools and cfg.eval_every and (step % cfg.eval_every == 0 or last):
                run_eval(step)
                view.note(result.evals[-1])
            stopping = stop.requested or step == end or result.time_up
            if step % cfg.save_every == 0 or stopping:
                state = {"bad_in_row": bad_in_row, "train_seconds": train_seconds}
                save_checkpoint(out, step, model, opt, cfg, state)
            if result.time_up:
                break
            if stop.requested:
                result.interrupted = True
                break
    if result.steps_done >= cfg.steps or result.time_up:
        result.adapter_dir = save_adapter(model, out / "adapter")
    elif stop_after is not None and step >= stop_after:
        result.interrupted = True
    return result


def resume_hint(out_dir: str | Path) -> str:
    return f"hallucue-mlx train --out {out_dir} --resume"


def load_config_file(path: str | Path) -> dict[str, Any]:
    """TrainConfig fields from a YAML or JSON file (a flat mapping)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"training config {p} not found")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"training config {p} must be a mapping of TrainConfig fields")
    return data
