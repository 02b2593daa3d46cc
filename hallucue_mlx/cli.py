"""The `hallucue-mlx` command: parses arguments, loads config, calls into the library. Nothing else."""

from __future__ import annotations

import errno
import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from hallucue_mlx.config import (
    ConfigError,
    EvalConfig,
    Setting,
    TrainConfig,
    apply_overrides,
    build,
    default_config_path,
    dump_yaml,
    eval_config_for,
    from_dict,
    load_config,
    load_yaml,
    override_strings,
    resolve_config_path,
    run_dir,
    settings,
    to_dict,
    train_config_for,
)
from hallucue_mlx.config import quick as quick_config
from hallucue_mlx.prompts import resolve_template
from hallucue_mlx.trackers import mirror, mirror_run, report_targets

# Options several commands share (typer reads them; one definition keeps their help in step).
CONFIG_OPTION = typer.Option(
    None,
    "--config",
    help="Run config YAML, or a shipped one by name (default: the packaged default.yaml).",
)
SET_OPTION = typer.Option(
    [], "--set", help="Override a config key: section.key=value (YAML value), repeatable."
)
REPORT_TO_OPTION = typer.Option(
    None,
    "--report-to",
    help="Also log training metrics to tensorboard or wandb (comma-separated; TRL's names), "
    'beside metrics.jsonl. Optional extras: pip install -e ".[tensorboard]" or ".[wandb]".',
)

# Placeholders of option values in --help: click's plain words, not typer's <list[str]>.
_PLACEHOLDERS = {"int": "INTEGER", "float": "FLOAT", "str": "TEXT", "bool": "BOOLEAN"}


def _placeholder(self: Any, ctx: Any) -> str:
    desc = self.type_descriptor
    if desc.is_path:
        return "PATH"
    if desc.is_list:
        return "TEXT"
    return _PLACEHOLDERS.get(self.bare_type(), self.bare_type().upper())


typer.core.TyperOption.display_type = _placeholder  # type: ignore[method-assign]

# ================================================================ the error boundary

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def _rerun() -> str:
    import shlex
    import sys

    return "hallucue-mlx " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def os_error_message(e: OSError) -> str:
    """One line for an OSError that reached the command: what failed, what to do, how to go on."""
    what = e.filename or "a file"
    if e.errno in _DISK_FULL:
        fix = f"the disk holding {what} is full: free space there (or pass --out on another disk)"
    elif e.errno in _NOT_WRITABLE:
        fix = f"{what} cannot be written ({e.strerror}): pass a writable --out, or fix its permissions"
    else:
        fix = f"{e.strerror or e} ({what}): check that path"
    return f"error: {fix}; files already written are kept. Continue with: {_rerun()}"


def user_error(e: Exception) -> tuple[int, str] | None:
    """(exit code, one line) for a user or environment error no command handled itself: 2 for a
    bad setting, 1 for data, a model, a report, the file system or a lost rank; None for
    anything else."""
    import sys

    # first, before the slow imports below (the launcher may stop this rank at any moment), and
    # only if the module is loaded (it loads MLX; its errors cannot come from elsewhere)
    dist = sys.modules.get("hallucue_mlx.distributed")
    if dist is not None and isinstance(e, (dist.PeerLost, dist.Terminated)):
        return 1, f"error: {e}. Finished work and the last checkpoint are kept; {_RERUN_RANKS}"
    if dist is not None and isinstance(e, dist.MainFailed):
        return 1, f"error: {e}"
    lora = sys.modules.get("hallucue_mlx.models.lora")
    if lora is not None and isinstance(e, lora.BadAdapterWeights):
        return 1, f"error: {e}"

    from hallucue_mlx.data.common import BenchmarkError
    from hallucue_mlx.models.load import ModelLoadError
    from hallucue_mlx.report.load import ReportError
    from hallucue_mlx.runfolder import GridError

    if isinstance(e, ConfigError):
        return 2, f"error: {e}"
    from hallucue_mlx.safefile import FileKindError

    if isinstance(e, (BenchmarkError, ModelLoadError, ReportError, GridError, FileKindError)):
        return 1, f"error: {e}"
    if isinstance(e, OSError):
        return 1, os_error_message(e)
    return None


_RERUN_RANKS = (
    "rerun the same command (under mlx.launch with any number of ranks that divides "
    "train.prompts_per_step, or in one process; train needs --resume) to continue from there"
)


def _world() -> Any:
    """This process's distributed.World (mx.distributed.init() only when launched by
    mlx.launch); under several ranks, SIGTERM makes a rank say why it stopped."""
    from hallucue_mlx.distributed import current, stop_on_sigterm, watch_launcher

    world = current()
    stop_on_sigterm(world)
    watch_launcher()
    return world


def _main_lock(world: Any, out: Path, command: str) -> Any:
    """The output folder's lock, held by rank 0 alone: the only rank that writes shared files."""
    from contextlib import nullcontext

    from hallucue_mlx.runfolder import folder_lock

    return folder_lock(out, command) if world.is_main else nullcontext(out)


def _boundary(fn: Callable[..., None]) -> Callable[..., None]:
    """Run a command so that user and environment errors end in one line, never a traceback."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> None:
        try:
            return fn(*args, **kwargs)
        except (ConfigError, OSError, ValueError, RuntimeError) as e:
            known = None if isinstance(e, typer.Exit) else user_error(e)
            if known is None:
                raise
            typer.echo(known[1], err=True)
            raise typer.Exit(known[0]) from None

    return wrapped


# The commands in the order a newcomer meets them (click lists them alphabetically otherwise).
ORDER = (
    "run",
    "sweep",
    "train",
    "eval",
    "report",
    "plan",
    "corrupt",
    "import",
    "export",
    "data",
    "model",
    "doctor",
)


class _Group(typer.core.TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))


class _Typer(typer.Typer):
    """typer.Typer whose commands run inside the error boundary. Help and usage errors are
    click's plain text (no boxes, full-width help, standard placeholders such as INTEGER)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cls=_Group, rich_markup_mode=None, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., None]], Any]:
        register = super().command(*args, **kwargs)
        return lambda fn: register(_boundary(fn))


app = _Typer(
    help="Hallucination-as-Cue on MLX: GRPO of small VLMs under blank-image, random-image and "
    "text-removal corruptions, and evaluation under the same corruptions. Start with "
    "`hallucue-mlx run --quick` (a few minutes), then `hallucue-mlx run` (the whole default "
    "comparison; `hallucue-mlx plan` predicts its time first).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"max_content_width": 120},
)
data_app = _Typer(
    help="List benchmarks and cache compact subsets for offline runs.", no_args_is_help=True
)
model_app = _Typer(
    help="The embedded model hallucue-tiny: where it is, how to rebuild it.", no_args_is_help=True
)
export_app = _Typer(
    help="Export the experiment to other training frameworks (EasyR1, for the paper's GPU scale).",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data", short_help="List benchmarks; cache subsets for offline runs.")
app.add_typer(model_app, name="model", short_help="Where the embedded model is; rebuild it.")
app.add_typer(export_app, name="export", short_help="The experiment in EasyR1's formats (GPUs).")


@app.command(short_help="Versions, backend, device, BLAS speed; a config's speed problems.")
def doctor(
    reps: int = typer.Option(3, min=1, help="Timed repetitions of the 1024^3 matmul (>= 1)."),
    config: str | None = typer.Option(
        None,
        "--config",
        help="Also check this run config's model (a YAML file or a shipped config's name): "
        "e.g. whether its weights are quantized while MLX runs on the CPU.",
    ),
    set_: list[str] = SET_OPTION,
) -> None:
    """Print versions, the MLX backend and device, measured matmul speeds, and (with --config)
    whether the config's model would crawl here."""
    from hallucue_mlx.backend import diagnose, print_diagnosis, quantized_cpu_warning

    cfg = None if config is None and not set_ else load_config(config, set_)  # errors first
    d = diagnose(reps=reps)
    print_diagnosis(d)
    if cfg is None:
        return
    from hallucue_mlx.plan import PlanError, quantized_bits

    try:
        bits = quantized_bits(cfg.model.id)
    except PlanError as e:
        typer.echo(f"model {cfg.model.id}: cannot read its config ({e})")
        return
    if bits and d.backend == "cpu":
        typer.secho(quantized_cpu_warning(bits, d.quant_gflops), fg="yellow")
    else:
        weights = f"{bits}-bit" if bits else "unquantized"
        typer.echo(
            f"model {cfg.model.id}: {weights} weights on {d.backend}: no speed problem known."
        )


def _image_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give WIDTHxHEIGHT in pixels, e.g. 800x600") from None
    if w < 1 or h < 1:
        raise typer.BadParameter(f"{text!r}: width and height must be positive")
    return w, h


@app.command(short_help="Predict a config's memory and total time before running it.")
def plan(
    config: str | None = CONFIG_OPTION,
    set_: list[str] = SET_OPTION,
    memory: float | None = typer.Option(
        None,
        "--memory",
        min=0.5,
        help="The machine's memory in GB (default: the chip's smallest, or this machine's RAM).",
    ),
    chip: str | None = typer.Option(
        None,
        "--chip",
        help="Plan for an Apple chip: M1, M2, M3, M4, each also Pro, Max, Ultra (e.g. 'M3 Pro'); "
        "default: this machine.",
    ),
    image: str | None = typer.Option(
        None,
        "--image",
        help="A typical image as WIDTHxHEIGHT (default: synth's 112x112, else 800x600).",
    ),
    prompt_tokens: int | None = typer.Option(
        None,
        "--prompt-tokens",
        min=1,
        help="Prompt text tokens besides the image (default: 90 for synth, else 250).",
    ),
) -> None:
    """Predict peak memory and time of a run config before running it: whether it fits this
    machine (or --chip / --memory), which keys to change if not, the time per GRPO step and per
    evaluation item, and the whole run's total. Exit code 1 when it does not fit."""
    from hallucue_mlx.plan import GB, PlanError, make_plan, render, render_total, this_machine

    cfg = load_config(config, set_)
    size = _image_size(image)
    try:
        result = make_plan(
            cfg,
            chip_name=chip,
            memory_gb=memory,
            image=size,
            text_tokens=prompt_tokens,
            here=this_machine(),
        )
    except PlanError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    render(result)
    render_total(result, cfg)
    n = 1
    if chip is None:  # this machine: the plan's own peak decides, as it would for `run`
        from hallucue_mlx.grid import local_processes

        peak = max(result.mem.train_peak, result.mem.eval_peak) / GB
        n = local_processes(cfg, peak_gb=peak, usable_gb=result.usable_gb)
    if n > 1:  # the totals above are one process's; `run` spreads them over n
        typer.echo(
            f"  Here `hallucue-mlx run` starts {n} processes (grid.processes), one per core: "
            f"the wall clock is about 1/{n} of the total above (the default run: 17 min of work "
            "in 10 min on an idle 2-core x86-64 CPU)."
        )
    if not result.fits:
        raise typer.Exit(1)


@app.command(short_help="The whole train x eval grid and its report (start here).")
def run(
    config: str | None = CONFIG_OPTION,
    set_: list[str] = SET_OPTION,
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Run folder (default: the config's output.dir; with --quick, that plus -quick). Rerunning continues it.",
    ),
    quick: bool = typer.Option(
        False, "--quick", help="Smoke run: a few steps and items, every cell still run."
    ),
    force: bool = typer.Option(
        False, "--force", help="Discard earlier results in the run folder and start over."
    ),
    print_config: bool = typer.Option(
        False, "--print-config", help="Print the resolved config with every key's help, then exit."
    ),
    seeds: int | None = typer.Option(
        None,
        "--seeds",
        min=1,
        help="Train every condition under N seeds (grid.seeds): a report with across-seed "
        "means and intervals covering seeds and items.",
    ),
    report_to: str | None = REPORT_TO_OPTION,
) -> None:
    """Run the whole comparison grid (train under each corruption x evaluate under each) and report."""
    import shlex
    import sys

    try:
        cfg = load_config(config, [*set_, *([f"grid.seeds={seeds}"] if seeds else [])])
        trackers = report_targets(report_to)
        if print_config:
            typer.echo(dump_yaml(quick_config(cfg) if quick else cfg), nl=False)
            return
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    out = out or run_dir(cfg, quick)
    again = "hallucue-mlx run " + " ".join(shlex.quote(a) for a in sys.argv[2:] if a != "--force")
    n = _local_processes(cfg, quick)
    if n > 1:  # the same command as n processes (args as parsed: this may run inside a test);
        # --force is applied once, here, before they start
        args = ["run", *(["--config", config] if config else [])]
        args += [a for s in set_ for a in ("--set", s)]
        args += (["--quick"] if quick else []) + (["--seeds", str(seeds)] if seeds else [])
        args += ["--report-to", report_to] if report_to else []
        _run_or_sweep(cfg, out, quick, force, again, None, trackers, (n, args))
        return
    _run_or_sweep(cfg, out, quick, force, again, None, trackers)


def _local_processes(cfg: Any, quick: bool) -> int:
    """How many processes this `run` starts (grid.local_processes)."""
    from hallucue_mlx.grid import local_processes

    return local_processes(quick_config(cfg) if quick else cfg)


def _launch_ranks(
    cfg: Any,
    out: Path,
    quick: bool,
    force: bool,
    sweep: tuple[str, list] | None,
    n: int,
    args: list[str],
) -> int:
    """`hallucue-mlx ARGS --out OUT` as n ranks on this machine, each computing whole models (of
    each value's grid, value after value, for a sweep), once the folder is checked and prepared
    here (one error, not one per process)."""
    import sys

    from hallucue_mlx.distributed import launch_local
    from hallucue_mlx.grid import models, owners, prepare_run
    from hallucue_mlx.runfolder import folder_lock
    from hallucue_mlx.sweep import prepare_sweep, single

    one = single(cfg)  # a sweep's value grid: the models are dealt the same way in each
    own = owners(one, n)
    deal = "; ".join(
        f"process {r}: {', '.join(m for m in models(one) if own[m] == r)}" for r in range(n)
    )
    each = f", for each {sweep[0]} in turn" if sweep else ""
    with folder_lock(out, _command("sweep" if sweep else "run")):
        if sweep:
            prepare_sweep(cfg, sweep[0], sweep[1], out, quick, force=force)
        else:
            prepare_run(cfg, out, quick, force=force)
    typer.echo(  # once the folder is good: a refused folder is the only line
        f"{n} processes on this machine's cores (grid.processes; --set grid.processes=1 for "
        f"one), each computing whole models into {out}: {deal}{each}. Progress below is "
        "process 0's.",
        err=True,
    )
    return launch_local([sys.executable, "-m", "hallucue_mlx.cli", *args, "--out", str(out)], n)


def _run_or_sweep(
    cfg: Any,
    out: Path,
    quick: bool,
    force: bool,
    again: str,
    sweep: tuple[str, list] | None,
    trackers: tuple[str, ...] = (),
    launch: tuple[int, list[str]] | None = None,
) -> None:
    """The grid (or a sweep: given, or grid.ratios / grid.seeds), with the errors a run can end
    in; launch=(n, args): the grid as n local processes running `hallucue-mlx ARGS`."""
    from hallucue_mlx.data.bench import BenchmarkError
    from hallucue_mlx.grid import GridError, GridInterrupted, run_grid
    from hallucue_mlx.models.load import ModelLoadError
    from hallucue_mlx.sweep import config_sweep, run_sweep
    from hallucue_mlx.train import TrainingDiverged

    sweep = sweep or config_sweep(cfg)
    world = _world()
    try:
        if launch is not None:
            status = _launch_ranks(cfg, out, quick, force, sweep, *launch)
            if status:
                raise typer.Exit(status)
            return
        with (
            _main_lock(world, out, _command("sweep" if sweep else "run")),
            mirror_run(out, trackers if world.is_main else ()),
        ):
            if sweep is None:
                run_grid(cfg, out, quick=quick, force=force, world=world)
            else:
                run_sweep(cfg, sweep[0], sweep[1], out, quick=quick, force=force, world=world)
    except (GridInterrupted, KeyboardInterrupt) as e:
        if world.is_main:
            typer.echo(
                f"\nstopped ({str(e) or 'Ctrl-C'}); finished cells and checkpoints are kept in "
                f"{out}. Continue with: {again.strip()}",
                err=True,
            )
        else:  # every rank got the Ctrl-C; rank 0 says how to continue
            typer.echo(f"process {world.rank} stopped ({str(e) or 'Ctrl-C'})", err=True)
        raise typer.Exit(130) from None
    except ModelLoadError as e:
        typer.echo(
            f"error: {e} (in a run config the model is model.id: --set model.id=...)", err=True
        )
        raise typer.Exit(1) from None
    except TrainingDiverged as e:
        typer.echo(
            f"error: {e} Rerunning continues from that checkpoint: {again.strip()}", err=True
        )
        raise typer.Exit(1) from None
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    except (GridError, BenchmarkError, ValueError) as e:
        # ValueError as in eval: an item the model's processor cannot encode, named
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None


@app.command(short_help="The grid once per value of one key; a dose-response report.")
def sweep(
    assignment: str = typer.Argument(
        ...,
        help="KEY=V1,V2,...: one config key and its values, e.g. train.beta=0,0.01,0.1 or "
        "grid.ratio=0.25,0.5,1.0 (values read as YAML).",
    ),
    config: str | None = CONFIG_OPTION,
    set_: list[str] = SET_OPTION,
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Sweep folder (default: the config's output.dir plus -sweep-KEY; with --quick, "
        "plus -quick). Rerunning continues it.",
    ),
    quick: bool = typer.Option(False, "--quick", help="Smoke run of every value's grid."),
    force: bool = typer.Option(
        False, "--force", help="Discard earlier results of this sweep folder and start over."
    ),
    report_to: str | None = REPORT_TO_OPTION,
) -> None:
    """Run the grid once per value of one config key and report accuracy and vision gain
    against the value (a dose-response figure and table); the base model is evaluated once."""
    import shlex
    import sys

    from hallucue_mlx.sweep import check_sweep, parse_assignment, value_configs

    try:
        cfg = load_config(config, set_)
        key, values = parse_assignment(assignment)
        check_sweep(key, values)
        trackers = report_targets(report_to)
        # as many processes as every value's grid allows (a swept key can change the memory)
        n = min(_local_processes(v, quick) for v in value_configs(cfg, key, values))
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    out = out or Path(f"{cfg.output.dir}-sweep-{key}" + ("-quick" if quick else ""))
    again = "hallucue-mlx sweep " + " ".join(shlex.quote(a) for a in sys.argv[2:] if a != "--force")
    launch = None
    if n > 1:  # the same command as n processes; --force is applied once, here
        args = ["sweep", assignment, *(["--config", config] if config else [])]
        args += [a for s in set_ for a in ("--set", s)] + (["--quick"] if quick else [])
        args += ["--report-to", report_to] if report_to else []
        launch = (n, args)
    _run_or_sweep(cfg, out, quick, force, again, (key, values), trackers, launch)


def _command(name: str) -> str:
    """The command line as typed, for the output folder's lock (who holds it)."""
    import shlex
    import sys

    return " ".join(["hallucue-mlx", name, *(shlex.quote(a) for a in sys.argv[2:])])


# ================================================================ flags made from the config fields


def _flag(name: str, renamed: dict[str, str]) -> str:
    return renamed.get(name, "--" + name.replace("_", "-"))


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def _option(s: Setting, flag: str, note: str = "", shown: Any = None) -> inspect.Parameter:
    """A typer option for one config field: its help, choices and default come from the field."""
    help = s.help + note
    if s.choices and not all(c in help for c in s.choices):
        help += f" Choices: {', '.join(s.choices)}."
    help += f" [default: {_shown(s.default if shown is None else shown)}]"
    kind: Any = str if s.kind is list else s.kind
    decl = f"{flag}/--no-{flag[2:]}" if kind is bool else flag
    info = typer.Option(None, decl, help=help, show_default=False)
    return inspect.Parameter(
        s.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=kind | None
    )


def config_flags(
    cls: type,
    renamed: dict[str, str],
    notes: dict[str, str] | None = None,
    defaults: dict[str, Any] | None = None,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command one option per field of settings dataclass `cls` (flag --field-name, or
    `renamed`; `notes` add to a field's help, `defaults` replace the default shown where the
    command resolves its own); the command receives them as **settings, None where not given."""
    notes, defaults = notes or {}, defaults or {}
    options = [
        _option(s, _flag(s.name, renamed), notes.get(s.name, ""), defaults.get(s.name))
        for s in settings(cls)
    ]

    def wrap(fn: Callable[..., None]) -> Callable[..., None]:
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        fn.__signature__ = sig.replace(parameters=own + options)  # type: ignore[attr-defined]
        return fn

    return wrap


def _given(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _bad(
    e: ConfigError, renamed: dict[str, str], flags_given: dict[str, Any]
) -> typer.BadParameter:
    """The error as typer's usage error, naming the flag when a flag set the key."""
    name = (e.key or "").split(".", 1)[-1].split("[")[0]
    hint = _flag(name, renamed) if name in flags_given else None
    return typer.BadParameter(str(e), param_hint=hint)


# ================================================================ train and eval

_TRAIN_FLAGS = {"corruption_ratio": "--ratio"}

# TrainConfig fields that a run config sets outside its train section (config.TRAIN_OWNED and
# the model's image sizes): a flag or a flat key given to `train` lands there, so `train`,
# `hallucue_mlx.train()` and the grid's trainings read one recipe.
_RUN_KEYS = {
    "model": "model.id",
    "dtype": "model.dtype",
    "min_pixels": "model.min_pixels",
    "max_pixels": "model.max_pixels",
    "max_image_pixels": "model.max_image_pixels",
    "benchmark": "data.train.name",
    "train_split": "data.train.split",
    "n_train": "data.train.n",
    "corruption_ratio": "grid.ratio",
    "seed": "seed",
}
_RUN_SECTIONS = {"seed", "model", "data", "train", "eval", "grid", "output"}


def _flat(data: dict[str, Any]) -> bool:
    """Whether a config file is a flat mapping of TrainConfig fields (what train_config.json
    holds) rather than a run config of sections."""
    names = {s.name for s in settings(TrainConfig)}
    if not data or any(isinstance(v, dict) for v in data.values()):
        return False
    return set(data) <= names and not set(data) <= _RUN_SECTIONS


def train_settings(
    config: str | None, sets: list[str], flags: dict[str, Any], quick: bool = False
) -> tuple[Any, TrainConfig]:
    """(run config, TrainConfig) of `hallucue-mlx train`: the run config (--config as `run` takes
    it: a file, a shipped config's name, or the default), then --set (section.key=value as for
    `run`; a bare key=value sets a TrainConfig field), then the flags; the TrainConfig is the
    grid's training of that config under --corruption (config.train_config_for). A flat file
    of TrainConfig fields (a training's train_config.json) is read over the default config."""
    from dataclasses import replace

    path = resolve_config_path(config)
    data = load_yaml(path)
    flat = _flat(data)
    dotted = [kv for kv in sets if "." in kv.split("=", 1)[0]]
    bare = [kv for kv in sets if kv not in dotted]
    given = {**apply_overrides(data if flat else {}, bare, defaults={}), **flags}
    condition = given.pop("corruption", "none")
    eval_split = given.pop("eval_split", None)
    mapped = {_RUN_KEYS.get(k, f"train.{k}"): v for k, v in given.items()}
    try:
        run_data = apply_overrides(
            load_yaml(default_config_path()) if flat else data,
            [*dotted, *override_strings(mapped)],
        )
        cfg = from_dict(run_data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if config is not None else str(e), e.key) from None
    if eval_split is not None:
        cfg = replace(cfg, train=replace(cfg.train, eval_split=eval_split))
    if quick:
        cfg = quick_config(cfg)
    tcfg = train_config_for(cfg, condition)
    tcfg.validate()
    return cfg, tcfg


def _recipe() -> dict[str, Any]:
    """The default config's training recipe: the defaults `train --help` shows."""
    try:
        return to_dict(train_config_for(load_config(None), "none"))
    except ConfigError:  # a broken packaged config: show the fields' own defaults
        return {}


@app.command(short_help="One LoRA GRPO training of the grid's recipe.")
@config_flags(TrainConfig, _TRAIN_FLAGS, defaults=_recipe())
def train(
    config: str | None = CONFIG_OPTION,
    out: Path = typer.Option(
        Path("runs/train"), help="Output folder (metrics, checkpoints, adapter)."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the last checkpoint in --out."
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Clear what train wrote in --out (metrics, rollouts, checkpoints, adapter, "
        "train_config.json, done.json) and start over; other files stay.",
    ),
    quick: bool = typer.Option(
        False, "--quick", help="Smoke run: the quick version of the config (2 steps)."
    ),
    set_: list[str] = typer.Option(
        [],
        "--set",
        help="Override a config key: section.key=value as for `run` (train.steps=20, "
        "model.id=...), or a training key alone (steps=20); YAML value, repeatable.",
    ),
    report_to: str | None = REPORT_TO_OPTION,
    **settings_: Any,
) -> None:
    """One LoRA GRPO training with corruption-aware rollouts: the recipe of `run`'s trainings
    (the default config's, or --config's), under --corruption. Settings: the config < --set <
    flags; the defaults shown are the default config's."""
    import shlex
    import sys

    flags = _given(settings_)
    try:  # every setting is checked before the slow imports and any model or data
        rcfg, cfg = train_settings(config, set_, flags, quick)
        trackers = report_targets(report_to)
    except ConfigError as e:
        raise _bad(e, _TRAIN_FLAGS, flags) from None

    from hallucue_mlx.api import training_items
    from hallucue_mlx.data.bench import BenchmarkError
    from hallucue_mlx.models.load import ModelLoadError
    from hallucue_mlx.runfolder import GridError
    from hallucue_mlx.train import ResumeMismatch, TrainingDiverged, check_new_folder, resume_hint
    from hallucue_mlx.train import train as run_train

    # the same command with --resume: the saved settings win, and --steps etc. stay as given
    again = "hallucue-mlx train " + " ".join(
        shlex.quote(a) for a in sys.argv[2:] if a not in ("--resume", "--force")
    )
    again = f"{again.strip()} --resume" if sys.argv[2:] else resume_hint(out)
    world = _world()
    try:
        with _main_lock(world, out, _command("train")):
            kept = world.on_main(lambda: check_new_folder(out, resume, force), "checking --out")
            if kept and world.is_main:
                typer.echo(f"--force cleared what train wrote in {out}; kept: {', '.join(kept)}")
            items, held_out = training_items(rcfg)
            with mirror(out, trackers, world) as sync:
                result = run_train(
                    cfg,
                    None,
                    out,
                    resume=resume,
                    world=world,
                    items=items,
                    eval_items=held_out,
                    on_step=lambda step, rec: sync(),
                )
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, the last checkpoint stays
        typer.echo(
            f"\nStopped at once (second Ctrl-C); the last checkpoint in {out} is kept. Resume with: {again}",
            err=True,
        )
        raise typer.Exit(130) from None
    except (
        TrainingDiverged,
        ModelLoadError,
        BenchmarkError,
        FileNotFoundError,
        GridError,
        ResumeMismatch,
    ) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    if result.interrupted:
        if world.is_main:
            typer.echo(
                f"Stopped after step {result.steps_done}; checkpoint saved. Resume with: {again}",
                err=True,
            )
        raise typer.Exit(130)
    if world.is_main:
        typer.echo(f"Done: {result.steps_done} steps; adapter in {result.adapter_dir}")


_EVAL_FLAGS = {"conditions": "--corruption", "samples_per_item": "--samples"}
_EVAL_NOTES = {"template": " auto (the default): short for hallucue-tiny, else easyr1."}


@app.command(name="eval", short_help="Evaluate a model (and adapter) under every corruption.")
@config_flags(EvalConfig, _EVAL_FLAGS, _EVAL_NOTES, {"template": "auto"})
def eval_(
    model: str | None = typer.Option(
        None,
        "--model",
        help="Model directory or Hugging Face id (default: --config's model.id, else the "
        "embedded hallucue-tiny).",
    ),
    config: str | None = typer.Option(
        None,
        "--config",
        help="Start from a run config's evaluation settings (its eval section and "
        "grid.eval_conditions) and model: a YAML file or a shipped config's name, as `run` "
        "takes it (default: the flags' own defaults).",
    ),
    set_: list[str] = SET_OPTION,
    adapter: str | None = typer.Option(None, "--adapter", help="LoRA adapter directory to apply."),
    benchmark: str = typer.Option(
        "synth", "--benchmark", "-b", help="Benchmark name (see `data list`)."
    ),
    split: str | None = typer.Option(
        None, "--split", help="Split (default: the benchmark's evaluation split)."
    ),
    data: str | None = typer.Option(
        None, "--data", help="Local copy of the benchmark (folder or file)."
    ),
    n: int | None = typer.Option(
        None, "--n", help="Seeded stratified subset of N items (default: all)."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Output folder (default: runs/eval/<benchmark>-<split>-<model>, plus the --data "
        "copy's name and a digest); reruns resume when the items, weights and settings match.",
    ),
    **settings_: Any,
) -> None:
    """Evaluate a model (and adapter) on a benchmark under each corruption."""
    from hallucue_mlx.data.bench import BenchmarkError, get_adapter
    from hallucue_mlx.evaluate import default_eval_dir, evaluate_benchmark
    from hallucue_mlx.models.load import ModelLoadError
    from hallucue_mlx.runfolder import FolderBusy, folder_lock

    _check_count(n, "--n", "omit it for the whole split")
    flags = _given(settings_)
    template = flags.get("template", "auto")
    try:
        base: dict[str, Any] = {}
        if config is not None or set_:
            run_cfg = load_config(config, set_)
            model = model or run_cfg.model.id
            base = to_dict(eval_config_for(run_cfg))
            base.pop("template")  # the prompt follows the model evaluated, unless given
        model = model or "hallucue-tiny"
        if template == "auto":
            flags["template"] = resolve_template(template, model)
        cfg = build(EvalConfig, {**base, **flags}, "eval")
    except ConfigError as e:
        raise _bad(e, _EVAL_FLAGS, flags) from None
    if _world().distributed:
        typer.echo("error: eval runs in one process; start it without mlx.launch", err=True)
        raise typer.Exit(2)
    try:
        split = split or get_adapter(benchmark).default_split
        out = out or default_eval_dir(benchmark, split, model, data)
        with folder_lock(out, _command("eval")):
            evaluate_benchmark(
                model, benchmark, cfg, adapter=adapter, split=split, data=data, n=n, out_dir=out
            )
    except (BenchmarkError, ModelLoadError, ValueError, FolderBusy) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        import shlex
        import sys

        again = "hallucue-mlx eval " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        typer.echo(
            f"\nstopped (Ctrl-C); finished conditions are kept in {out}. Continue with: {again.strip()}",
            err=True,
        )
        raise typer.Exit(130) from None


@app.command(short_help="A picture of items under every corruption.")
def corrupt(
    benchmark: str = typer.Option(
        "synth", "--benchmark", "-b", help="Benchmark name (see `data list`)."
    ),
    n: int = typer.Option(6, "--n", help="Number of items (rows of the picture)."),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the subset and of the random-image donors."
    ),
    out: Path = typer.Option(Path("gallery.png"), "--out", help="PNG file to write."),
    data: str | None = typer.Option(
        None, "--data", help="Local copy of the benchmark (folder or file)."
    ),
    split: str | None = typer.Option(
        None, "--split", help="Split (default: the benchmark's evaluation split)."
    ),
) -> None:
    """Write a gallery picture of items under every corruption, side by side."""
    from hallucue_mlx.data.bench import BenchmarkError
    from hallucue_mlx.gallery import gallery_for

    _check_count(n, "--n", "omit it for 6 items", most=256)  # rows of one picture
    if out.is_dir():
        raise typer.BadParameter(
            f"{out} is a folder; give a PNG file name, e.g. {out / 'gallery.png'}",
            param_hint="--out",
        )
    try:
        path = gallery_for(benchmark, out, n=n, seed=seed, split=split, path=data)
    except BenchmarkError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {path}")


@app.command(short_help="Rebuild a run folder's report from its records.")
def report(
    run_dir: Path = typer.Argument(
        ..., help="Run folder written by `hallucue-mlx run` (finished or partial)."
    ),
) -> None:
    """Rebuild report.md, report.html and figures of a run folder (or a sweep folder) from its
    records."""
    from hallucue_mlx.report import ReportError, write_report
    from hallucue_mlx.report.sweep import is_sweep, write_sweep_report

    try:
        path = write_sweep_report(run_dir) if is_sweep(run_dir) else write_report(run_dir)
    except ReportError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"wrote {path} and {path.with_suffix('.html')} (figures in {path.parent / 'figures'}, "
        f"tables in {path.parent / 'tables'})"
    )


@app.command(name="import", short_help="A checkpoint trained elsewhere as one more row of a run.")
def import_(
    model: Path = typer.Option(
        ...,
        "--model",
        help="Checkpoint folder: Hugging Face layout (config.json, *.safetensors, tokenizer, "
        "processor and chat-template files; EasyR1: <checkpoint>/actor/huggingface after merging) "
        "or an MLX folder (used as is).",
    ),
    name: str = typer.Option(
        ..., "--name", help="The model's row name in the run's tables and figures, e.g. GRPO-BI-7B."
    ),
    into: Path = typer.Option(..., "--into", help="Run folder written by `hallucue-mlx run`."),
    dtype: str | None = typer.Option(
        None,
        "--dtype",
        help="dtype of the converted weights: float16, bfloat16 or float32 (default: the "
        "checkpoint's torch_dtype).",
    ),
    quantize: int | None = typer.Option(
        None,
        "--quantize",
        help="Quantize the converted weights to this many bits (2, 3, 4, 5, 6 or 8; group size 64).",
    ),
    template: str | None = typer.Option(
        None,
        "--template",
        help="Prompt template to evaluate it with (default: the run's, so every row saw the same "
        "prompt).",
    ),
) -> None:
    """Bring a checkpoint trained elsewhere into a run folder as one more row: converted with
    mlx-vlm, evaluated under every eval condition on the run's items, added to results.json and
    report.md. Rerunning continues it."""
    from hallucue_mlx.importer import import_checkpoint
    from hallucue_mlx.runfolder import folder_lock

    try:
        with folder_lock(into, _command("import")):
            import_checkpoint(into, model, name, dtype=dtype, quantize=quantize, template=template)
    except ConfigError:
        raise  # a bad option: exit 2 at the boundary
    except ValueError as err:
        # a checkpoint that cannot be loaded, an item its processor cannot encode, a changed part
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo(
            f"\nstopped (Ctrl-C); the conversion, once finished, and finished evaluation "
            f"conditions are kept in {into}. Continue with: {_rerun()}",
            err=True,
        )
        raise typer.Exit(130) from None


def _check_count(n: int | None, flag: str, default: str, most: int | None = None) -> None:
    from hallucue_mlx.config import MAX_ITEMS

    most = MAX_ITEMS if most is None else most
    if n is not None and n < 1:
        raise typer.BadParameter(
            f"{n} is invalid; valid: an integer >= 1 ({default})", param_hint=flag
        )
    if n is not None and n > most:
        raise typer.BadParameter(f"{n} is too many; at most {most} ({default})", param_hint=flag)


@data_app.command("list")
def data_list() -> None:
    """List the benchmarks hallucue-mlx can load."""
    from hallucue_mlx.data.bench import print_benchmarks

    print_benchmarks()


@data_app.command("prepare")
def data_prepare(
    benchmark: str = typer.Argument(..., help="Benchmark name (see `data list`)."),
    n: int | None = typer.Option(None, "--n", help="Subset size (default: the whole split)."),
    split: str | None = typer.Option(
        None, "--split", help="Split (default: the benchmark's evaluation split)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the stratified subset."),
    out: Path | None = typer.Option(
        None, "--out", help="Output folder (default: data/<benchmark>-<split>-n<N>-s<seed>)."
    ),
    data: str | None = typer.Option(
        None, "--data", help="Read from a local copy instead of the hub."
    ),
) -> None:
    """Cache a seeded compact subset of a benchmark locally (images included)."""
    from hallucue_mlx.data.bench import BenchmarkError, get_adapter
    from hallucue_mlx.data.prepare import prepare_subset
    from hallucue_mlx.rewards import check_golds

    _check_count(n, "--n", "omit it for the whole split")
    if out is not None and out.exists() and not out.is_dir():
        raise typer.BadParameter(
            f"{out} is a file; give a folder to write the subset into (new or empty)",
            param_hint="--out",
        )
    try:
        split = split or get_adapter(benchmark).default_split
        out = out or Path("data") / f"{benchmark}-{split}-n{n if n is not None else 'all'}-s{seed}"
        manifest = prepare_subset(
            benchmark, n, out, split=split, seed=seed, path=data, check=check_golds
        )
    except BenchmarkError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"wrote {len(manifest.ids)} items of {benchmark}/{split} to {out} "
        f"(content hash {manifest.content_hash[:12]})"
    )


@model_app.command("path")
def model_path() -> None:
    """Print the directory of the shipped hallucue-tiny model."""
    from hallucue_mlx.models import embedded_model_path

    typer.echo(str(embedded_model_path()))


@model_app.command("build-tiny")
def model_build_tiny(
    out: Path = typer.Option(..., help="Output directory for the rebuilt model."),
    seed: int = typer.Option(0, help="Seed of the build (the shipped model uses 0)."),
    max_minutes: float = typer.Option(56.0, help="Wall-clock budget of the warm-up."),
    init: Path | None = typer.Option(
        None,
        help="Continue an earlier build's weights (a model folder of the same shapes and "
        "tokenizer), as the shipped model's second stage did; default: a random start.",
    ),
    settings: list[str] = typer.Option(
        [],
        "--set",
        help="A warm-up setting KEY=VALUE (warmup.WarmupConfig, e.g. skip_share=0.6, "
        "max_steps=600, keep=last), repeatable; a stage's build.json lists the ones it used.",
    ),
) -> None:
    """Rebuild hallucue-tiny deterministically from its seed (about 30-45 min on 2 CPU cores)."""
    import json

    from hallucue_mlx.warmup import WarmupConfig, build_tiny, check_config, warmup_overrides

    try:
        cfg = WarmupConfig(seed=seed, max_minutes=max_minutes, init=str(init) if init else "")
        cfg = warmup_overrides(cfg, settings)
        check_config(cfg)  # before any work: a bad --init says so in one line
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    result = build_tiny(out, cfg, log=typer.echo)
    typer.echo(json.dumps(result["eval"], indent=2))


@export_app.command("easyr1")
def export_easyr1(
    out: Path = typer.Option(
        ..., "--out", help="Folder to write (new or empty; --force replaces an earlier export)."
    ),
    config: str | None = CONFIG_OPTION,
    set_: list[str] = SET_OPTION,
    model: str | None = typer.Option(
        None,
        "--model",
        help="The PyTorch model EasyR1 trains: Hugging Face id or folder (default: the paper's "
        "Qwen/Qwen2.5-VL-3B-Instruct; MLX conversions do not load in EasyR1).",
    ),
    lora_rank: int = typer.Option(
        0, "--lora-rank", min=0, help="LoRA rank (0: full fine-tuning, as in the paper)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an earlier export in --out."),
) -> None:
    """Write the config's experiment for EasyR1: per training condition the corrupted training
    set (parquet), a config and the launch line; the clean validation set, the prompt, the reward
    function and a README."""
    from hallucue_mlx.export.easyr1 import ExportError, ExportOptions
    from hallucue_mlx.export.easyr1 import export_easyr1 as run_export

    cfg = load_config(config, set_)
    options = ExportOptions(lora_rank=lora_rank, **({"model": model} if model else {}))
    try:
        res = run_export(cfg, out, options, force=force, log=typer.echo)
    except ExportError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"wrote {len(res.conditions)} training sets ({', '.join(res.conditions)}), the validation "
        f"set, configs, reward.py and launch.sh to {res.out}; next: see {res.out / 'README.md'}"
    )


def main() -> None:
    # Importing hallucue_mlx has bound MLX's CPU matmuls to the checked fast BLAS (blas.py).
    app()


if __name__ == "__main__":
    main()
