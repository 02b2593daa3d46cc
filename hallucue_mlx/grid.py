"""The experiment grid behind `hallucue-mlx run`: train under each corruption, evaluate every model
under every corruption, on each benchmark's test split and on a slice of the training split.

Cells (a pure function of the config, `cells(cfg)`): models = base (the untrained model) + one GRPO
training per train condition, all from the same base, seed and item order; each model is evaluated
under every eval condition on every eval benchmark ("test") and on the first `train_slice_n`
training items ("train"). That crosses the paper's eight settings: corrupted training or not x
corrupted evaluation or not x train or test split.

Run folder:

    manifest.json                 config (+ its hash), versions, platform, device, git commit,
                                  seeds, subset manifests with content hashes
    train/<condition>/            train() output: metrics.jsonl, rollouts.jsonl, checkpoints/,
                                  adapter/, and done.json once finished
    eval/<model>/<benchmark>-<test|train>/   records.jsonl, summary.json, parts/ (evaluate())
    results.json                  one row per cell (see `results`), plus wall-clock `timing`
    timing.json                   seconds per task, summed over sessions
    report.md, figures/, tables/  written by hallucue_mlx.report

Resume: rerunning on the same folder skips finished trainings (done.json) and finished evaluation
conditions (evaluate's done parts), and continues an interrupted training from its last checkpoint;
everything random derives from the seeds, so results.json equals an uninterrupted run's, except its
`timing` entry (wall clock). Not so with a train.max_minutes budget: then the number of steps
depends on the machine's speed. A changed config or changed data is refused (new --out, --force).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hallucue_mlx import atomic
from hallucue_mlx.config import (
    BenchmarkSpec,
    RunConfig,
    config_hash,
    eval_config_for,
    to_dict,
    train_config_for,
)
from hallucue_mlx.config import (
    quick as quick_config,
)

BASE = "base"
MANIFEST = "manifest.json"
RESULTS = "results.json"
TIMING = "timing.json"
DONE = "done.json"
# What --force removes (only what the grid writes: never the whole folder).
OWNED_PATHS = (MANIFEST, RESULTS, TIMING, "train", "eval", "report.md", "figures", "tables")


class GridError(RuntimeError):
    """The run folder cannot be continued as asked; the message says why and what to do."""


class GridInterrupted(RuntimeError):
    """Stopped early (Ctrl-C or a test's stop point); rerunning the same command continues."""


# ================================================================ the cell list


@dataclass(frozen=True)
class Target:
    """One evaluation data set: a benchmark's test split, or the slice of the training split."""

    benchmark: str
    split: str  # "test" or "train": the role, not the benchmark's split name
    spec: BenchmarkSpec = field(compare=False, hash=False)

    @property
    def dirname(self) -> str:
        return f"{self.benchmark}-{self.split}"


@dataclass(frozen=True)
class Cell:
    """One number of the comparison: a model (base or trained under a condition), an evaluation
    condition, a benchmark and a split role."""

    train: str
    eval: str
    benchmark: str
    split: str


def models(cfg: RunConfig) -> list[str]:
    """'base' (if included) then one model per training condition."""
    return ([BASE] if cfg.grid.include_base else []) + list(cfg.grid.train_conditions)


def targets(cfg: RunConfig) -> list[Target]:
    """Each eval benchmark's test split, then the training-split slice."""
    out = [Target(s.name, "test", s) for s in cfg.data.eval]
    out.append(Target(cfg.data.train.name, "train", cfg.data.train))
    return out


def cells(cfg: RunConfig) -> list[Cell]:
    """Every cell of the grid, in run order (model, then data set, then eval condition)."""
    return [
        Cell(m, c, t.benchmark, t.split)
        for m in models(cfg)
        for t in targets(cfg)
        for c in cfg.grid.eval_conditions
    ]


@dataclass(frozen=True)
class Task:
    """A unit of work: a training (kind 'train') or one model's evaluation on one target."""

    kind: str
    model: str
    target: Target | None = None

    @property
    def name(self) -> str:
        if self.kind == "train":
            return f"train {self.model}"
        assert self.target is not None
        return f"eval {self.model} on {self.target.dirname}"


def plan(cfg: RunConfig) -> list[Task]:
    """Base evaluations first, then per condition: its training, then its evaluations."""
    tasks = []
    for m in models(cfg):
        if m != BASE:
            tasks.append(Task("train", m))
        tasks.extend(Task("eval", m, t) for t in targets(cfg))
    return tasks


# ================================================================ data


@dataclass
class GridData:
    """Every item the grid uses, loaded once: training items, and items per evaluation target."""

    train_items: list
    eval_items: dict[str, list]  # Target.dirname -> items
    subsets: dict[str, dict[str, Any]]  # name -> SubsetManifest.to_dict()


def load_data(cfg: RunConfig) -> GridData:
    from hallucue_mlx.data.bench import BenchmarkError, get_adapter, load_benchmark
    from hallucue_mlx.data.subset import SubsetManifest

    seed = cfg.data.seed

    def load(spec: BenchmarkSpec, split: str, key: str) -> list:
        try:
            return load_benchmark(spec.name, split, path=spec.path, n=spec.n, seed=seed)
        except BenchmarkError as e:
            raise BenchmarkError(
                f"{key}: {e} In a run config the local copy goes in {key}.path "
                f"(--set {key}.path=DIR)."
            ) from None

    tspec = cfg.data.train
    tsplit = tspec.split or "train"
    train_items = load(tspec, tsplit, "data.train")
    if not train_items:
        raise GridError(f"data.train: {tspec.name}/{tsplit} has no items")
    subsets = {"train": SubsetManifest.of(train_items, tspec.name, tsplit, seed, tspec.n).to_dict()}
    eval_items: dict[str, list] = {}
    for t in targets(cfg):
        if t.split == "train":
            items = train_items[: cfg.data.train_slice_n]
            n = cfg.data.train_slice_n
            split = tsplit
        else:
            split = t.spec.split or get_adapter(t.benchmark).default_split
            items = load(t.spec, split, f"data.eval.{t.benchmark}")
            n = t.spec.n
        if not items:
            raise GridError(f"evaluation data {t.dirname} ({t.benchmark}/{split}) has no items")
        eval_items[t.dirname] = items
        subsets[t.dirname] = SubsetManifest.of(items, t.benchmark, split, seed, n).to_dict()
    return GridData(train_items, eval_items, subsets)


# ================================================================ manifest


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for pkg in (
        "hallucue-mlx",
        "mlx",
        "mlx-lm",
        "mlx-vlm",
        "transformers",
        "numpy",
        "pillow",
        "math-verify",
        "datasets",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _git_commit() -> dict[str, Any] | None:
    """The commit of the hallucue_mlx source, if it runs from a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {"commit": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def _device(cfg: RunConfig) -> dict[str, Any]:
    import mlx.core as mx

    from hallucue_mlx.backend import backend_name, dtype_name, fast_blas_loaded

    backend = backend_name()
    return {
        "backend": backend,
        "device": str(mx.default_device()),
        "dtype": dtype_name(cfg.model.dtype, backend),
        "fast_blas": fast_blas_loaded() if backend == "cpu" else None,
    }


def build_manifest(cfg: RunConfig, data: GridData, quick: bool) -> dict[str, Any]:
    return {
        "config": to_dict(cfg),
        "config_hash": config_hash(cfg),
        "quick": quick,
        "seeds": {"seed": cfg.seed, "data_seed": cfg.data.seed},
        "models": models(cfg),
        "train_conditions": list(cfg.grid.train_conditions),
        "eval_conditions": list(cfg.grid.eval_conditions),
        "benchmarks": [s.name for s in cfg.data.eval],
        "train_benchmark": cfg.data.train.name,
        "subsets": data.subsets,
        "versions": _versions(),
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "device": _device(cfg),
        "git": _git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def check_resumable(out: Path, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The previous manifest if this folder's earlier run matches; GridError naming what changed."""
    path = out / MANIFEST
    if not path.is_file():
        if (out / "train").exists() or (out / "eval").exists():
            raise GridError(
                f"{out} holds train/ or eval/ results but no {MANIFEST}, so they cannot be "
                "checked against this config; use a new --out or --force to start over"
            )
        return None
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise GridError(f"{path} is not valid JSON ({e}); use a new --out or --force") from None
    if old.get("config_hash") != manifest["config_hash"]:
        a, b = _flat(old.get("config", {})), _flat(manifest["config"])
        changed = [
            f"{k}: {a.get(k, '(absent)')!r} -> {b.get(k, '(absent)')!r}"
            for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not k.startswith("output.")
        ]
        was = "a --quick run" if old.get("quick") else "a full run"
        now = "--quick" if manifest["quick"] else "a full run"
        raise GridError(
            f"{out} holds results of a different config, which would not match the finished "
            f"cells ({len(changed)} change(s): {'; '.join(changed[:8]) or 'unknown'}"
            + ("" if old.get("quick") == manifest["quick"] else f"; it was {was}, this is {now}")
            + "). Use a new --out folder, or --force to discard the old results."
        )
    for name, sub in manifest["subsets"].items():
        was = old.get("subsets", {}).get(name, {}).get("content_hash")
        if was is not None and was != sub["content_hash"]:
            raise GridError(
                f"the data of {name} changed since {out} was started (content hash "
                f"{was[:12]} -> {sub['content_hash'][:12]}); use a new --out or --force"
            )
    return old


def clear_run(out: Path) -> None:
    """Remove what the grid wrote in `out` (for --force); other files stay."""
    for name in OWNED_PATHS:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


# ================================================================ live view


class GridView:
    """Rich live view: the cell in progress, overall progress, ETA and the latest reward.

    Progress counts tasks (a training advances by its step fraction). The ETA uses the measured
    seconds per training step and per evaluated item so far; '?' until a kind has been measured."""

    def __init__(self, tasks: list[Task], cost: dict[Task, tuple[str, int]], quiet: bool) -> None:
        self.quiet = quiet
        self.cost = cost  # task -> (kind, units): ('train', steps) or ('eval', item-conditions)
        self.done_units = {"train": 0.0, "eval": 0.0}
        self.seconds = {"train": 0.0, "eval": 0.0}
        self.remaining = {"train": 0.0, "eval": 0.0}
        for kind, units in cost.values():
            self.remaining[kind] += units
        self.reward = "-"
        self.n_done = 0
        if quiet:
            return
        from rich.console import Console, Group
        from rich.live import Live
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.text import Text

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]grid"),
            BarColumn(),
            TextColumn("{task.fields[done]}/{task.total:.0f} tasks"),
            TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta]}"),
            console=self.console,
        )
        self.task = self.progress.add_task("grid", total=len(tasks), done=0, eta="?")
        self.status = Text("starting")
        self.live = Live(
            Group(self.progress, self.status), console=self.console, refresh_per_second=2
        )

    def __enter__(self) -> GridView:
        if not self.quiet:
            self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.quiet:
            self.live.stop()

    def eta(self) -> str:
        total = 0.0
        for kind in ("train", "eval"):
            if self.remaining[kind] <= 0:
                continue
            if self.done_units[kind] <= 0:
                return "?"
            total += self.remaining[kind] * self.seconds[kind] / self.done_units[kind]
        m, s = divmod(int(total), 60)
        h, m = divmod(m, 60)
        return f"{h}:{m:02d}:{s:02d}"

    def account(self, kind: str, units: float, seconds: float) -> None:
        self.done_units[kind] += units
        self.seconds[kind] += seconds
        self.remaining[kind] = max(0.0, self.remaining[kind] - units)

    def skip(self, kind: str, units: float) -> None:
        self.remaining[kind] = max(0.0, self.remaining[kind] - units)

    def show(self, description: str, completed: float | None = None) -> None:
        """Name the cell in progress (and move the bar within a training)."""
        if self.quiet:
            return
        self.status.plain = f"now: {description}   latest reward: {self.reward}"
        kw: dict[str, Any] = {"eta": self.eta()}
        if completed is not None:
            kw["completed"] = completed
        self.progress.update(self.task, **kw)

    def finish_task(self, message: str) -> None:
        self.n_done += 1
        if self.quiet:
            return
        self.progress.update(self.task, completed=self.n_done, done=self.n_done, eta=self.eta())
        self.console.print(message)


# ================================================================ running


@dataclass
class _Timing:
    path: Path
    tasks: dict[str, float] = field(default_factory=dict)
    sessions: int = 0

    @classmethod
    def load(cls, path: Path) -> _Timing:
        if path.is_file():
            try:
                d = json.loads(path.read_text())
                return cls(path, dict(d.get("tasks", {})), int(d.get("sessions", 0)))
            except (json.JSONDecodeError, ValueError):
                pass
        return cls(path)

    def add(self, name: str, seconds: float) -> None:
        self.tasks[name] = self.tasks.get(name, 0.0) + seconds
        self.save()

    def save(self) -> None:
        atomic.write_json(self.path, {"tasks": self.tasks, "sessions": self.sessions}, indent=2)

    def summary(self) -> dict[str, Any]:
        train = {k[len("train ") :]: v for k, v in self.tasks.items() if k.startswith("train ")}
        ev = {k[len("eval ") :]: v for k, v in self.tasks.items() if k.startswith("eval ")}
        return {
            "total_s": sum(self.tasks.values()),
            "train_s": train,
            "eval_s": ev,
            "sessions": self.sessions,
            "tasks": dict(self.tasks),
        }


def _training_done(d: Path, steps: int) -> bool:
    marker = d / DONE
    if not marker.is_file() or not (d / "adapter" / "adapters.safetensors").is_file():
        return False
    try:
        done = json.loads(marker.read_text())
        # a train.max_minutes budget ends a run early, as a finished one
        return int(done.get("steps", -1)) == steps or bool(done.get("time_up"))
    except (json.JSONDecodeError, ValueError):
        return False


def _eval_done(d: Path, conditions: list[str], n_items: int, samples: int) -> bool:
    """Every condition has a complete done-part and records.jsonl holds all of them (it is
    rewritten after each condition, so a kill in between leaves it short)."""
    from hallucue_mlx.evaluate import PARTS_DIR, RECORDS_FILE

    for c in conditions:
        marker = d / PARTS_DIR / f"{c}.done.json"
        if not marker.is_file():
            return False
        try:
            if json.loads(marker.read_text()).get("n_records") != n_items * samples:
                return False
        except json.JSONDecodeError:
            return False
    records = d / RECORDS_FILE
    if not records.is_file():
        return False
    with records.open("rb") as f:
        lines = sum(1 for ln in f if ln.strip())
    return lines == n_items * samples * len(conditions)


def _load(cfg: RunConfig, adapter: str | Path | None) -> tuple[Any, Any]:
    from hallucue_mlx.models.load import load_model

    return load_model(cfg.model.id, adapter=adapter, dtype=cfg.model.dtype)


def run_grid(
    cfg: RunConfig,
    out_dir: str | Path | None = None,
    quick: bool = False,
    *,
    force: bool = False,
    quiet: bool = False,
    report: bool = True,
    stop_after_tasks: int | None = None,
    stop_training_at: tuple[str, int] | None = None,
) -> Path:
    """Run (or continue) the whole grid in out_dir (default: cfg.output.dir); returns results.json.

    quick: the smoke-run version of cfg (config.quick). force: discard earlier results in out_dir.
    stop_after_tasks / stop_training_at=(condition, step): stop early as if interrupted (tests);
    raises GridInterrupted.
    """
    if quick:
        cfg = quick_config(cfg)
    out = Path(out_dir if out_dir is not None else cfg.output.dir)
    out.mkdir(parents=True, exist_ok=True)
    if force:
        clear_run(out)
    data = load_data(cfg)
    manifest = build_manifest(cfg, data, quick)
    old = check_resumable(out, manifest)
    if old is not None:
        manifest["created"] = old.get("created", manifest["created"])
        manifest["resumed"] = [*old.get("resumed", []), time.strftime("%Y-%m-%dT%H:%M:%S%z")]
    atomic.write_json(out / MANIFEST, manifest, indent=2)

    timing = _Timing.load(out / TIMING)
    timing.sessions += 1
    timing.save()
    tasks = plan(cfg)
    ecfg = eval_config_for(cfg)
    conds = list(cfg.grid.eval_conditions)
    cost = {
        t: (
            ("train", cfg.train.steps)
            if t.kind == "train"
            else ("eval", len(data.eval_items[t.target.dirname]) * len(conds))  # type: ignore[union-attr]
        )
        for t in tasks
    }
    held_out = data.eval_items[targets(cfg)[0].dirname]
    loaded: dict[str, tuple[Any, Any]] = {}  # one loaded model at a time, for its evaluations

    with GridView(tasks, cost, quiet) as view:
        for i, task in enumerate(tasks):
            if stop_after_tasks is not None and i >= stop_after_tasks:
                raise GridInterrupted(f"stopped after {i} tasks (stop_after_tasks)")
            kind, units = cost[task]
            if task.kind == "train":
                loaded.clear()  # free the evaluated model's memory before training loads its own
                _run_training(cfg, out, task.model, data, held_out, view, timing, stop_training_at)
            else:
                assert task.target is not None
                t = task.target
                d = out / "eval" / task.model / t.dirname
                items = data.eval_items[t.dirname]
                if _eval_done(d, conds, len(items), ecfg.samples_per_item):
                    view.skip("eval", units)
                    view.finish_task(f"[dim]kept[/dim] {task.name}")
                    continue
                if task.model not in loaded:
                    loaded.clear()
                    adapter = (
                        cfg.model.adapter
                        if task.model == BASE
                        else out / "train" / task.model / "adapter"
                    )
                    loaded[task.model] = _load(cfg, adapter)
                model, processor = loaded[task.model]
                _run_eval(model, processor, items, ecfg, conds, d, task, view, timing)
    loaded.clear()

    path = write_results(cfg, out, data, timing)
    if not quiet:
        _print_summary(path)
    if report:
        _write_report(out, quiet)
    return path


def _run_training(
    cfg: RunConfig,
    out: Path,
    cond: str,
    data: GridData,
    held_out: list,
    view: GridView,
    timing: _Timing,
    stop_training_at: tuple[str, int] | None,
) -> None:
    from hallucue_mlx.train import latest_checkpoint, train

    tcfg = train_config_for(cfg, cond)
    d = out / "train" / cond
    name = f"train {cond}"
    if _training_done(d, tcfg.steps):
        view.skip("train", tcfg.steps)
        view.finish_task(f"[dim]kept[/dim] {name}")
        return
    resume = latest_checkpoint(d) is not None
    start = _checkpoint_step(d) if resume else 0
    view.skip("train", start)
    t0 = time.perf_counter()
    last = [time.perf_counter(), start]

    def on_step(step: int, rec: dict) -> None:
        now = time.perf_counter()
        view.account("train", step - last[1], now - last[0])
        last[0], last[1] = now, step
        if "reward" in rec:
            view.reward = f"{rec['reward']:.3f}"
        view.show(f"GRPO under {cond}: step {step}/{tcfg.steps}", view.n_done + step / tcfg.steps)

    view.show(f"GRPO under {cond}: step {start}/{tcfg.steps}" + (" (resumed)" if resume else ""))
    stop_after = None
    if stop_training_at is not None and stop_training_at[0] == cond:
        stop_after = stop_training_at[1]
    try:
        result = train(
            tcfg,
            out_dir=d,
            resume=resume,
            quiet=True,
            stop_after=stop_after,
            model_and_processor=_load(cfg, None),
            items=data.train_items,
            eval_items=held_out,
            on_step=on_step,
        )
    finally:
        timing.add(name, time.perf_counter() - t0)
    time_up = bool(getattr(result, "time_up", False))
    if result.interrupted or (result.steps_done < tcfg.steps and not time_up):
        raise GridInterrupted(
            f"training {cond!r} stopped at step {result.steps_done}/{tcfg.steps} (checkpoint kept)"
        )
    atomic.write_json(
        d / DONE, {"steps": result.steps_done, "condition": cond, "time_up": time_up}, indent=2
    )
    view.finish_task(f"[green]done[/green] {name} ({result.steps_done} steps)")


def _checkpoint_step(d: Path) -> int:
    from hallucue_mlx.train import CKPT_DIR, LATEST

    try:
        return int(json.loads((d / CKPT_DIR / LATEST).read_text())["step"])
    except (OSError, KeyError, ValueError):
        return 0


def _run_eval(
    model: Any,
    processor: Any,
    items: list,
    ecfg: Any,
    conds: list[str],
    d: Path,
    task: Task,
    view: GridView,
    timing: _Timing,
) -> None:
    """Evaluate condition by condition (evaluate() keeps the finished ones), so the view can name
    the cell in progress; records.jsonl holds all conditions after the last call."""
    from dataclasses import replace

    from hallucue_mlx.evaluate import evaluate

    for k, cond in enumerate(conds):
        view.show(f"{task.model} model, {task.target.dirname}, under {cond} ({len(items)} items)")
        t0 = time.perf_counter()
        res = evaluate(
            model,
            processor,
            items,
            replace(ecfg, conditions=tuple(conds[: k + 1])),
            out_dir=d,
            model_name=task.model,
            progress=False,
        )
        dt = time.perf_counter() - t0
        timing.add(task.name, dt)
        if cond in res.skipped:
            view.skip("eval", len(items))
        else:
            view.account("eval", len(items), dt)
    view.finish_task(f"[green]done[/green] {task.name}")


# ================================================================ results


CELL_KEYS = ("n", "accuracy", "ci95", "format_rate", "mean_response_tokens")
EXTRA_KEYS = ("truncated_rate", "grader_errors", "chance")


def results(cfg: RunConfig, out: Path, data: GridData | None = None) -> dict[str, Any]:
    """results.json's content (without timing) from the records in out/eval."""
    from hallucue_mlx.evaluate import RECORDS_FILE, load_records
    from hallucue_mlx.metrics import summarize

    summaries: dict[tuple[str, str], dict] = {}
    rows = []
    for c in cells(cfg):
        tdir = f"{c.benchmark}-{c.split}"
        key = (c.train, tdir)
        if key not in summaries:
            d = out / "eval" / c.train / tdir
            if not (d / RECORDS_FILE).is_file():
                raise GridError(f"no evaluation records in {d}; rerun the grid to finish it")
            summaries[key] = summarize(load_records(d))
        s = summaries[key].get(c.eval)
        if s is None:
            raise GridError(f"{out / 'eval' / c.train / tdir} has no {c.eval!r} records")
        row: dict[str, Any] = {"train": c.train, "eval": c.eval, "benchmark": c.benchmark}
        row["split"] = c.split
        row.update({k: s[k] for k in CELL_KEYS})
        row.update({k: s.get(k) for k in EXTRA_KEYS})
        rows.append(row)
    training = {}
    for cond in cfg.grid.train_conditions:
        training[cond] = _training_summary(out / "train" / cond)
    return {
        "model": cfg.model.id,
        "benchmarks": [s.name for s in cfg.data.eval],
        "train_benchmark": cfg.data.train.name,
        "train_conditions": list(cfg.grid.train_conditions),
        "eval_conditions": list(cfg.grid.eval_conditions),
        "models": models(cfg),
        "splits": {
            t.dirname: {"benchmark": t.benchmark, "split": t.split, "n": _n(data, t)}
            for t in targets(cfg)
        },
        "config_hash": config_hash(cfg),
        "cells": rows,
        "training": training,
    }


def _n(data: GridData | None, t: Target) -> int | None:
    return len(data.eval_items[t.dirname]) if data is not None else None


# metrics.jsonl keys that are wall-clock measurements (kept out of results.json's compared part)
_CLOCK_KEYS = ("time", "tokens_per_s", "peak_memory")


def _training_summary(d: Path) -> dict[str, Any]:
    """Steps and the mean of the last 10 steps' reward, accuracy, format, KL, length."""
    p = d / "metrics.jsonl"
    if not p.is_file():
        return {"steps": 0}
    steps = [
        json.loads(ln)
        for ln in p.read_text().splitlines()
        if ln.strip() and "event" not in json.loads(ln)
    ]
    last = steps[-10:]
    out: dict[str, Any] = {"steps": steps[-1]["step"] if steps else 0}
    for k in ("reward", "accuracy", "format", "kl", "completions/mean_length"):
        vals = [r[k] for r in last if isinstance(r.get(k), (int, float))]
        out[f"last10/{k}"] = sum(vals) / len(vals) if vals else None
    return out


def write_results(cfg: RunConfig, out: Path, data: GridData, timing: _Timing) -> Path:
    """results.json (atomically): the cells plus `timing`, the only wall-clock part."""
    res = results(cfg, out, data)
    res["timing"] = timing.summary()
    path = out / RESULTS
    atomic.write_json(path, res, indent=2)
    return path


def comparable(results_json: dict[str, Any]) -> dict[str, Any]:
    """results.json without its wall-clock `timing`: equal for interrupted+resumed and
    uninterrupted runs with the same config and seed."""
    return {k: v for k, v in results_json.items() if k != "timing"}


def _print_summary(path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    res = json.loads(path.read_text())
    console = Console()
    for split in ("test", "train"):
        table = Table(
            title=f"accuracy % ({split} split)",
            caption="rows: base or the training corruption; columns: benchmark, eval corruption",
        )
        table.add_column("trained", style="bold")
        benches = sorted({c["benchmark"] for c in res["cells"] if c["split"] == split})
        conds = res["eval_conditions"]
        for b in benches:
            for c in conds:
                table.add_column(f"{b}\n{c}", justify="right")
        for m in res["models"]:
            row = [m]
            for b in benches:
                for c in conds:
                    cell = next(
                        x
                        for x in res["cells"]
                        if x["train"] == m
                        and x["benchmark"] == b
                        and x["eval"] == c
                        and x["split"] == split
                    )
                    row.append(f"{100 * cell['accuracy']:.1f}")
            table.add_row(*row)
        console.print(table)
    console.print(f"results: {path} ({res['timing']['total_s']:.0f} s of work)")


def _write_report(out: Path, quiet: bool) -> None:
    from hallucue_mlx.report import write_report

    try:
        path = write_report(out)
    except Exception:
        # results.json is already written: say how to rebuild once the cause is fixed
        print(f"writing the report failed; rebuild it with: hallucue-mlx report {out}")
        raise
    if not quiet:
        print(f"report: {path}")


__all__ = [
    "BASE",
    "Cell",
    "GridError",
    "GridInterrupted",
    "Target",
    "Task",
    "cells",
    "comparable",
    "load_data",
    "models",
    "plan",
    "results",
    "run_grid",
    "targets",
]
