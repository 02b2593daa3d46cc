"""The Python API: what the commands do, as functions for notebooks and scripts.

Every function is a thin wrapper over the module that does the work (named in its docstring) and
is also reachable from the package: `hallucue_mlx.run(...)` is `hallucue_mlx.api.run(...)`.

    import hallucue_mlx as hm

    cfg = hm.load_config(overrides={"train.steps": 20})    # the embedded default, one key changed
    folder = hm.run(cfg, "runs/mine", quick=True)           # the whole grid, its report included
    res = hm.evaluate(n=50, conditions=["none", "blank"])   # the embedded model on synth
    res.by_condition["blank"]["accuracy"]

Settings: `config` is a run config YAML file, a shipped config by name ("paper-qwen25vl-3b"), a
`RunConfig`, or None (the embedded default); `overrides` is a list of "section.key=value" strings
(as `--set` takes them) or a mapping {"section.key": value}. Settings are checked before any model
or data loads.

Errors are exceptions, not exit codes: `ConfigError` (a bad setting, naming the key and the valid
values), `BenchmarkError` (data), `ModelLoadError`, `GridError` (a run folder made with other
settings, or `FolderBusy`: another process writes there), `ReportError`, and from training
`TrainingDiverged` and `ResumeMismatch`. Ctrl-C in `run` raises `GridInterrupted` (or
KeyboardInterrupt); calling `run` again with the same arguments continues where it stopped.

Output folders are the commands' folders and hold the same files, so `hallucue-mlx report DIR`,
`hallucue-mlx run --out DIR` and these functions can continue each other's work.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from hallucue_mlx import atomic
from hallucue_mlx.config import (
    ConfigError,
    EvalConfig,
    RunConfig,
    apply_overrides,
    build,
    dump_yaml,
    eval_config_for,
    from_dict,
    override_strings,
    run_dir,
    to_dict,
    train_config_for,
    validate,
)
from hallucue_mlx.config import load_config as _load_config
from hallucue_mlx.config import quick as _quick
from hallucue_mlx.corrupt import Corruption, CorruptionRecord, apply_one
from hallucue_mlx.data.bench import load_benchmark as _load_benchmark
from hallucue_mlx.data.common import BenchmarkError
from hallucue_mlx.data.item import Item
from hallucue_mlx.distributed import INTERRUPTED, launch_local
from hallucue_mlx.distributed import current as _world
from hallucue_mlx.evaluate import EvalResult, evaluate_benchmark
from hallucue_mlx.gallery import gallery_for, write_gallery
from hallucue_mlx.grid import (
    GridInterrupted,
    load_spec,
    local_processes,
    prepare_run,
    run_grid,
    validation_items,
)
from hallucue_mlx.models.load import ModelLoadError
from hallucue_mlx.models.load import load_model as _load_model
from hallucue_mlx.prompts import resolve_template
from hallucue_mlx.report import ReportError, write_report
from hallucue_mlx.report.sweep import is_sweep, write_sweep_report
from hallucue_mlx.rewards import check_golds
from hallucue_mlx.runfolder import (
    RUN_CONFIG,
    FolderBusy,
    GridError,
    folder_lock,
    latest_checkpoint,
)
from hallucue_mlx.sweep import check_sweep, config_sweep, prepare_sweep, run_sweep
from hallucue_mlx.trackers import mirror, mirror_run, report_targets
from hallucue_mlx.train import ResumeMismatch, TrainingDiverged, TrainResult, check_new_folder
from hallucue_mlx.train import train as _train

Config = str | os.PathLike[str] | RunConfig | None
Overrides = Sequence[str] | Mapping[str, Any] | None

# ================================================================ settings


def load_config(config: Config = None, overrides: Overrides = None) -> RunConfig:
    """The checked run config: `config` (a YAML path, a shipped config's name, a RunConfig, or
    None for the embedded default) with `overrides` applied (config.load_config).

    `overrides` is a list of "section.key=value" strings, exactly as `hallucue-mlx run --set`
    takes them (values are YAML), or a mapping {"section.key": value} with Python values; a
    mapping is turned into those strings, so its checks and error messages are the same.

        >>> cfg = load_config(overrides={"train.steps": 20, "grid.eval_conditions": ["none", "blank"]})
        >>> cfg.train.steps, cfg.grid.eval_conditions
        (20, ['none', 'blank'])

    Raises ConfigError naming the key and the valid values or keys.
    """
    if not isinstance(config, RunConfig):
        return _load_config(config, overrides)
    sets = override_strings(overrides)
    if not sets:
        validate(config)
        return config
    try:
        return from_dict(apply_overrides(to_dict(config), sets))
    except ConfigError as e:
        raise ConfigError(f"the given RunConfig with --set {' '.join(sets)}: {e}", e.key) from None


@contextmanager
def _writing(folder: Path, call: str) -> Iterator[Path]:
    """One writer per output folder, as with the commands (runfolder.folder_lock); under several
    processes (mlx.launch) rank 0, the one that writes, holds it."""
    if not _world().is_main:
        yield folder
        return
    with folder_lock(folder, f"python: hallucue_mlx.{call}"):
        yield folder


# ================================================================ the grid


def run(
    config: Config = None,
    out: str | os.PathLike[str] | None = None,
    *,
    overrides: Overrides = None,
    quick: bool = False,
    force: bool = False,
    quiet: bool = False,
    report_to: str | Sequence[str] | None = None,
) -> Path:
    """Run (or continue) the whole comparison grid and write its report, as `hallucue-mlx run`
    does (grid.run_grid); returns the run folder. report_to: "tensorboard" and/or "wandb" to
    mirror every training's metrics there too (trackers.mirror_run; `--report-to`).

    out: the run folder (default: the config's output.dir, plus "-quick" with quick). Calling
    again with the same folder skips finished cells and continues an interrupted training; a
    folder made with other settings is refused (GridError) unless force, which clears the run's
    own files first. quick: a smoke run (a few steps and items, every cell still run). quiet:
    no live view or printed tables. On a CPU it runs as `grid.processes` processes, as the
    command does (one per core by default), their output copied to sys.stdout (sys.stderr's
    only, with quiet); the same results as one process.

    The folder holds results.json (every cell: accuracy, CI, ...), report.md, figures/, tables/,
    train/<condition>/ (metrics, adapter) and eval/<model>/<benchmark>-<split>/ (records).

        >>> folder = run(overrides={"grid.train_conditions": ["none", "blank"]}, quick=True)
        >>> (folder / "report.md").is_file()
        True
    """
    cfg = load_config(config, overrides)
    folder = Path(out) if out is not None else run_dir(cfg, quick)
    asked = config_sweep(cfg)
    targets = report_targets(report_to)
    n = local_processes(_quick(cfg) if quick else cfg)
    if n > 1:
        return _run_processes(cfg, folder, n, quick, force, quiet, targets, asked)
    with _writing(folder, "run"), mirror_run(folder, targets if _world().is_main else ()):
        if asked is None:
            run_grid(cfg, folder, quick=quick, force=force, quiet=quiet)
        else:  # grid.ratios / grid.seeds: a sweep, as `hallucue-mlx run` does
            run_sweep(cfg, *asked, folder, quick=quick, force=force, quiet=quiet)
    return folder


def _run_processes(
    cfg: RunConfig,
    folder: Path,
    n: int,
    quick: bool,
    force: bool,
    quiet: bool,
    targets: tuple[str, ...],
    asked: tuple[str, list[Any]] | None = None,
) -> Path:
    """`run` as n processes on this machine (grid.processes), as `hallucue-mlx run` does: the
    folder checked and prepared here (errors are this call's exceptions; asked: the config's
    sweep), then the command on the resolved config, kept in the folder (runfolder.RUN_CONFIG,
    so the command the processes print to continue a stopped run works), its output copied to
    sys.stdout for a notebook."""
    with _writing(folder, "sweep" if asked else "run"):
        if asked:
            prepare_sweep(cfg, *asked, folder, quick, force=force)
        else:
            prepare_run(cfg, folder, quick, force=force)
        path = folder / RUN_CONFIG
        atomic.write_text(path, dump_yaml(cfg, comments=False))
    cmd = [sys.executable, "-m", "hallucue_mlx.cli", "run", "--config", str(path)]
    cmd += ["--out", str(folder), *(["--quick"] if quick else [])]
    cmd += ["--report-to", ",".join(targets)] if targets else []
    status = launch_local(cmd, n, output=sys.stderr if quiet else sys.stdout, quiet=quiet)
    if status == INTERRUPTED:
        raise GridInterrupted(
            f"stopped; finished cells and checkpoints are kept in {folder}: call run again to continue"
        )
    if status:
        raise GridError(
            f"the run's {n} processes stopped (exit status {status}; the error is above); "
            f"finished cells are kept in {folder}: call run again to continue"
        )
    return folder


def sweep(
    config: Config = None,
    key: str = "grid.ratio",
    values: Sequence[Any] = (0.25, 0.5, 1.0),
    out: str | os.PathLike[str] | None = None,
    *,
    overrides: Overrides = None,
    quick: bool = False,
    force: bool = False,
    quiet: bool = False,
) -> Path:
    """Run (or continue) the grid once per value of one config key and write the dose-response
    report, as `hallucue-mlx sweep KEY=V1,V2,...` does (sweep.run_sweep); returns the sweep
    folder.

    key: any key but output.* and the grid's lists (e.g. "train.beta", "train.num_generations",
    "grid.ratio"); values: at least two. out: default the config's output.dir plus
    "-sweep-<key>" (and "-quick"). Each value gets an ordinary run folder `<key>=<value>/`; a
    model whose recipe the key does not change (the base for a training key; clean GRPO in a
    ratio sweep) is computed once and copied. The folder holds sweep.json, report.md,
    report.html, figures/dose_response.png and tables/dose_response.csv|md.

        >>> folder = sweep(key="train.beta", values=[0.0, 0.1], quick=True)
        >>> (folder / "figures" / "dose_response.png").is_file()
        True
    """
    cfg = load_config(config, overrides)
    values = list(values)
    check_sweep(key, values)
    folder = (
        Path(out)
        if out is not None
        else Path(f"{cfg.output.dir}-sweep-{key}" + ("-quick" if quick else ""))
    )
    with _writing(folder, "sweep"):
        run_sweep(cfg, key, values, folder, quick=quick, force=force, quiet=quiet)
    return folder


# ================================================================ one training


def _train_dir(condition: str, quick: bool) -> Path:
    """train's folder when none is given: runs/train/<condition> (plus "-quick"), apart from
    any run folder, whose trainings `run` keeps track of itself."""
    return Path("runs/train") / (condition + ("-quick" if quick else ""))


def training_items(cfg: RunConfig) -> tuple[list[Item], list[Item]]:
    """What a training of `cfg`'s grid trains on and evaluates during training: data.train as
    `run` loads it (the same seeded subset, local copies included), and the held-out validation
    items of the periodic evaluation (grid.validation_items: never the test split)."""
    spec = cfg.data.train
    items = load_spec(spec, spec.split or "train", "data.train", cfg.data.seed)
    if not items:
        raise GridError(f"data.train: {spec.name}/{spec.split or 'train'} has no items")
    return items, validation_items(cfg)


def train(
    config: Config = None,
    condition: str = "none",
    out: str | os.PathLike[str] | None = None,
    *,
    overrides: Overrides = None,
    quick: bool = False,
    resume: bool = True,
    force: bool = False,
    quiet: bool = False,
    report_to: str | Sequence[str] | None = None,
) -> TrainResult:
    """One LoRA GRPO training of the grid's recipe under one corruption (train.train with
    config.train_config_for): the run config's model, data, seed and train section, training
    under `condition` (none, blank, random or text_removal; grid.ratio of the items), with the
    same training and held-out items as `run` uses.

    out: the training folder (default: runs/train/<condition>, plus "-quick" with quick).
    resume: continue from the folder's last checkpoint if it has one (settings must match, or
    ResumeMismatch); without resume, a folder that already holds a training is refused
    (GridError) unless force, which clears what training wrote there. quick: the smoke-run
    version of the config (config.quick). report_to: "tensorboard" and/or "wandb" to mirror the
    metrics there too (`--report-to`).

    Returns a TrainResult: out_dir; adapter_dir (the LoRA adapter, for evaluate(adapter=...) and
    load_model(adapter=...); None if the run stopped early); steps_done; interrupted (stopped by
    Ctrl-C with a checkpoint: call again to continue); time_up (stopped by train.max_minutes,
    adapter saved); last_metrics (the last step's record: reward, loss, KL, ...); evals (the
    periodic held-out evaluations). The folder also holds metrics.jsonl, rollouts.jsonl,
    checkpoints/ and train_config.json.

        >>> result = train(condition="blank", quick=True)
        >>> result.steps_done, result.adapter_dir.name
        (2, 'adapter')
    """
    cfg = load_config(config, overrides)
    if quick:
        cfg = _quick(cfg)
    tcfg = train_config_for(cfg, condition)
    tcfg.validate()
    folder = Path(out) if out is not None else _train_dir(condition, quick)
    targets = report_targets(report_to)
    items, held_out = training_items(cfg)
    world = _world()

    def check() -> bool:
        again = resume and latest_checkpoint(folder) is not None
        if not again:
            check_new_folder(folder, False, force)
        return again

    with _writing(folder, "train"):
        again = world.on_main(check, "checking the training folder")
        with mirror(folder, targets, world) as sync:
            return _train(
                tcfg,
                out_dir=folder,
                resume=again,
                quiet=quiet,
                items=items,
                eval_items=held_out,
                on_step=lambda step, rec: sync(),
            )


# ================================================================ evaluation


def _eval_config(config: EvalConfig | Config | Mapping[str, Any], model: str) -> EvalConfig:
    """The EvalConfig of `evaluate`: the prompt template follows the model evaluated."""
    if isinstance(config, EvalConfig):
        return config
    if isinstance(config, Mapping):
        data = dict(config)
        data["template"] = resolve_template(data.get("template", "auto"), model)
        return build(EvalConfig, data, "eval")
    if config is None:
        return EvalConfig(template=resolve_template("auto", model))
    cfg = load_config(config)
    return replace(
        eval_config_for(cfg), template=resolve_template(cfg.train.prompt_template, model)
    )


def evaluate(
    model: str | os.PathLike[str] = "hallucue-tiny",
    *,
    adapter: str | os.PathLike[str] | None = None,
    benchmark: str = "synth",
    split: str | None = None,
    n: int | None = None,
    conditions: Sequence[str] | str | None = None,
    out: str | os.PathLike[str] | None = None,
    config: EvalConfig | Config | Mapping[str, Any] = None,
    path: str | None = None,
    quiet: bool = False,
) -> EvalResult:
    """Evaluate a model (and LoRA adapter) on a benchmark under each corruption, as
    `hallucue-mlx eval` does (evaluate.evaluate_benchmark).

    model: the embedded "hallucue-tiny", a local directory or a Hugging Face id. split: default
    the benchmark's evaluation split. n: a seeded stratified subset of n items (default: all).
    conditions: default every corruption (none, blank, random, text_removal), or the config's.
    out: a folder for records.jsonl and summary.json (default: none, nothing is written); a
    rerun with the same folder and settings reuses its finished conditions. path: a local copy
    of the benchmark. config: the decoding settings: None (EvalConfig's defaults), an
    EvalConfig, a mapping of its fields ({"max_tokens": 32}), or a run config (as load_config
    takes it) whose eval section and grid.eval_conditions are used; unless given, the prompt
    template is the one the model expects ("short-decline" for hallucue-tiny, else "easyr1"). quiet:
    no progress bar or printed table.

    Returns an EvalResult: by_condition ({condition: summary}, in order), where a summary holds
    n, accuracy, ci95 (Wilson 95%), format_rate, mean_response_tokens, truncated_rate,
    grader_errors, by_version, by_task, chance, corruption_applied_rate and
    corruption_changed_rate; summary (the same plus "diagnostics": vision gain, text gain,
    hallucination rate, and "meta"); records (one dict per item x condition x sample: id,
    corruption, response, extracted, correct, ...); out_dir; seconds.

        >>> res = evaluate(n=20, conditions=["none", "blank"], quiet=True)
        >>> sorted(res.by_condition), res.by_condition["none"]["n"]
        (['blank', 'none'], 20)
    """
    model = str(model)
    ecfg = _eval_config(config, model)
    if conditions is not None:
        ecfg = replace(ecfg, conditions=conditions)
    args: dict[str, Any] = dict(
        adapter=None if adapter is None else str(adapter),
        split=split,
        data=path,
        n=n,
        progress=not quiet,
    )
    if out is None:
        return evaluate_benchmark(model, benchmark, ecfg, **args)
    with _writing(Path(out), "evaluate") as folder:
        return evaluate_benchmark(model, benchmark, ecfg, out_dir=folder, **args)


# ================================================================ data, corruptions, models


def load_benchmark(
    name: str = "synth",
    split: str | None = None,
    *,
    n: int | None = None,
    path: str | None = None,
    seed: int = 0,
) -> list[Item]:
    """Items of a benchmark split (data.bench.load_benchmark), their gold answers checked as
    every command checks them (rewards.check_golds).

    name: synth (generated, offline), geometry3k, mathverse, mathvista, mathvision, wemath or
    local (see `hallucue-mlx data list`). split: default the benchmark's evaluation split
    ("test" for synth). n: a seeded subset of n items, stratified by question type and version
    (default: all). path: a local copy (a `hallucue-mlx data prepare` folder, a save_to_disk
    folder, parquet or json). Each Item has id, question, answer, image (PIL), choices, task,
    version, ...

        >>> items = load_benchmark("synth", "test", n=4)
        >>> len(items), items[0].image.size
        (4, (112, 112))
    """
    items = _load_benchmark(name, split, path=path, n=n, seed=seed)
    check_golds(items, path or "")
    return items


def corrupt(
    item: Item, condition: str, *, seed: int = 0, donors: Sequence[Item] | None = None
) -> tuple[Item, CorruptionRecord]:
    """One item under one corruption (corrupt.apply_one): (the item as the model would see it,
    the record of what changed).

    condition: none, blank (a white image of the same size), random (another item's image,
    chosen by `seed` from `donors`, the pool the item belongs to: without donors there is no
    other image and the item stays unchanged) or text_removal (the conditions cut from the
    question). The record has applied, changed and detail (the donor, the removed text, or why
    nothing changed). Pools and corruption ratios: corrupt.apply.

        >>> item = load_benchmark("synth", n=1)[0]
        >>> shown, record = corrupt(item, "blank")
        >>> record.changed, shown.image.getextrema()
        (True, ((255, 255), (255, 255), (255, 255)))
    """
    return apply_one(item, Corruption(condition, seed=seed), donors or ())


def gallery(
    items: str | Sequence[Item] = "synth",
    out: str | os.PathLike[str] = "gallery.png",
    *,
    n: int = 6,
    seed: int = 0,
    split: str | None = None,
    path: str | None = None,
) -> Path:
    """A PNG of items (rows) under every corruption (columns), as `hallucue-mlx corrupt` writes
    it (gallery.gallery_for / write_gallery); returns its path.

    items: a benchmark name (then n, split and path pick a seeded subset, as load_benchmark) or
    a list of Items (shown as given; seed picks the random-image donors among them).

        >>> gallery("synth", "gallery.png", n=3)
        PosixPath('gallery.png')
    """
    if isinstance(items, str):
        return gallery_for(items, out, n=n, seed=seed, split=split, path=path)
    return write_gallery(list(items), out, seed=seed)


def load_model(
    model: str | os.PathLike[str] = "hallucue-tiny",
    *,
    adapter: str | os.PathLike[str] | None = None,
    dtype: str = "auto",
) -> tuple[Any, Any]:
    """(model, processor) as mlx-vlm loads them (models.load.load_model): the embedded
    "hallucue-tiny", a local directory or a Hugging Face id, with an optional LoRA adapter
    folder (TrainResult.adapter_dir, or <run>/train/<condition>/adapter). dtype: auto (float32
    on CPU, bfloat16 on Metal/CUDA), float32, bfloat16 or float16. Raises ModelLoadError.

        >>> model, processor = load_model()
        >>> from hallucue_mlx.forward import encode_prompt
        >>> from hallucue_mlx.rollout import generate
        >>> prompt = encode_prompt(processor, model, load_benchmark(n=1)[0], template="short")
        >>> generate(model, processor, [prompt], max_tokens=48)[0][0].text
        '<think>The triangle is yellow.</think> \\boxed{yellow}'
    """
    return _load_model(model, adapter, dtype=dtype)


# ================================================================ the report


def report(run_dir: str | os.PathLike[str]) -> Path:
    """Rebuild report.md, report.html, figures/ and tables/ of a run folder (or a sweep folder)
    from its records, as `hallucue-mlx report` does (report.write_report,
    report.sweep.write_sweep_report); works on a partial run too; returns report.md's path.
    Raises ReportError for a folder that is neither.

        >>> report("runs/default")
        PosixPath('runs/default/report.md')
    """
    folder = Path(run_dir)
    return write_sweep_report(folder) if is_sweep(folder) else write_report(folder)


__all__ = [
    "BenchmarkError",
    "ConfigError",
    "CorruptionRecord",
    "EvalConfig",
    "EvalResult",
    "FolderBusy",
    "GridError",
    "GridInterrupted",
    "Item",
    "ModelLoadError",
    "ReportError",
    "ResumeMismatch",
    "RunConfig",
    "TrainResult",
    "TrainingDiverged",
    "corrupt",
    "evaluate",
    "gallery",
    "load_benchmark",
    "load_config",
    "load_model",
    "report",
    "run",
    "sweep",
    "train",
]
