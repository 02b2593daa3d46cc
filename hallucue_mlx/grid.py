"""The experiment grid behind `hallucue-mlx run`: train under each corruption, evaluate every model
under every corruption, on each benchmark's test split and on a slice of the training split.

Cells (a pure function of the config, `cells(cfg)`): models = base (the untrained model) + one GRPO
training per train condition (+ with grid.random_reward_control the control "GRPO, random reward",
model random_reward: clean GRPO's recipe with a coin-flip accuracy reward), all from the same base,
seed and item order; each model is evaluated
under every eval condition on every eval benchmark ("test") and on the first `train_slice_n`
training items ("train"). That crosses the paper's eight settings: corrupted training or not x
corrupted evaluation or not x train or test split.

The run folder's layout, manifest, done markers and timing record: hallucue_mlx.runfolder.

Resume: rerunning on the same folder skips finished trainings (done.json) and finished evaluation
conditions (evaluate's done parts), and continues an interrupted training from its last checkpoint;
everything random derives from the seeds, so results.json equals an uninterrupted run's, except its
`timing` entry (wall clock). Not so with a train.max_minutes budget: then the number of steps
depends on the machine's speed; nor for the random-reward control's training when it was
interrupted: its coins' call counters restart on resume (rewards.random_reward). A changed config or changed data is refused (new --out, --force).
--force clears only the run's own files (runfolder.OWNED_PATHS), after config and data loaded.

Models trained elsewhere join a run folder with `hallucue-mlx import` (hallucue_mlx.importer):
evaluated like the grid's models into eval/<name>/ and recorded in imported.json, so results()
gives them rows and a resumed run keeps them.

Several processes (`mlx.launch -n N -- hallucue-mlx run`; hallucue_mlx.distributed), grid.parallel:
- cells (the default): each rank computes whole models (a model's training and its evaluations,
  dealt round-robin in plan order) into the one run folder, which every rank must see (one
  machine, or a shared filesystem; checked at the start). Rank 0 holds the folder's lock, writes
  the manifest before the others start and results.json and the report after all have finished.
  Each cell is computed by one process as one process computes it (ranks on one host split its
  cores' BLAS threads, another float summation order), so results.json's cells equal a
  one-process run's (tested).
- data: every training runs data-parallel over all ranks (train.py), rank 0 evaluates; only rank 0
  touches the folder. The trainings equal one process's up to float summation order.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hallucue_mlx import atomic, blas, runfolder
from hallucue_mlx import plan as planner  # grid.plan() is the task list
from hallucue_mlx.backend import backend_name, dtype_name, fast_blas_loaded, usable_cores
from hallucue_mlx.config import (
    BenchmarkSpec,
    ConfigError,
    RunConfig,
    config_hash,
    eval_config_for,
    image_sizes,
    to_dict,
    train_config_for,
    trained_models,
)
from hallucue_mlx.config import (
    quick as quick_config,
)
from hallucue_mlx.data.bench import BenchmarkError, get_adapter, load_benchmark
from hallucue_mlx.data.subset import SubsetManifest
from hallucue_mlx.distributed import World, current, launched
from hallucue_mlx.evaluate import evaluate, load_records, unchanged_corruptions
from hallucue_mlx.metrics import summarize
from hallucue_mlx.models.load import load_model, resolve_model_dir
from hallucue_mlx.report import write_report
from hallucue_mlx.report.labels import FILTER_NOTE, MODEL_LABELS, model_label
from hallucue_mlx.rewards import check_golds
from hallucue_mlx.runfolder import GridError, Timing
from hallucue_mlx.train import train
from hallucue_mlx.views import GridView, print_grid_summary

BASE = "base"


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
    """'base' (if included), one model per training condition, then the random-reward control
    (runfolder.RANDOM_REWARD) when grid.random_reward_control is set."""
    return ([BASE] if cfg.grid.include_base else []) + trained_models(cfg)


def targets(cfg: RunConfig) -> list[Target]:
    """Each eval benchmark's test split, then the training-split slice."""
    out = [Target(s.name, "test", s) for s in cfg.data.eval]
    out.append(Target(cfg.data.train.name, "train", cfg.data.train))
    return out


def cells(cfg: RunConfig, imported: Sequence[str] = ()) -> list[Cell]:
    """Every cell of the grid, in run order (model, then data set, then eval condition); the
    models named in `imported` (hallucue_mlx.importer) after the grid's own."""
    return [
        Cell(m, c, t.benchmark, t.split)
        for m in [*models(cfg), *imported]
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


def owners(cfg: RunConfig, size: int) -> dict[str, int]:
    """grid.parallel cells: the rank that computes each model's tasks (its training, then its
    evaluations, which need its adapter), dealt round-robin in plan order."""
    return {m: i % size for i, m in enumerate(models(cfg))}


def rank_tasks(cfg: RunConfig, world: World, mode: str | None) -> list[Task]:
    """The tasks this process runs: all (one process), its models' (cells), or for data: every
    training (all ranks join each), then rank 0 alone evaluates, so the other ranks are done
    when the last training is."""
    tasks = plan(cfg)
    if mode == "cells":
        own = owners(cfg, world.size)
        return [t for t in tasks if own[t.model] == world.rank]
    if mode == "data":
        trainings = [t for t in tasks if t.kind == "train"]
        return trainings + ([t for t in tasks if t.kind == "eval"] if world.is_main else [])
    return tasks


# ================================================================ data


@dataclass
class GridData:
    """Every item the grid uses, loaded once: training items, and items per evaluation target."""

    train_items: list
    eval_items: dict[str, list]  # Target.dirname -> items
    subsets: dict[str, dict[str, Any]]  # name -> SubsetManifest.to_dict()


def load_spec(spec: BenchmarkSpec, split: str, key: str, seed: int) -> list:
    """The items of one data spec of a run config (`key` names it in errors), golds checked."""
    try:
        items = load_benchmark(spec.name, split, path=spec.path, n=spec.n, seed=seed)
        check_golds(items, spec.path or "")
        return items
    except BenchmarkError as e:
        raise BenchmarkError(
            f"{key}: {e} In a run config the local copy goes in {key}.path (--set {key}.path=DIR)."
        ) from None


def validation_items(cfg: RunConfig) -> list:
    """The periodic evaluation's items: n_eval of the training benchmark's validation split
    (synth, Geometry3K); [] when it has none (a local copy, or a benchmark with test splits
    only), which turns the periodic evaluation off: it never reads the test split."""
    spec, t = cfg.data.train, cfg.train
    if not (t.eval_every and t.n_eval) or spec.path is not None:
        return []
    if t.eval_split not in get_adapter(spec.name).splits:
        return []
    return load_spec(
        replace(spec, split=t.eval_split, n=t.n_eval), t.eval_split, "data.train", cfg.data.seed
    )


def load_data(cfg: RunConfig) -> GridData:
    seed = cfg.data.seed

    def load(spec: BenchmarkSpec, split: str, key: str) -> list:
        return load_spec(spec, split, key, seed)

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


def _device(cfg: RunConfig) -> dict[str, Any]:
    import mlx.core as mx

    backend = backend_name()
    return {
        "backend": backend,
        "device": str(mx.default_device()),
        "dtype": dtype_name(cfg.model.dtype, backend),
        "fast_blas": fast_blas_loaded() if backend == "cpu" else None,
        "blas": blas.status().name if backend == "cpu" else None,
    }


def build_manifest(cfg: RunConfig, data: GridData, quick: bool) -> dict[str, Any]:
    run = {
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
        "weights": weights(cfg),
    }
    return runfolder.build_manifest(run, _device(cfg))


def weights(cfg: RunConfig) -> dict[str, str]:
    """Content fingerprints of the base model's weights (and of model.adapter's): resuming a
    folder whose results were made with other weights is refused (runfolder.check_weights)."""
    out = {"model": runfolder.weights_fingerprint(resolve_model_dir(cfg.model.id))}
    if cfg.model.adapter:
        out["adapter"] = runfolder.weights_fingerprint(cfg.model.adapter)
    return out


# ================================================================ running


def _load(cfg: RunConfig, adapter: str | Path | None) -> tuple[Any, Any]:
    return load_model(
        cfg.model.id, adapter=adapter, dtype=cfg.model.dtype, **image_sizes(cfg.model)
    )


@dataclass
class Session:
    """What the tasks of one run_grid call share."""

    cfg: RunConfig
    out: Path
    data: GridData
    timing: Timing
    world: World  # the processes a training runs on: all ranks (data) or this one
    writes: bool  # this process writes its trainings' done markers (not so: data, rank > 0)


def parallel_mode(cfg: RunConfig, world: World) -> str | None:
    """None for one process, else grid.parallel (checked against the training batch for data)."""
    if not world.distributed:
        return None
    mode = cfg.grid.parallel
    if mode == "data" and cfg.train.prompts_per_step % world.size:
        raise ConfigError(
            f"train.prompts_per_step = {cfg.train.prompts_per_step} does not split over "
            f"{world.size} processes (grid.parallel: data); make it a multiple of {world.size}, "
            "or use grid.parallel: cells",
            "train.prompts_per_step",
        )
    return mode


def local_processes(
    cfg: RunConfig,
    *,
    backend: str | None = None,
    cores: int | None = None,
    peak_gb: float | None = None,
    usable_gb: float | None = None,
) -> int:
    """How many processes `hallucue-mlx run` starts on this machine: grid.processes, or (null)
    on the CPU backend one per core, no more than the models (cells) or than divide the training
    batch (data), and no more than the memory holds at `plan`'s predicted peak; on Metal and
    CUDA one (the processes would share one GPU; not measured). The keyword arguments stand in
    for this machine in tests. One when a launcher (mlx.launch) started this process. A sweep
    (grid.ratios, grid.seeds) shares each value's grid in turn, so one value's grid counts."""
    if launched():
        return 1
    if cfg.grid.processes is not None:
        return cfg.grid.processes
    if (backend or backend_name()) != "cpu":
        return 1
    cfg = replace(cfg, grid=replace(cfg.grid, ratios=[], seeds=1))  # one value's grid
    n = cores if cores is not None else usable_cores()
    if cfg.grid.parallel == "data":
        n = max(k for k in range(1, n + 1) if cfg.train.prompts_per_step % k == 0)
    else:
        n = min(n, len(models(cfg)))
    if n > 1:
        if peak_gb is None or usable_gb is None:
            peak_gb, usable_gb = _peak_and_usable_gb(cfg)
        n = max(1, min(n, int(usable_gb // peak_gb))) if peak_gb > 0 else 1
    return n


def _peak_and_usable_gb(cfg: RunConfig) -> tuple[float, float]:
    """One process's predicted peak (plan's memory model, training or evaluation) and this
    machine's usable memory, in GB; (0, 0) when plan cannot read the model (then one process)."""
    try:
        mem = planner.physical_memory_gb()
        here = planner.Speed("here", 1.0, 1.0, 0.0, mem, False)  # speeds do not enter memory
        peaks = planner.make_plan(cfg, here=here).mem
    except Exception:  # no prediction: one process, as before
        return 0.0, 0.0
    return max(peaks.train_peak, peaks.eval_peak) / planner.GB, planner.usable_gb(mem, gpu=False)


def prepare_run(
    cfg: RunConfig, out_dir: str | Path, quick: bool = False, *, force: bool = False
) -> None:
    """What a run checks and writes before it computes anything (the config, the data, the
    folder; --force applied; the manifest), for `hallucue-mlx run` to do once before it starts
    several processes: a mistake then ends in one error, and the processes find the folder
    ready (run_grid on it again, without force, checks it and goes on)."""
    cfg = quick_config(cfg) if quick else cfg
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_folder(cfg, out, load_data(cfg), quick, force, quiet=False)


def _check_folder(
    cfg: RunConfig, out: Path, data: GridData, quick: bool, force: bool, quiet: bool
) -> None:
    """Not a sweep folder, and not another run's (runfolder.check_resumable); then --force and
    the manifest."""
    if (out / runfolder.SWEEP).exists() or (out / runfolder.SWEEP).is_symlink():
        raise GridError(
            f"{out} is a sweep folder (it holds {runfolder.SWEEP}), not a run folder; a run there "
            "would overwrite the sweep's report: use a new --out (each value's run folder is a "
            "subfolder of the sweep)"
        )
    manifest = build_manifest(cfg, data, quick)
    if force:  # only now that config and data are good: a failed start deletes nothing
        _clear(out, quiet)
    runfolder.write_manifest(out, manifest, runfolder.check_resumable(out, manifest))


def _prepare(
    cfg: RunConfig,
    out: Path,
    data: GridData,
    quick: bool,
    force: bool,
    quiet: bool,
    shared: dict[str, Path] | None,
) -> None:
    """The run folder's checks and manifest, --force, shared models, a new timing session."""
    _check_folder(cfg, out, data, quick, force, quiet)
    for model, src in (shared or {}).items():
        copied = runfolder.adopt_model(Path(src), out, model, trained=model != BASE)
        if copied and not quiet:
            print(f"{model}: shared with {src} (same recipe), not computed again")
    timing = Timing.load(out / runfolder.TIMING)
    timing.sessions += 1
    timing.save()


def check_shared_folder(world: World, out: Path) -> str:
    """grid.parallel cells: every rank writes its cells into the run folder rank 0 made, so each
    must see it (one machine, or a filesystem all hosts share at the same path). Returns the
    session's token (finish_cells tells this session's reports from a stale one)."""

    def mark() -> str:
        token = secrets.token_hex(16)
        atomic.write_text(out / runfolder.RANK_CHECK, token)
        return token

    token = world.on_main(mark, "marking the run folder")
    mark_file = out / runfolder.RANK_CHECK
    sees = mark_file.is_file() and mark_file.read_text() == token
    blind = [r for r, ok in enumerate(world.gather_json(sees, "checking the run folder")) if not ok]
    if world.is_main:
        mark_file.unlink(missing_ok=True)
    if blind:
        raise GridError(
            f"grid.parallel cells: rank(s) {', '.join(map(str, blind))} cannot see the run folder "
            f"{out} that rank 0 writes (another machine without a shared filesystem); put --out "
            "on a filesystem every host mounts at the same path, or use --set grid.parallel=data"
        )
    return token


def finish_cells(world: World, out: Path, token: str, timing: Timing) -> None:
    """grid.parallel cells: the other ranks leave their task times in the run folder and end;
    rank 0 waits for all of them, polling the folder (a rank waiting inside a ring collective
    spins a core, measured, which would slow the ranks still computing on the same machine). A
    rank that fails exits non-zero and mlx.launch stops rank 0 (distributed.Terminated)."""
    if not world.is_main:
        data = {"token": token, "tasks": timing.tasks}
        atomic.write_json(runfolder.rank_done_file(out, world.rank), data)
        return
    pending = set(range(1, world.size))
    while pending:
        for rank in sorted(pending):
            path = runfolder.rank_done_file(out, rank)
            try:
                got = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if got.get("token") != token:
                continue  # a report left by an earlier session
            for name, seconds in got["tasks"].items():
                timing.tasks[name] = timing.tasks.get(name, 0.0) + seconds
            path.unlink(missing_ok=True)
            pending.discard(rank)
        if pending:
            time.sleep(0.5)
    timing.save()


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
    shared: dict[str, Path] | None = None,
    world: World | None = None,
) -> Path:
    """Run (or continue) the whole grid in out_dir (default: cfg.output.dir); returns results.json.

    quick: the smoke-run version of cfg (config.quick). force: discard earlier results in out_dir.
    shared: model -> a finished run folder whose model of that name has this grid's recipe (a
    sweep's base, or clean GRPO in a ratio sweep): copied in rather than computed again.
    stop_after_tasks / stop_training_at=(condition, step): stop early as if interrupted (tests);
    raises GridInterrupted. world: the processes running the grid (default:
    distributed.current(), one unless launched by mlx.launch); grid.parallel says how several
    share it (module docstring). Every rank returns the path; rank 0 alone writes it.
    """
    if cfg.grid.ratios or cfg.grid.seeds > 1:
        which = (
            "grid.ratios makes this a ratio sweep"
            if cfg.grid.ratios
            else ("grid.seeds makes this a sweep of seed")
        )
        raise GridError(
            f"{which}: run it with `hallucue-mlx run` (or hallucue_mlx.sweep.run_sweep), which "
            "runs one grid per value"
        )
    if quick:
        cfg = quick_config(cfg)
    world = world or current()
    mode = parallel_mode(cfg, world)
    out = Path(out_dir if out_dir is not None else cfg.output.dir)
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
    data = load_data(cfg)
    world.on_main(
        lambda: _prepare(cfg, out, data, quick, force, quiet, shared), "preparing the run folder"
    )
    token = check_shared_folder(world, out) if mode == "cells" else ""
    timing = Timing.load(out / runfolder.TIMING) if world.is_main else Timing(None)
    train_world = world if mode == "data" else World()
    session = Session(cfg, out, data, timing, train_world, mode != "data" or world.is_main)
    _run_tasks(
        session,
        rank_tasks(cfg, world, mode),
        quiet or not world.is_main,
        stop_after_tasks,
        stop_training_at,
    )
    if mode == "cells":  # rank 0 waits for every rank's cells and adds their times
        if world.is_main and not quiet and world.size > 1:
            print(
                f"[grid] waiting for the other {world.size - 1} process(es) to finish their models"
            )
        finish_cells(world, out, token, timing)
    path = out / runfolder.RESULTS
    if world.is_main:
        path = write_results(cfg, out, data, timing)
        if not quiet:
            print_grid_summary(path)
        if report:
            _write_report(out, quiet)
    return path


def _run_tasks(
    session: Session,
    tasks: list[Task],
    quiet: bool,
    stop_after_tasks: int | None,
    stop_training_at: tuple[str, int] | None,
) -> None:
    """This process's tasks in order, skipping finished ones, under the live view."""
    cfg, out, data = session.cfg, session.out, session.data
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
    loaded: dict[str, tuple[Any, Any]] = {}  # one loaded model at a time, for its evaluations
    with GridView([cost[t] for t in tasks], quiet) as view:
        for i, task in enumerate(tasks):
            if stop_after_tasks is not None and i >= stop_after_tasks:
                raise GridInterrupted(f"stopped after {i} tasks (stop_after_tasks)")
            kind, units = cost[task]
            if task.kind == "train":
                loaded.clear()  # free the evaluated model's memory before training loads its own
                _run_training(session, task.model, view, stop_training_at)
                continue
            assert task.target is not None
            t = task.target
            d = runfolder.eval_dir(out, task.model, t.dirname)
            items = data.eval_items[t.dirname]
            if runfolder.eval_done(d, conds, len(items), ecfg.samples_per_item):
                view.skip("eval", units)
                view.finish_task(f"[dim]kept[/dim] {task.name}")
                continue
            if task.model not in loaded:
                loaded.clear()
                adapter = (
                    cfg.model.adapter
                    if task.model == BASE
                    else runfolder.train_dir(out, task.model) / runfolder.ADAPTER_DIR
                )
                loaded[task.model] = _load(cfg, adapter)
            model, processor = loaded[task.model]
            _run_eval(model, processor, items, ecfg, conds, d, task, view, session.timing)
    loaded.clear()


def _clear(out: Path, quiet: bool) -> None:
    """--force: clear the run's own files; name what stays."""
    kept = runfolder.clear_run(out)
    if kept and not quiet:
        shown = ", ".join(kept[:12]) + (f" and {len(kept) - 12} more" if len(kept) > 12 else "")
        print(f"--force cleared this run's own files in {out} and kept the rest: {shown}")


def _training_status(d: Path, steps: int) -> dict[str, Any]:
    done = runfolder.training_done(d, steps)
    resume = runfolder.latest_checkpoint(d) is not None
    return {"done": done, "resume": resume, "start": runfolder.checkpoint_step(d) if resume else 0}


def _run_training(
    session: Session,
    cond: str,
    view: GridView,
    stop_training_at: tuple[str, int] | None,
) -> None:
    cfg, out, data, timing = session.cfg, session.out, session.data, session.timing
    tcfg = train_config_for(cfg, cond)
    d = runfolder.train_dir(out, cond)
    name = f"train {cond}"
    # data-parallel: rank 0 reads the folder and tells the others
    status = session.world.on_main(
        lambda: _training_status(d, tcfg.steps), f"checking train/{cond}"
    )
    if status["done"]:
        view.skip("train", tcfg.steps)
        view.finish_task(f"[dim]kept[/dim] {name}")
        return
    resume, start = status["resume"], status["start"]
    view.skip("train", start)
    t0 = time.perf_counter()
    last = [time.perf_counter(), start]
    what = "GRPO with random rewards" if cond == runfolder.RANDOM_REWARD else f"GRPO under {cond}"

    def on_step(step: int, rec: dict) -> None:
        now = time.perf_counter()
        view.account("train", step - last[1], now - last[0])
        last[0], last[1] = now, step
        if "reward" in rec:
            view.reward = f"{rec['reward']:.3f}"
        view.show(f"{what}: step {step}/{tcfg.steps}", view.n_done + step / tcfg.steps)

    view.show(f"{what}: step {start}/{tcfg.steps}" + (" (resumed)" if resume else ""))
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
            eval_items=validation_items(cfg),
            on_step=on_step,
            world=session.world,
        )
    finally:
        timing.add(name, time.perf_counter() - t0)
    time_up = bool(getattr(result, "time_up", False))
    if result.interrupted or (result.steps_done < tcfg.steps and not time_up):
        raise GridInterrupted(
            f"training {cond!r} stopped at step {result.steps_done}/{tcfg.steps} (checkpoint kept)"
        )
    if session.writes:
        runfolder.mark_training_done(d, result.steps_done, cond, time_up)
    view.finish_task(f"[green]done[/green] {name} ({result.steps_done} steps)")


def _run_eval(
    model: Any,
    processor: Any,
    items: list,
    ecfg: Any,
    conds: list[str],
    d: Path,
    task: Task,
    view: GridView,
    timing: Timing,
) -> None:
    """Evaluate condition by condition (evaluate() keeps the finished ones), so the view can name
    the cell in progress; records.jsonl holds all conditions after the last call."""
    for k, cond in enumerate(conds):
        who = MODEL_LABELS.get(task.model, task.model)  # GRPO-BI, as the report names it
        view.show(f"{who} model, {task.target.dirname}, under {cond} ({len(items)} items)")
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
    """results.json's content (without timing) from the records in out/eval: the grid's models,
    then the models imported into the folder (runfolder.imported_models) whose evaluations are
    finished."""
    imported = runfolder.read_imported(out)
    extra = runfolder.imported_models(out)
    summaries: dict[tuple[str, str], dict] = {}
    rows = []
    for c in cells(cfg, extra):
        tdir = f"{c.benchmark}-{c.split}"
        key = (c.train, tdir)
        if key not in summaries:
            d = runfolder.eval_dir(out, c.train, tdir)
            if not (d / runfolder.RECORDS_FILE).is_file():
                again = (
                    f"rerun `hallucue-mlx import --name {c.train} --into {out}` with its --model"
                    if c.train in extra
                    else "rerun the grid"
                )
                raise GridError(f"no evaluation records in {d}; {again} to finish it")
            recs = load_records(d)
            summaries[key] = summarize(recs)
            for cond, w in unchanged_corruptions(recs).items():
                summaries[key][cond]["warning"] = w
        s = summaries[key].get(c.eval)
        if s is None:
            raise GridError(f"{runfolder.eval_dir(out, c.train, tdir)} has no {c.eval!r} records")
        row: dict[str, Any] = {"train": c.train, "eval": c.eval, "benchmark": c.benchmark}
        row["split"] = c.split
        row.update({k: s[k] for k in CELL_KEYS})
        row.update({k: s.get(k) for k in EXTRA_KEYS})
        if s.get("warning"):  # a corruption that changed no item
            row["warning"] = s["warning"]
        rows.append(row)
    training = {}
    for cond in trained_models(cfg):
        training[cond] = _training_summary(runfolder.train_dir(out, cond))
    res = {
        "model": cfg.model.id,
        "benchmarks": [s.name for s in cfg.data.eval],
        "train_benchmark": cfg.data.train.name,
        "train_conditions": list(cfg.grid.train_conditions),
        "eval_conditions": list(cfg.grid.eval_conditions),
        "models": models(cfg) + extra,
        "splits": {
            t.dirname: {"benchmark": t.benchmark, "split": t.split, "n": _n(data, t)}
            for t in targets(cfg)
        },
        "config_hash": config_hash(cfg),
        # the models' names in the report (marked when not plain GRPO)
        "labels": {m: model_label(m, cfg.train.drop_zero_std_groups) for m in models(cfg)},
        "cells": rows,
        "training": training,
    }
    if cfg.train.drop_zero_std_groups:
        res["label_note"] = FILTER_NOTE
    if extra:  # only then: a folder without imports keeps its results.json byte for byte
        res["imported"] = {name: imported[name] for name in extra}
    return res


def _n(data: GridData | None, t: Target) -> int | None:
    return len(data.eval_items[t.dirname]) if data is not None else None


def _training_summary(d: Path) -> dict[str, Any]:
    """Steps and the mean of the last 10 steps' reward, accuracy, format, KL, length."""
    p = d / runfolder.METRICS_FILE
    if not p.is_file():
        return {"steps": 0}
    lines = [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]
    steps = [d for d in lines if "event" not in d]
    last = steps[-10:]
    out: dict[str, Any] = {"steps": steps[-1]["step"] if steps else 0}
    warned = [d["warning"] for d in lines if d.get("event") == "warning"]
    if warned:  # e.g. a corruption that changed no training item
        out["warnings"] = list(dict.fromkeys(warned))
    for k in ("reward", "accuracy", "format", "kl", "completions/mean_length"):
        vals = [r[k] for r in last if isinstance(r.get(k), (int, float))]
        out[f"last10/{k}"] = sum(vals) / len(vals) if vals else None
    return out


def write_results(cfg: RunConfig, out: Path, data: GridData, timing: Timing) -> Path:
    """results.json (atomically): the cells plus `timing`, the only wall-clock part."""
    res = results(cfg, out, data)
    res["timing"] = timing.summary()
    path = out / runfolder.RESULTS
    atomic.write_json(path, res, indent=2)
    return path


def _write_report(out: Path, quiet: bool) -> None:
    try:
        path = write_report(out)
    except Exception:
        # results.json is already written: say how to rebuild once the cause is fixed
        print(f"writing the report failed; rebuild it with: hallucue-mlx report {out}")
        raise
    if not quiet:
        print(f"report: {path} and {path.with_suffix('.html')} (one self-contained file)")


__all__ = [
    "BASE",
    "Cell",
    "GridError",
    "GridInterrupted",
    "Target",
    "Task",
    "cells",
    "load_data",
    "models",
    "plan",
    "results",
    "run_grid",
    "targets",
]
