"""One-factor sweeps: the grid run once per value of one config key, and a dose-response report.

    hallucue-mlx sweep train.beta=0,0.01,0.1          (any key but output.* and grid.* lists)
    grid.ratios: [0.25, 0.5, 1.0] in a run config     (a sweep of grid.ratio, run by `run`)
    grid.seeds: 3 in a run config (or run --seeds 3)  (a sweep of seed, run by `run`)

Layout of a sweep folder:

    sweep.json                 the key, the values, the config, one run folder per value
    <key>=<value>/             an ordinary run folder (manifest, train/, eval/, results, report)
    report.md, report.html     the dose-response report (hallucue_mlx.report.sweep)
    figures/dose_response.*    tables/dose_response.*

Sharing: a model whose recipe (its training config, evaluation config, model and data) does not
change with the swept key is computed once and copied into the later value folders: the base model
in every sweep of a training key, clean GRPO in a ratio sweep (its training ignores grid.ratio).
Everything random derives from the seeds, so a copy equals a recomputation.

Resume: rerunning the same command continues the value folder in progress; finished ones are kept.
A changed key, value list or config is refused (new --out, or --force).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import yaml

from hallucue_mlx import atomic, runfolder
from hallucue_mlx.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    config_hash,
    eval_config_for,
    from_dict,
    to_dict,
    train_config_for,
)
from hallucue_mlx.config import quick as quick_config
from hallucue_mlx.distributed import World, current
from hallucue_mlx.grid import BASE, models, run_grid
from hallucue_mlx.report.sweep import SEED_KEY, write_sweep_report
from hallucue_mlx.runfolder import GridError

RATIO_KEY = "grid.ratio"
# what a sweep writes at its top (runfolder.clear_owned; the value folders are cleared as runs)
SWEEP_TREE: dict[str, Any] = {
    runfolder.SWEEP: runfolder.FILE,
    runfolder.REPORT_FILE: runfolder.FILE,
    "report.html": runfolder.FILE,
    runfolder.RUN_CONFIG: runfolder.FILE,  # the Python API's processes read it (api.run)
    **runfolder.TEMP,
}
# grid keys that decide which rows and columns exist: a sweep compares one grid's cells across
# values, so these stay fixed (grid.ratio, the share of items corrupted, is sweepable)
FIXED_PREFIXES = ("output.", "grid.")


def parse_assignment(text: str) -> tuple[str, list[Any]]:
    """'train.beta=0,0.01,0.1' -> ('train.beta', [0, 0.01, 0.1]); each value read as YAML."""
    if "=" not in text:
        raise ConfigError(f"a sweep takes KEY=V1,V2,..., got {text!r} (e.g. train.beta=0,0.01,0.1)")
    key, raw = (part.strip() for part in text.split("=", 1))
    values = [_scalar(v.strip()) for v in raw.split(",") if v.strip()]
    return key, values


def _scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def check_sweep(key: str, values: list[Any]) -> None:
    """A sweepable key with at least two distinct values."""
    if not key:
        raise ConfigError("a sweep needs a key, e.g. train.beta=0,0.01,0.1")
    if key.startswith(FIXED_PREFIXES) and key != RATIO_KEY:
        raise ConfigError(
            f"{key} cannot be swept: output.* names the folder and grid.* decides the grid's rows "
            f"and columns (sweep {RATIO_KEY}, or set grid.ratios, for the corruption ratio)"
        )
    if len(values) < 2:
        raise ConfigError(f"a sweep of {key} needs at least two values, got {values}")
    seen: dict[Any, Any] = {}
    for v in values:
        if _identity(v) in seen:
            raise ConfigError(
                f"a sweep of {key} lists a value twice: {json.dumps(seen[_identity(v)])} and "
                f"{json.dumps(v)} "
                "are the same value; give each once"
            )
        seen[_identity(v)] = v


def _identity(value: Any) -> Any:
    """What makes two values the same setting: 0 and 0.0 are one number (a bool is not)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return ("number", float(value))
    return ("json", json.dumps(value, sort_keys=True))


# A value folder's name is at most this long; a longer one is cut and ends in a digest of the
# whole name (the value itself is in sweep.json, and in the folder's manifest).
MAX_NAME = 120
_KEEP = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+=")


def value_name(key: str, value: Any) -> str:
    """The value folder's name: 'train.beta=0.01'. One-to-one: a string is shown as it is unless
    it would read back as another type (then JSON-quoted), other values as JSON, and every byte
    outside letters, digits and ._-+= is escaped as %XX, so "a/b" and "a_b" never share a folder."""
    if isinstance(value, str) and _reads_back(value):
        shown = value
    else:
        shown = json.dumps(value, sort_keys=True)
    text = f"{key}={shown}"
    safe = "".join(c if c in _KEEP else "".join(f"%{b:02X}" for b in c.encode()) for c in text)
    if len(safe) > MAX_NAME:
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        cut = safe[: MAX_NAME - 18]
        if "%" in cut[-2:]:  # never half an escape
            cut = cut[: cut.rindex("%")]
        safe = f"{cut}~{digest}"
    return safe


def _reads_back(text: str) -> bool:
    """True when `text` given as a value reads back as this very string (YAML, as --set reads)."""
    try:
        return yaml.safe_load(text) == text
    except yaml.YAMLError:
        return False


def value_configs(cfg: RunConfig, key: str, values: list[Any]) -> list[RunConfig]:
    """cfg with key=value, per value; an invalid value is named."""
    base = to_dict(single(cfg))
    out = []
    for v in values:
        try:
            out.append(from_dict(apply_overrides(base, [f"{key}={json.dumps(v)}"])))
        except ConfigError as e:
            raise ConfigError(f"sweep value {key}={v!r}: {e}") from None
    return out


def recipe(cfg: RunConfig, model: str) -> str:
    """What one model's results depend on; equal recipes give equal results (same seeds)."""
    d = {
        "model": to_dict(cfg.model),
        "data": to_dict(cfg.data),
        "seed": cfg.seed,
        "eval": asdict(eval_config_for(cfg)),
        "train": None if model == BASE else asdict(train_config_for(cfg, model)),
    }
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def _manifest(cfg: RunConfig, key: str, values: list[Any], quick: bool) -> dict[str, Any]:
    return {
        "kind": "sweep",
        "key": key,
        "values": values,
        "runs": [value_name(key, v) for v in values],
        "config": to_dict(cfg),
        "config_hash": config_hash(cfg),
        "quick": quick,
    }


def _check_folder(out: Path, manifest: dict[str, Any], force: bool) -> None:
    """Refuse a folder holding another sweep, or a plain run; --force clears the old sweep: the
    run folders found inside `out` (never the list its sweep.json gives) and the sweep's files."""
    if (out / runfolder.MANIFEST).exists():
        raise GridError(f"{out} is a run folder, not a sweep folder; use a new --out")
    old = runfolder.read_sweep(out)
    if old is None:
        return
    same = all(old.get(k) == manifest[k] for k in ("key", "values", "config_hash", "quick"))
    if same:
        return
    if not force:
        raise GridError(
            f"{out} holds a sweep of {old.get('key')}={old.get('values')} with another config or "
            f"mode; this is {manifest['key']}={manifest['values']}. Use a new --out folder, or "
            "--force to clear that sweep's run folders and report"
        )
    for sub in sorted(out.iterdir()):
        # a value folder: a real subfolder named KEY=VALUE holding a run manifest of the grid
        if "=" in sub.name and sub.is_dir() and not sub.is_symlink():
            if runfolder.is_run_folder(sub):
                runfolder.clear_run(sub)
    runfolder.clear_owned(out, SWEEP_TREE)


def _setup(
    cfg: RunConfig, key: str, values: list[Any], out_dir: str | Path | None, quick: bool
) -> tuple[list[RunConfig], Path, dict[str, Any]]:
    """The value grids' configs, the sweep folder and its manifest (the checks first)."""
    check_sweep(key, values)
    asked = config_sweep(cfg)
    if asked is not None and asked[0] != key:
        raise ConfigError(
            f"the config asks for a sweep of {asked[0]} itself (grid.ratios or grid.seeds); a "
            f"sweep varies one key, so {key} cannot be swept with it: set grid.ratios=[] and "
            "grid.seeds=1, or run the config's own sweep with `hallucue-mlx run`"
        )
    if quick:
        cfg = quick_config(single(cfg))
    out = Path(out_dir if out_dir is not None else cfg.output.dir)
    return value_configs(cfg, key, values), out, _manifest(cfg, key, values, quick)


def prepare_sweep(
    cfg: RunConfig,
    key: str,
    values: list[Any],
    out_dir: str | Path | None = None,
    quick: bool = False,
    *,
    force: bool = False,
) -> None:
    """What a sweep checks and writes before it computes anything, for `hallucue-mlx run` to do
    once before it starts several processes (as grid.prepare_run does for one grid): the folder
    checked, --force applied to it and to every value's run folder, the manifest written."""
    _cfgs, out, manifest = _setup(cfg, key, values, out_dir, quick)
    _open(out, manifest, force)
    if force:  # what each value's run_grid(force=True) clears, done here once
        for v in values:
            sub = out / value_name(key, v)
            if runfolder.is_run_folder(sub):
                runfolder.clear_run(sub)


def _open(out: Path, manifest: dict[str, Any], force: bool) -> None:
    """The sweep folder made, checked (--force clears another sweep) and its manifest written."""
    out.mkdir(parents=True, exist_ok=True)
    _check_folder(out, manifest, force)
    atomic.write_json(out / runfolder.SWEEP, manifest, indent=2)


def run_sweep(
    cfg: RunConfig,
    key: str,
    values: list[Any],
    out_dir: str | Path | None = None,
    quick: bool = False,
    *,
    force: bool = False,
    quiet: bool = False,
    report: bool = True,
    world: World | None = None,
) -> Path:
    """Run (or continue) the grid once per value of `key` in out_dir; returns sweep.json.

    quick: every value's grid is the smoke-run version (applied before the value, so a swept
    training key keeps its values). force: discard earlier results of this sweep folder.
    world: the processes running it (default: distributed.current()); each value's grid is
    shared among them as run_grid shares one (grid.parallel), value after value, and rank 0
    alone writes the sweep's files.
    """
    world = world or current()
    cfgs, out, manifest = _setup(cfg, key, values, out_dir, quick)

    world.on_main(lambda: _open(out, manifest, force), "preparing the sweep folder")
    loud = not quiet and world.is_main
    done: dict[str, Path] = {}  # recipe -> a finished value folder holding that model
    for i, (v, vcfg) in enumerate(zip(values, cfgs, strict=True)):
        sub = out / value_name(key, v)
        shared = {m: done[recipe(vcfg, m)] for m in models(vcfg) if recipe(vcfg, m) in done}
        if world.is_main:
            manifest.setdefault("shared", {})[sub.name] = sorted(shared)
            atomic.write_json(out / runfolder.SWEEP, manifest, indent=2)
        if loud:
            _announce(i, len(values), key, v, shared)
        run_grid(vcfg, sub, force=force, quiet=quiet, report=report, shared=shared, world=world)
        for m in models(vcfg):
            done.setdefault(recipe(vcfg, m), sub)

    if world.is_main:
        manifest["finished"] = True
        atomic.write_json(out / runfolder.SWEEP, manifest, indent=2)
        if report:
            path = write_sweep_report(out)
            if not quiet:
                print(f"sweep report: {path}")
    return out / runfolder.SWEEP


def _announce(i: int, n: int, key: str, value: Any, shared: dict[str, Path]) -> None:
    from rich.console import Console

    note = f" (shared: {', '.join(shared)})" if shared else ""
    Console(stderr=True).rule(f"[bold]sweep {key}: value {i + 1}/{n} = {value!r}{note}")


def single(cfg: RunConfig) -> RunConfig:
    """cfg without the keys that make `run` a sweep (one value folder's grid)."""
    return replace(cfg, grid=replace(cfg.grid, ratios=[], seeds=1))


def ratio_sweep(cfg: RunConfig) -> tuple[str, list[float]] | None:
    """(grid.ratio, the ratios) when the config asks for a ratio sweep, else None."""
    return (RATIO_KEY, list(cfg.grid.ratios)) if cfg.grid.ratios else None


def seed_sweep(cfg: RunConfig) -> tuple[str, list[int]] | None:
    """(seed, seed .. seed + n - 1) when the config asks for n > 1 training seeds, else None.
    The data subset (data.seed) stays fixed, so every seed is scored on the same items."""
    n = cfg.grid.seeds
    return (SEED_KEY, [cfg.seed + k for k in range(n)]) if n > 1 else None


def config_sweep(cfg: RunConfig) -> tuple[str, list[Any]] | None:
    """The sweep a run config asks for (grid.ratios or grid.seeds), or None for one grid."""
    return ratio_sweep(cfg) or seed_sweep(cfg)


__all__ = [
    "RATIO_KEY",
    "SEED_KEY",
    "check_sweep",
    "config_sweep",
    "parse_assignment",
    "prepare_sweep",
    "ratio_sweep",
    "recipe",
    "seed_sweep",
    "single",
    "run_sweep",
    "value_configs",
    "value_name",
]
