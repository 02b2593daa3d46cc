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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from hallucue_mlx import atomic
from hallucue_mlx.config import TrainConfig
from hallucue_mlx.grpo import (
    LossConfig,
    group_advantages,
    make_batch,
    policy_loss,
    reference_logprobs,
)
from hallucue_mlx.models.lora import (
    LoraConfig,
    apply_lora,
    load_adapter_weights,
    save_adapter,
)
from hallucue_mlx.rollout import Episode, encode_prompt, generate, logit_bias

# ================================================================ configuration


def lora_config(cfg: TrainConfig) -> LoraConfig:
    """The LoRA adapter a training run attaches."""
    return LoraConfig(
        rank=cfg.lora_rank,
        alpha=cfg.lora_alpha,
        dropout=cfg.lora_dropout,
        target_modules=tuple(cfg.lora_targets),
        num_layers=cfg.lora_layers,
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
        apply_lora(model, lora_config(cfg))
    opt = make_optimizer(cfg)
    if ckpt is not None:
        extra = _restore(ckpt, model, opt)
        start_step = int(extra["step"])

    reward_cfg = RewardConfig(
        accuracy_weight=cfg.accuracy_weight,
        format_weight=cfg.format_weight,
        function=cfg.reward_function,
    )
    lcfg = loss_config(cfg)
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
