"""LoRA GRPO training with corruption-aware rollouts: the loop, checkpoints and resume.

Per step: take the next `prompts_per_step` training items (seeded order; each item's corruption was
drawn once, up front, so rollout and loss see the same corrupted input), encode each prompt once,
decode `num_generations` completions per prompt as one batch, score them, normalise rewards per
group, then `num_iterations` AdamW updates of the LoRA weights on the clipped surrogate (+ beta *
k3 KL to the LoRA-off reference). Everything random derives from `seed` and the step number, so a
resumed run continues exactly as if it had never stopped.

The loop reads as its phases: resolve_config and setup (model, LoRA, optimizer, restore, data
pools), then per step (train_step) collect -> select_groups -> update -> step_record / log_step,
then evaluate_now and save_checkpoint (_loop). The reward, the in-training evaluation and the step
order are passed in (defaults: rewards.score, evaluate.greedy_eval, step_indices).

Data parallelism (launched by `mlx.launch -n N`; hallucue_mlx.distributed): each rank rolls out
a contiguous share of the step's prompts (whole groups), with the sampling noise those rows get in
the whole batch's draw; the ranks exchange their scored episodes, so advantages, the groups kept
and every logged metric are computed from the whole step as one process computes them. Each share's
loss is normalised by the whole batch's counts and the gradients are summed over ranks, so every
rank applies the same update. Rank 0 alone reads checkpoints (it sends their state to the others)
and writes every file; it alone runs the held-out evaluation while the others wait.

Simplifications against textbook GRPO, on purpose: the whole rollout batch in one loss (dapo and
bnpo coincide); the reference is the base model with LoRA off, not a frozen copy.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_map, tree_unflatten

from hallucue_mlx import atomic, runfolder
from hallucue_mlx.backend import backend_name
from hallucue_mlx.config import ConfigError, TrainConfig, image_sizes
from hallucue_mlx.corrupt import Corruption, apply
from hallucue_mlx.data.bench import load_benchmark
from hallucue_mlx.data.item import Item
from hallucue_mlx.distributed import World, current
from hallucue_mlx.evaluate import (
    Decoding,
    UnchangedCorruptionWarning,
    greedy_eval,
    mean_scores,
    unchanged_warning,
)
from hallucue_mlx.forward import PromptInputs, encode_prompt, logit_bias
from hallucue_mlx.grpo import (
    BatchTotals,
    LossConfig,
    PolicyBatch,
    group_advantages,
    loss_metric_names,
    make_batch,
    micro_batches,
    mini_batches,
    policy_loss,
    reference_logprobs,
)
from hallucue_mlx.models.load import load_model
from hallucue_mlx.models.lora import (
    LoraConfig,
    apply_lora,
    load_adapter_weights,
    save_adapter,
)
from hallucue_mlx.plan import auto_micro_batch
from hallucue_mlx.prompts import resolve_template
from hallucue_mlx.rewards import Reward, RewardConfig, check_golds, reset_random_reward, score
from hallucue_mlx.rollout import Completion, Episode, generate
from hallucue_mlx.runfolder import ADAPTER_DIR, CKPT_DIR, LATEST, METRICS_FILE, latest_checkpoint
from hallucue_mlx.trace import trace
from hallucue_mlx.views import TrainView

# ================================================================ configuration


def lora_config(cfg: TrainConfig) -> LoraConfig:
    """The LoRA adapter a training run attaches."""
    return LoraConfig(
        rank=cfg.lora_rank,
        alpha=cfg.lora_alpha,
        dropout=cfg.lora_dropout,
        target_modules=tuple(cfg.lora_targets),
        num_layers=cfg.lora_layers,
        train_vision=cfg.lora_vision,
        seed=cfg.seed,
    )


def loss_config(cfg: TrainConfig) -> LossConfig:
    """The GRPO objective's settings of a training run."""
    return LossConfig(
        loss_type=cfg.loss_type,
        epsilon=cfg.epsilon,
        epsilon_high=cfg.epsilon_high,
        beta=cfg.beta,
        importance_sampling_level=cfg.importance_sampling_level,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
    )


# ================================================================ data


def load_items(benchmark: str, split: str, n: int | None, seed: int) -> list:
    """Items of a benchmark split, through the one benchmark entry point."""
    items = load_benchmark(benchmark, split, n=n, seed=seed)
    check_golds(items)
    return items


def corrupted_pool(items: list, name: str, ratio: float, seed: int) -> list[tuple[Any, Any]]:
    """Each item's corruption drawn once for the whole run: [(item as trained on, record)]."""
    if name == "none":
        return [(it, None) for it in items]
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
    total = cfg.steps * cfg.num_iterations * cfg.mini_batches
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
    atomic.write_with(tmpd / "optimizer.safetensors", lambda p: mx.save_safetensors(str(p), state))
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


def _restore(ckpt: Path, model: nn.Module, opt: optim.Optimizer) -> dict:
    try:
        load_adapter_weights(model, ckpt)
        state = mx.load(str(ckpt / "optimizer.safetensors"))
        opt.state = tree_unflatten(list(state.items()))
        mx.eval(opt.state)
        saved = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RuntimeError) as e:  # damaged files (a copy cut short, a disk)
        raise runfolder.GridError(
            f"the checkpoint {ckpt} cannot be restored ({e}); delete it and point "
            f"{CKPT_DIR}/{LATEST} at the step folder before it, or train into a new --out"
        ) from None
    return saved


# ================================================================ results and views


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


def _finite_tree(tree: Any) -> bool:
    """Every entry of every array in `tree` is finite (one reduction, one sync)."""
    leaves = [v for _, v in tree_flatten(tree)]
    return not leaves or bool(mx.all(mx.stack([mx.all(mx.isfinite(v)) for v in leaves])).item())


# ================================================================ the loop in phases

RewardFn = Callable[[str, Item], Reward]
# (model, processor, held-out items, conditions) -> {condition: {"accuracy", "format", "reward"}}
EvaluateFn = Callable[[nn.Module, Any, list[Item], list[str]], dict[str, dict[str, float]]]
# (step, prompts per step, pool size, seed) -> pool indices of the step's prompts
IndicesFn = Callable[[int, int, int, int], list[int]]
OnStep = Callable[[int, dict[str, Any]], None]  # (step, its record): live views
EVAL_BATCH = 16  # prompts per batch of the in-training evaluation


def default_reward_fn(cfg: TrainConfig) -> RewardFn:
    """rewards.score with the run's weights (or its user reward function)."""
    reward_cfg = RewardConfig(
        accuracy_weight=cfg.accuracy_weight,
        format_weight=cfg.format_weight,
        function=cfg.reward_function,
    )
    return partial(score, cfg=reward_cfg)


def default_evaluate_fn(cfg: TrainConfig, reward_fn: RewardFn) -> EvaluateFn:
    """Greedy evaluation.greedy_eval at the run's template and completion length, as means."""
    decoding = Decoding(
        template=cfg.prompt_template,
        max_tokens=cfg.max_completion_length,
        batch_size=EVAL_BATCH,
        seed=cfg.seed,
    )

    def run(model: nn.Module, processor: Any, items: list[Item], conditions: list[str]):
        by_cond = greedy_eval(model, processor, items, conditions, decoding, reward_fn=reward_fn)
        return {cond: mean_scores(recs) for cond, recs in by_cond.items()}

    return run


@dataclass
class TrainState:
    """What changes from step to step and survives a resume (with the weights and optimizer)."""

    step: int = 0
    bad_in_row: int = 0  # non-finite updates in a row
    train_seconds: float = 0.0  # across resumes (max_minutes)


@dataclass
class Run:
    """What the steps share: settings, model, optimizer, data, the passed-in functions, files."""

    cfg: TrainConfig
    out: Path
    model: nn.Module
    processor: Any
    opt: optim.Optimizer
    pool: list[tuple[Item, Any]]  # (item as trained on, corruption record or None)
    eval_items: list[Item] | None  # held-out items; None: no in-training evaluation
    reward_fn: RewardFn
    evaluate_fn: EvaluateFn
    indices_fn: IndicesFn
    bias: mx.array
    pad_id: int
    loss_and_grad: Callable
    world: World = field(default_factory=World)  # one process unless launched with several

    @property
    def metrics_path(self) -> Path:
        return self.out / METRICS_FILE

    @property
    def rollouts_path(self) -> Path:
        return self.out / "rollouts.jsonl"

    @property
    def eval_conditions(self) -> list[str]:
        return ["none"] + ([self.cfg.corruption] if self.cfg.corruption != "none" else [])


@dataclass
class Rollout:
    """A step's sampled groups: this process's encoded prompts (its groups start at first_group),
    the scored episodes of the whole step (other ranks' without prompt ids and log-probs), and
    the whole step's items as trained on, one per group."""

    prompts: list[PromptInputs]
    episodes: list[Episode]
    seconds: float
    first_group: int = 0
    items: list[Item] = field(default_factory=list)


@dataclass
class StepBatch:
    """The groups an update uses (of the whole step), this process's share of them as a padded
    batch (None: none of them are this rank's), and the step's reward statistics."""

    batch: PolicyBatch | None
    groups: list[int]
    reward_metrics: dict[str, float]


@dataclass
class UpdateStats:
    metrics: dict[str, float]  # of the first applied update (as TRL logs them); empty if none
    skipped: int  # non-finite updates skipped
    seconds: float


class ResumeMismatch(ValueError):
    """--resume with settings other than the saved run's; the message names each change."""


# Settings a resumed run may change: how long it runs, and how the loss splits its batch (which
# changes the numbers by float summation order only).
RESUMABLE_CHANGES = ("steps", "micro_batch_size_per_device_for_update")


def check_resume_settings(saved: dict[str, Any], config: TrainConfig, out: Path) -> None:
    """--resume continues the saved run: any changed setting but `steps` is an error, naming
    each changed key (old -> new); a resumed run never trains silently with other settings."""
    # a key the checkpoint predates counts as its default; tuples -> lists, as saved
    was = json.loads(json.dumps(asdict(TrainConfig(**saved))))
    now = json.loads(json.dumps(asdict(config)))
    changed = [
        f"{k}: {was.get(k)!r} -> {now.get(k)!r}"
        for k in sorted(set(was) | set(now))
        if k not in RESUMABLE_CHANGES and was.get(k) != now.get(k)
    ]
    if changed:
        raise ResumeMismatch(
            f"--resume: {out} was trained with other settings ({len(changed)} changed: "
            f"{'; '.join(changed)}); resume with the saved settings (only --steps may change), "
            "or train into a new --out"
        )


def resolve_config(
    config: TrainConfig, saved_state: dict | None, model_path: str | Path | None, out: Path
) -> TrainConfig:
    """The run's settings: a resumed run's saved ones (its checkpoint's state.json; all but
    steps), the template resolved."""
    if config.prompt_template == "auto":
        template = resolve_template("auto", model_path or config.model)
        config = replace(config, prompt_template=template)
    if saved_state is not None:
        saved = saved_state["config"]
        check_resume_settings(saved, config, out)
        # the saved run's settings (equal but for how long to run), with the new steps
        config = replace(
            TrainConfig(**saved),
            steps=config.steps,
            micro_batch_size_per_device_for_update=config.micro_batch_size_per_device_for_update,
        )
    config.validate()
    return config


def resolve_micro_batch(
    cfg: TrainConfig, model_path: str | Path | None, world: World
) -> TrainConfig:
    """train.micro_batch_size_per_device_for_update = 0: `plan`'s choice for this machine, the
    largest micro-batch whose predicted step peak fits its memory (one process's share of the
    step under data parallelism)."""
    if cfg.micro_batch_size_per_device_for_update > 0:
        return cfg
    size = auto_micro_batch(
        cfg, str(model_path or cfg.model), cfg.prompts_per_step // world.size, backend_name()
    )
    return replace(cfg, micro_batch_size_per_device_for_update=size)


def check_world(cfg: TrainConfig, world: World) -> None:
    """Data parallelism splits a step's prompts evenly over the ranks, whole groups each."""
    try:
        world.share(cfg.prompts_per_step, "train.prompts_per_step")
    except ValueError as e:
        raise ConfigError(str(e), "train.prompts_per_step") from None


def resume_point(out: Path, resume: bool, world: World) -> tuple[Path | None, dict | None]:
    """The checkpoint a resumed run continues from (read by rank 0 only) and its state.json,
    which rank 0 sends to the other ranks: they need no access to the folder."""

    def read() -> dict | None:
        if not resume:
            return None
        ckpt = latest_checkpoint(out)
        if ckpt is None:
            raise FileNotFoundError(
                f"--resume: no checkpoint in {out / CKPT_DIR}; start without --resume"
            )
        return {"dir": str(ckpt), "state": runfolder.read_checkpoint_state(ckpt)}

    got = world.on_main(read, "reading the checkpoint")
    if got is None:
        return None, None
    return (Path(got["dir"]) if world.is_main else None), got["state"]


def share_state(world: World, model: nn.Module, opt: optim.Optimizer) -> None:
    """Rank 0's LoRA weights and optimizer state (a resumed run's: from its checkpoint) on every
    rank, bit for bit, so all ranks start equal and stay equal (they apply the same updates)."""
    if not world.distributed:
        return
    params = world.broadcast_arrays(
        dict(tree_flatten(model.trainable_parameters())), "rank 0's LoRA weights"
    )
    model.update(tree_unflatten(list(params.items())))
    state = world.broadcast_arrays(dict(tree_flatten(opt.state)), "rank 0's optimizer state")
    opt.state = tree_unflatten(list(state.items()))
    mx.eval(model.trainable_parameters(), opt.state)


def _held_out(cfg: TrainConfig, eval_items: list[Item] | None) -> list[Item] | None:
    if not (cfg.eval_every and cfg.n_eval):
        return None
    if eval_items is not None:  # [] from the grid: the training data has no validation split
        return eval_items[: cfg.n_eval] or None
    return load_items(cfg.benchmark, cfg.eval_split, cfg.n_eval, cfg.seed)


def setup(
    cfg: TrainConfig,
    out: Path,
    ckpt: Path | None,
    model_and_processor: tuple[Any, Any],
    items: list[Item] | None,
    eval_items: list[Item] | None,
    reward_fn: RewardFn | None,
    evaluate_fn: EvaluateFn | None,
    indices_fn: IndicesFn,
    world: World | None = None,
    saved_state: dict | None = None,
) -> tuple[Run, TrainState]:
    """LoRA on the model, the optimizer (restored from ckpt), the data pools; the start state.
    Under data parallelism only rank 0 has ckpt; saved_state (its state.json) is every rank's."""
    world = world or World()
    model, processor = model_and_processor
    if not hasattr(model, "_hallucue_lora"):
        apply_lora(model, lora_config(cfg))
    opt = make_optimizer(cfg)
    saved = _restore(ckpt, model, opt) if ckpt is not None else (saved_state or {})
    share_state(world, model, opt)
    state = TrainState(
        step=int(saved.get("step", 0)),
        bad_in_row=int(saved.get("bad_in_row", 0)),
        train_seconds=float(saved.get("train_seconds", 0.0)),
    )
    reward_fn = reward_fn or default_reward_fn(cfg)
    reset_random_reward(cfg.seed)  # rewards.random_reward's coins: this training's, from its seed
    lcfg = loss_config(cfg)
    bias = logit_bias(model, processor)
    tok = getattr(processor, "tokenizer", processor)
    if items is None:
        items = load_items(cfg.benchmark, cfg.train_split, cfg.n_train, cfg.seed)
    pool = corrupted_pool(items, cfg.corruption, cfg.corruption_ratio, cfg.seed)
    if not pool:
        raise ValueError(f"no training items in {cfg.benchmark}/{cfg.train_split}")
    loss_and_grad = nn.value_and_grad(
        model, lambda b: policy_loss(model, b, lcfg, bias, cfg.grad_checkpoint)
    )
    run = Run(
        cfg=cfg,
        out=out,
        model=model,
        processor=processor,
        opt=opt,
        pool=pool,
        eval_items=_held_out(cfg, eval_items),
        reward_fn=reward_fn,
        evaluate_fn=evaluate_fn or default_evaluate_fn(cfg, reward_fn),
        indices_fn=indices_fn,
        bias=bias,
        pad_id=tok.pad_token_id if tok.pad_token_id is not None else 0,
        loss_and_grad=loss_and_grad,
        world=world,
    )
    return run, state


def trim_logs(run: Run, start_step: int, resume: bool) -> None:
    """metrics.jsonl / rollouts.jsonl: drop the lines of steps a resumed run redoes (all, fresh)."""
    for p in (run.metrics_path, run.rollouts_path):
        if p.exists():
            keep = [ln for ln in _jsonl_lines(p) if json.loads(ln).get("step", 0) <= start_step]
            atomic.write_text(p, "".join(ln + "\n" for ln in keep) if resume else "")


def _episodes(
    chosen: list[tuple[Item, Any]],
    prompts: list[PromptInputs],
    groups: list[list[Completion]],
    reward_fn: RewardFn,
    first_group: int = 0,
) -> list[Episode]:
    """One scored episode per completion, group by group (numbered from first_group)."""
    episodes: list[Episode] = []
    prompt_ids = [p.input_ids.tolist() for p in prompts]
    for g, ((it, rec), comps) in enumerate(zip(chosen, groups), start=first_group):
        corruption = rec.corruption if rec is not None and rec.applied else "none"
        for c in comps:
            r = reward_fn(c.text, it)
            episodes.append(
                Episode(
                    item_id=it.id,
                    group=g,
                    prompt_ids=prompt_ids[g - first_group],
                    completion_ids=c.ids,
                    logprobs=c.logprobs,
                    text=c.text,
                    truncated=c.truncated,
                    reward=r.total,
                    accuracy=r.accuracy,
                    format=r.format,
                    grader_error=r.grade.grader_error is not None,
                    corruption=corruption,
                )
            )
    return episodes


def collect(run: Run, step: int) -> Rollout:
    """The step's prompts, num_generations sampled completions each, and their rewards. Under
    data parallelism this rank samples its share of the prompts and gets the others' episodes."""
    cfg, world, t0 = run.cfg, run.world, time.perf_counter()
    run.model.eval()
    idx = run.indices_fn(step, cfg.prompts_per_step, len(run.pool), cfg.seed)
    mine = world.share(len(idx), "train.prompts_per_step")
    chosen = [run.pool[i] for i in idx[mine.start : mine.stop]]
    prompts = [
        encode_prompt(run.processor, run.model, it, template=cfg.prompt_template)
        for it, _ in chosen
    ]
    n = cfg.num_generations
    groups = generate(
        run.model,
        run.processor,
        prompts,
        n=n,
        temperature=cfg.temperature,
        max_tokens=cfg.max_completion_length,
        key=step_key(cfg.seed, step),
        top_p=cfg.top_p,
        rows=(mine.start * n, len(idx) * n) if world.distributed else None,
    )
    seconds = time.perf_counter() - t0
    episodes = _episodes(chosen, prompts, groups, run.reward_fn, mine.start)
    if world.distributed:
        episodes, seconds = _gather_episodes(world, episodes, seconds, step)
    return Rollout(prompts, episodes, seconds, mine.start, [run.pool[i][0] for i in idx])


def _gather_episodes(
    world: World, episodes: list[Episode], seconds: float, step: int
) -> tuple[list[Episode], float]:
    """Every rank's episodes in group order (the others' without prompt ids and behaviour
    log-probs: only a rank's own feed its loss) and the slowest rank's rollout time."""
    light = []
    for e in episodes:
        d = asdict(e)
        d.pop("prompt_ids")
        d.pop("logprobs")
        light.append(d)
    parts = world.gather_json(
        {"episodes": light, "seconds": seconds}, f"step {step + 1}'s rollouts"
    )
    out: list[Episode] = []
    for rank, part in enumerate(parts):
        if rank == world.rank:
            out.extend(episodes)
        else:
            out.extend(Episode(**d, prompt_ids=[], logprobs=[]) for d in part["episodes"])
    return out, max(p["seconds"] for p in parts)


def select_groups(run: Run, rollout: Rollout) -> StepBatch:
    """Group-normalised advantages, the groups the update uses and their batch."""
    cfg, episodes = run.cfg, rollout.episodes
    rewards = [e.reward for e in episodes]
    adv, reward_metrics = group_advantages(
        np.array(rewards), cfg.num_generations, cfg.scale_rewards
    )
    for e, a in zip(episodes, adv):
        e.advantage = float(a)
    used = updated_groups(rewards, cfg.num_generations, cfg.drop_zero_std_groups)
    first, n_mine = rollout.first_group, len(rollout.prompts)
    mine = [g for g in used if first <= g < first + n_mine]  # all of them in one process
    if not mine:
        return StepBatch(None, used, reward_metrics)
    mine_set = set(mine)
    kept = [e for e in episodes if e.group in mine_set]
    batch = make_batch(
        [rollout.prompts[g - first] for g in mine],
        [e.completion_ids for e in kept],
        [e.logprobs for e in kept],
        np.array([e.advantage for e in kept], np.float32),
        run.pad_id,
    )
    if run.world.distributed:  # a share: normalise by the whole update batch's counts
        used_set = set(used)
        tokens = sum(len(e.completion_ids) for e in episodes if e.group in used_set)
        batch.totals = BatchTotals(tokens, len(used) * cfg.num_generations)
    return StepBatch(batch, used, reward_metrics)


def _learning_rate(opt: optim.Optimizer) -> float:
    lr = opt.learning_rate
    return float(lr.item()) if isinstance(lr, mx.array) else float(lr)


def _micro_batch_loss(run: Run, share: PolicyBatch) -> tuple[tuple[mx.array, dict], Any]:
    """One micro-batch's (loss, metrics), gradients: its reference log-probs first (beta > 0;
    evaluated, so the reference forward's arrays are gone before the loss runs), then the loss
    forward and backward."""
    if run.cfg.beta > 0 and share.ref_logps is None:
        share.ref_logps = reference_logprobs(run.model, share, run.bias, run.cfg.temperature)
    return run.loss_and_grad(share)


def batch_gradients(run: Run, shares: list[PolicyBatch]) -> tuple[tuple[mx.array, dict], Any]:
    """(loss, metrics), gradients of a batch given as micro-batches that add up to it
    (`grpo.micro_batches`), summed in order. Each micro-batch is evaluated before the next is
    built, so only one micro-batch's activations are alive at once."""
    total = None
    for share in shares:
        out = _micro_batch_loss(run, share)
        total = out if total is None else tree_map(lambda a, b: a + b, total, out)
        if len(shares) > 1:
            mx.eval(total)
    return total


def gradients(
    run: Run, shares: list[PolicyBatch] | None, step: int
) -> tuple[tuple[mx.array, dict[str, mx.array]], Any]:
    """(loss, metrics), gradients of this process's batch (its shares, see loss_shares); under
    data parallelism summed over the ranks (each share is normalised by the whole batch's
    counts, so the sums are the whole batch's, and every rank gets the same numbers). A rank
    with no group to update adds zeros."""
    world = run.world
    if shares:
        (loss, metrics), grads = batch_gradients(run, shares)
    else:
        grads = tree_map(mx.zeros_like, run.model.trainable_parameters())
        loss = mx.array(0.0)
        metrics = {k: mx.array(0.0) for k in loss_metric_names(run.cfg.beta > 0)}
    if not world.distributed:
        return (loss, metrics), grads
    names, flat = sorted(metrics), tree_flatten(grads)
    summed = world.sum_arrays(
        [loss, *(metrics[k] for k in names), *(g for _, g in flat)],
        f"step {step + 1}'s gradients",
    )
    metrics = dict(zip(names, summed[1 : 1 + len(names)]))
    grads = tree_unflatten([(k, g) for (k, _), g in zip(flat, summed[1 + len(names) :])])
    return (summed[0], metrics), grads


def loss_shares(run: Run, batch: PolicyBatch | None) -> list[PolicyBatch] | None:
    """The micro-batches the loss phase evaluates one after another
    (train.micro_batch_size_per_device_for_update completions each; the same on every backend)."""
    if batch is None:
        return None
    return micro_batches(batch, run.cfg.micro_batch_size_per_device_for_update)


def update(run: Run, state: TrainState, step_batch: StepBatch) -> UpdateStats:
    """The reference log-probs (beta > 0, once) and num_iterations AdamW updates; a non-finite
    loss or gradient norm skips its update, and max_bad_steps of them in a row stop the run
    (TrainingDiverged)."""
    cfg, model, opt = run.cfg, run.model, run.opt
    model.train()
    t0 = time.perf_counter()
    metrics: dict[str, float] = {}
    skipped = 0
    # train.mini_batches > 1 (EasyR1's batching): one update per mini-batch of whole groups
    parts = [loss_shares(run, b) for b in mini_batches(step_batch.batch, cfg.mini_batches)]
    for shares in (s for _ in range(cfg.num_iterations) for s in parts):
        (loss, loss_metrics), grads = gradients(run, shares, state.step)
        if cfg.max_grad_norm > 0:
            grads, gnorm = optim.clip_grad_norm(grads, cfg.max_grad_norm)
        else:
            gnorm = optim.clip_grad_norm(grads, float("inf"))[1]
        mx.eval(loss, gnorm, loss_metrics, grads)
        if not _finite(loss, gnorm):
            skipped += 1
            state.bad_in_row += 1
            if state.bad_in_row >= cfg.max_bad_steps:
                last = latest_checkpoint(run.out)
                raise TrainingDiverged(
                    f"{state.bad_in_row} non-finite updates in a row at step {state.step + 1}; "
                    f"stopped. Last good checkpoint: {last or 'none'}. Lower learning_rate or "
                    "check the data."
                )
            continue
        lr = _learning_rate(opt)
        kept = (model.trainable_parameters(), tree_map(lambda x: x, opt.state))
        opt.update(model, grads)
        mx.eval(model.trainable_parameters(), opt.state)
        if not _finite_tree(model.trainable_parameters()):
            # a finite gradient whose update overflows the weights (a huge learning rate or
            # scale): undone, and counted as a non-finite update, so no NaN adapter is saved
            model.update(kept[0])
            opt.state = kept[1]
            skipped += 1
            state.bad_in_row += 1
            if state.bad_in_row >= cfg.max_bad_steps:
                raise TrainingDiverged(
                    f"step {state.step + 1} made the LoRA weights non-finite "
                    f"({state.bad_in_row} non-finite updates in a row); stopped. Last good "
                    f"checkpoint: {latest_checkpoint(run.out) or 'none'}. Lower learning_rate "
                    "or lora_alpha."
                )
            continue
        state.bad_in_row = 0
        # metrics of the first update describe the rollout batch (as TRL logs them)
        if not metrics:
            metrics = {"loss": float(loss.item()), "grad_norm": float(gnorm.item())}
            metrics["learning_rate"] = lr
            metrics.update({k: float(v.item()) for k, v in loss_metrics.items()})
    return UpdateStats(metrics, skipped, time.perf_counter() - t0)


def trace_metrics(episodes: list[Episode], items: list[Item]) -> dict[str, float]:
    """How a step's completions (all of them, before any group filter) read and computed, from
    their think text (trace.trace against the item's stored facts): trace/read_accuracy, the
    share that state the visual fact right among those that state it; trace/compute_accuracy,
    the share with every addition right among those whose item asks for additions. A key is
    left out when no completion of the step has a value (real benchmarks store no facts)."""
    if not items:
        return {}
    reads: list[bool] = []
    computes: list[bool] = []
    for e in episodes:
        t = trace(e.text, items[e.group])
        if t.read is not None:
            reads.append(t.read)
        if t.computed is not None:
            computes.append(t.computed)
    out = {}
    if reads:
        out["trace/read_accuracy"] = sum(reads) / len(reads)
    if computes:
        out["trace/compute_accuracy"] = sum(computes) / len(computes)
    return out


def step_record(
    step: int, rollout: Rollout, step_batch: StepBatch, upd: UpdateStats, t0: float
) -> dict[str, Any]:
    """The step's line of metrics.jsonl (TRL's names where TRL has one)."""
    episodes = rollout.episodes
    lengths = np.array([len(e.completion_ids) for e in episodes])
    n_tok = int(lengths.sum())
    accuracy = float(np.mean([e.accuracy for e in episodes]))
    fmt = float(np.mean([e.format for e in episodes]))
    rec = {
        "step": step,
        **step_batch.reward_metrics,
        "reward/accuracy/mean": accuracy,
        "reward/format/mean": fmt,
        "accuracy": accuracy,
        "format": fmt,
        **trace_metrics(episodes, rollout.items),
        **upd.metrics,
        "completions/mean_length": float(lengths.mean()),
        "completions/min_length": int(lengths.min()),
        "completions/max_length": int(lengths.max()),
        "completions/clipped_ratio": float(np.mean([e.truncated for e in episodes])),
        "corrupted_fraction": float(np.mean([e.corruption != "none" for e in episodes])),
        "grader_errors": int(sum(e.grader_error for e in episodes)),
        "skipped_updates": upd.skipped,
        "groups_updated": len(step_batch.groups),
        "rollout_tokens": n_tok,
        "rollout_tokens_per_s": n_tok / max(rollout.seconds, 1e-9),
        "rollout_time": rollout.seconds,
        "update_time": upd.seconds,
        "step_time": time.perf_counter() - t0,
        "peak_memory_gb": mx.get_peak_memory() / 1e9,
    }
    if upd.skipped:
        rec["warning"] = f"{upd.skipped} non-finite update(s) skipped"
    return rec


def log_step(run: Run, rec: dict[str, Any], episodes: list[Episode]) -> None:
    """Append the step's record to metrics.jsonl and its episodes to rollouts.jsonl."""
    with run.metrics_path.open("a") as f:
        f.write(json.dumps(rec) + "\n")
    with run.rollouts_path.open("a") as f:
        for e in episodes:
            d = asdict(e)
            d.pop("prompt_ids")
            d.pop("logprobs")
            f.write(json.dumps({"step": rec["step"], **d}) + "\n")


def evaluate_now(run: Run, step: int) -> dict[str, Any]:
    """The held-out evaluation at a step, appended to metrics.jsonl: eval/<condition>/<metric>."""
    run.model.eval()
    rec: dict[str, Any] = {"step": step, "event": "eval"}
    scores = run.evaluate_fn(run.model, run.processor, run.eval_items, run.eval_conditions)
    for cond, values in scores.items():
        for k, v in values.items():
            rec[f"eval/{cond}/{k}"] = v
    with run.metrics_path.open("a") as f:
        f.write(json.dumps(rec) + "\n")
    return rec


def train_step(run: Run, state: TrainState, stop: _StopFlag | None = None) -> dict[str, Any]:
    """One step: collect, select groups, update, log. Returns the step's record.

    Under data parallelism the ranks also agree on the step's time (the slowest rank's, so
    max_minutes ends every rank at the same step) and on a stop request seen by any rank."""
    t0 = time.perf_counter()
    mx.reset_peak_memory()
    mx.random.seed(
        run.cfg.seed * 7919 + state.step
    )  # dropout's global RNG, per step (resume-exact)
    rollout = collect(run, state.step)
    step_batch = select_groups(run, rollout)
    upd = update(run, state, step_batch)
    state.step += 1
    rec = step_record(state.step, rollout, step_batch, upd, t0)
    if run.world.distributed:
        asked = stop is not None and stop.requested
        rec["step_time"], stopping = run.world.max_values(
            [rec["step_time"], float(asked)], f"the end of step {state.step}"
        )
        if stop is not None:
            stop.requested = bool(stopping)
    if run.world.is_main:
        log_step(run, rec, rollout.episodes)
    state.train_seconds += rec["step_time"]
    return rec


def _loop(
    run: Run, state: TrainState, end: int, view: TrainView, on_step: OnStep | None
) -> TrainResult:
    """Steps until `end`, max_minutes or Ctrl-C; periodic evaluation and checkpoints."""
    cfg = run.cfg
    result = TrainResult(run.out, None, state.step)

    def evaluate_at(step: int) -> None:
        if run.world.is_main:  # the others wait: rank 0's evaluation equals one process's
            result.evals.append(evaluate_now(run, step))
            view.note(result.evals[-1])
        run.world.barrier(f"rank 0's evaluation at step {step}", timeout=None)

    with _StopFlag() as stop, view:
        if run.eval_items is not None and state.step == 0:
            evaluate_at(0)
        while state.step < end:
            rec = train_step(run, state, stop)
            step = state.step
            if rec.get("warning"):
                view.warn(
                    f"step {step}: {rec['warning']} (non-finite loss or gradient; "
                    f"{state.bad_in_row} in a row, the run stops at {cfg.max_bad_steps})"
                )
            result.last_metrics, result.steps_done = rec, step
            view.update(step, rec)
            if on_step is not None:
                on_step(step, rec)
            result.time_up = (
                cfg.max_minutes is not None and state.train_seconds >= 60 * cfg.max_minutes
            )
            last = step == cfg.steps or result.time_up
            if run.eval_items is not None and (step % cfg.eval_every == 0 or last):
                evaluate_at(step)
            saving = step % cfg.save_every == 0 or stop.requested or step == end
            if run.world.is_main and (saving or result.time_up):
                extra = {"bad_in_row": state.bad_in_row, "train_seconds": state.train_seconds}
                save_checkpoint(run.out, step, run.model, run.opt, cfg, extra)
            if result.time_up:
                break
            if stop.requested:
                result.interrupted = True
                break
    return result


def warn_unchanged_corruption(run: Run, step: int, view: TrainView) -> None:
    """A training corruption that changed none of the items it was applied to trains on clean
    items under its name: warn, and log it in metrics.jsonl (an event line, once per run)."""
    recs = [r for _, r in run.pool if r is not None]
    msg = unchanged_warning(
        run.cfg.corruption,
        sum(r.applied for r in recs),
        sum(r.changed for r in recs),
        "training items",
    )
    if msg is None:
        return
    if step == 0:
        with run.metrics_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": 0, "event": "warning", "warning": msg}) + "\n")
    if view.quiet:
        warnings.warn(msg, UnchangedCorruptionWarning, stacklevel=3)
    else:
        view.warn(f"warning: {msg}")


def train(
    config: TrainConfig,
    model_path: str | Path | None = None,
    out_dir: str | Path = "runs/train",
    resume: bool = False,
    *,
    quiet: bool = False,
    stop_after: int | None = None,
    model_and_processor: tuple[Any, Any] | None = None,
    items: list[Item] | None = None,
    eval_items: list[Item] | None = None,
    on_step: OnStep | None = None,
    reward_fn: RewardFn | None = None,
    evaluate_fn: EvaluateFn | None = None,
    indices_fn: IndicesFn = step_indices,
    world: World | None = None,
) -> TrainResult:
    """Run (or resume) GRPO; writes metrics.jsonl, rollouts.jsonl, checkpoints/ and adapter/ in out_dir.

    stop_after: stop (with a checkpoint) once this many steps are done in total, as if interrupted.
    model_and_processor: an already loaded base model (tests, benchmarks) instead of loading one.
    items / eval_items: the training / held-out items (the grid loads them, local copies included)
    instead of loading config.benchmark's splits; pass the same ones again on resume.
    on_step(step, record): called after each step and periodic evaluation (live views).
    reward_fn(response, item) -> rewards.Reward: the reward (default: rewards.score with the
    config's weights); evaluate_fn: the in-training evaluation (default: greedy
    evaluate.greedy_eval with reward_fn); indices_fn: which pool items a step uses (step_indices).
    world: the processes training together (default: distributed.current(), one process unless
    launched by mlx.launch); only rank 0 reads and writes out_dir (adapter_dir is None elsewhere).
    """
    world = world or current()
    check_world(config, world)  # a resumed run's settings equal these (check_resume_settings)
    out = Path(out_dir)
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
    ckpt, saved = resume_point(out, resume, world)
    cfg = resolve_config(config, saved, model_path, out)
    cfg = resolve_micro_batch(cfg, model_path, world)
    if world.is_main:
        atomic.write_json(out / "train_config.json", asdict(cfg), indent=2, end="")
    if model_and_processor is None:
        model_and_processor = load_model(
            str(model_path or cfg.model), dtype=cfg.dtype, **image_sizes(cfg)
        )
    run, state = setup(
        cfg,
        out,
        ckpt,
        model_and_processor,
        items,
        eval_items,
        reward_fn,
        evaluate_fn,
        indices_fn,
        world,
        saved,
    )
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    view = TrainView(cfg.steps, state.step, quiet=quiet or not world.is_main)
    if world.is_main:
        trim_logs(run, state.step, resume)
        warn_unchanged_corruption(run, state.step, view)
    result = _loop(run, state, end, view, on_step)
    if result.steps_done >= cfg.steps or result.time_up:
        if world.is_main:
            result.adapter_dir = save_adapter(run.model, out / ADAPTER_DIR)
    elif stop_after is not None and state.step >= stop_after:
        result.interrupted = True
    return result


def check_new_folder(out: Path, resume: bool, force: bool) -> list[str]:
    """The `train` command's check of --out: a folder that already holds a training is continued
    (--resume), cleared of train's own files (--force; returns what stays) or refused, never
    silently overwritten."""
    found = [n for n in runfolder.TRAIN_OWNED_PATHS if (out / n).exists()]
    if resume or set(found) <= {runfolder.TRAIN_CONFIG}:  # settings only: a start that failed
        return []
    if not force:
        raise runfolder.GridError(
            f"{out} already holds a training ({', '.join(found)}); continue it with --resume, "
            "or pass a new --out, or --force to clear what train wrote there "
            f"({', '.join(runfolder.TRAIN_OWNED_PATHS)}; other files stay)"
        )
    return runfolder.clear_owned(out, runfolder.TRAIN_TREE)


def resume_hint(out_dir: str | Path) -> str:
    return f"hallucue-mlx train --out {out_dir} --resume"
