"""A run folder's layout and files, in one place: names, the manifest and its resumability check,
the timing record, and the readers of what training and evaluation left behind.

    manifest.json                 config (+ its hash), versions, platform, device, git commit,
                                  seeds, subset manifests with content hashes
    train/<condition>/            train() output: metrics.jsonl, rollouts.jsonl, checkpoints/
                                  (and checkpoints/latest, the pointer to the newest), adapter/,
                                  and done.json once finished
    eval/<model>/<benchmark>-<test|train>/   records.jsonl, summary.json, parts/<condition>.jsonl
                                  and parts/<condition>.done.json (evaluate())
    results.json                  one row per cell, plus wall-clock `timing`
    timing.json                   seconds per task, summed over sessions
    report.md, figures/, tables/  written by hallucue_mlx.report

A low utility module: files and JSON only (no MLX, no higher package module).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from hallucue_mlx import atomic
from hallucue_mlx.backend import PACKAGES

MANIFEST = "manifest.json"
RESULTS = "results.json"
TIMING = "timing.json"
DONE = "done.json"
TRAIN_DIR = "train"
EVAL_DIR = "eval"
# What --force removes (only what the grid writes: never the whole folder).
OWNED_PATHS = (MANIFEST, RESULTS, TIMING, TRAIN_DIR, EVAL_DIR, "report.md", "figures", "tables")

# A training folder (train()): checkpoints/latest is {"checkpoint": <dir name>, "step": <int>}.
CKPT_DIR = "checkpoints"
LATEST = "latest"
ADAPTER_DIR = "adapter"
# mlx-vlm's adapter files (mlx_vlm.load(..., adapter_path=) reads these names)
ADAPTER_WEIGHTS = "adapters.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
METRICS_FILE = "metrics.jsonl"

# An evaluation folder (evaluate()): records of all conditions, and per condition its part and
# the part's done marker {"n_records": ...}.
RECORDS_FILE = "records.jsonl"
SUMMARY_FILE = "summary.json"
PARTS_DIR = "parts"
# Top-level keys of an evaluation's summary.json that are not condition names.
SUMMARY_EXTRA_KEYS = ("diagnostics", "meta")
PART_SUFFIX = ".jsonl"
PART_DONE_SUFFIX = ".done.json"


class GridError(RuntimeError):
    """The run folder cannot be continued as asked; the message says why and what to do."""


def train_dir(out: Path, condition: str) -> Path:
    return out / TRAIN_DIR / condition


def eval_dir(out: Path, model: str, target: str) -> Path:
    """The evaluation folder of one model on one target (`<benchmark>-<test|train>`)."""
    return out / EVAL_DIR / model / target


def part_file(d: Path, condition: str) -> Path:
    return d / PARTS_DIR / f"{condition}{PART_SUFFIX}"


def part_done_file(d: Path, condition: str) -> Path:
    return d / PARTS_DIR / f"{condition}{PART_DONE_SUFFIX}"


# ================================================================ manifest


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for pkg in PACKAGES:
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


def build_manifest(run: dict[str, Any], device: dict[str, Any]) -> dict[str, Any]:
    """The manifest: the run's own fields (config, config_hash, quick, subsets ...), then the
    package versions, platform, `device`, git commit and creation time."""
    return {
        **run,
        "versions": _versions(),
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "device": device,
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
        if (out / TRAIN_DIR).exists() or (out / EVAL_DIR).exists():
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
    check_weights(out, old.get("weights"), manifest.get("weights"))
    for name, sub in manifest["subsets"].items():
        was = old.get("subsets", {}).get(name, {}).get("content_hash")
        if was is not None and was != sub["content_hash"]:
            raise GridError(
                f"the data of {name} changed since {out} was started (content hash "
                f"{was[:12]} -> {sub['content_hash'][:12]}); use a new --out or --force"
            )
    return old


def check_weights(out: Path, was: Any, now: Any) -> None:
    """GridError when the model's or adapter's weights differ from those the folder's results
    were made with (a manifest written before weights were recorded is not checked)."""
    if not isinstance(was, dict) or not isinstance(now, dict):
        return
    for role in sorted(set(was) | set(now)):
        if was.get(role) != now.get(role):
            raise GridError(
                f"{role} weights changed since {out} was started ({was.get(role)} -> "
                f"{now.get(role)}), so its finished cells are stale; use a new --out or --force"
            )


def write_manifest(out: Path, manifest: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Write the manifest; a resumed run keeps the first creation time and lists each resume."""
    if old is not None:
        manifest["created"] = old.get("created", manifest["created"])
        manifest["resumed"] = [*old.get("resumed", []), time.strftime("%Y-%m-%dT%H:%M:%S%z")]
    atomic.write_json(out / MANIFEST, manifest, indent=2)


def clear_run(out: Path) -> None:
    """Remove what the grid wrote in `out` (for --force); other files stay."""
    for name in OWNED_PATHS:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


# ================================================================ content fingerprints

# Small files beside the weights whose content matters as much (hashed in full, never cached).
WEIGHT_CONFIGS = ("config.json", ADAPTER_CONFIG)
_HASH_CACHE: dict[tuple[str, int, int, int], str] = {}


def _hash_cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root, "hallucue-mlx", "weights-sha256.json")


def _file_sha256(path: Path) -> str:
    """sha256 of a file's content, cached by (path, size, mtime, ctime): in memory and in a small
    JSON file under the user cache, so a multi-GB model is read in full only once."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key in _HASH_CACHE:
        return _HASH_CACHE[key]
    disk_key = "|".join(map(str, key))
    cache_file = _hash_cache_file()
    try:
        disk = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        disk = {}
    if not isinstance(disk, dict):
        disk = {}
    digest = disk.get(disk_key)
    if not isinstance(digest, str):
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
        digest = h.hexdigest()
        disk = {k: v for k, v in disk.items() if not k.startswith(key[0] + "|")}
        disk[disk_key] = digest
        try:  # a cache only: a read-only or full disk costs time, never correctness
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_json(cache_file, disk)
        except OSError:
            pass
    _HASH_CACHE[key] = digest
    return digest


def weights_fingerprint(path: str | Path) -> str:
    """A fingerprint of the content of model or adapter weights: a .safetensors file, or a folder's
    *.safetensors files and its config.json / adapter_config.json (names, sizes, sha256 of each).
    Same content, same fingerprint wherever it lies; a change to any weight or config changes it."""
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(
            f
            for f in p.iterdir()
            if f.is_file() and (f.suffix == ".safetensors" or f.name in WEIGHT_CONFIGS)
        )
    else:
        files = [p] if p.is_file() else []
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}\x1f{f.stat().st_size}\x1f{_file_sha256(f)}\x1e".encode())
    return f"{len(files)} files, sha256 {h.hexdigest()[:16]}"


# ================================================================ timing


@dataclass
class Timing:
    """Seconds per task ('train <cond>', 'eval <model> on <target>'), summed over sessions."""

    path: Path
    tasks: dict[str, float] = field(default_factory=dict)
    sessions: int = 0

    @classmethod
    def load(cls, path: Path) -> Timing:
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


# ================================================================ what training left behind


def training_done(d: Path, steps: int) -> bool:
    """A finished training: done.json with the planned steps (or a spent time budget) and the
    final adapter."""
    marker = d / DONE
    if not marker.is_file() or not (d / ADAPTER_DIR / ADAPTER_WEIGHTS).is_file():
        return False
    try:
        done = json.loads(marker.read_text())
        # a train.max_minutes budget ends a run early, as a finished one
        return int(done.get("steps", -1)) == steps or bool(done.get("time_up"))
    except (json.JSONDecodeError, ValueError):
        return False


def mark_training_done(d: Path, steps: int, condition: str, time_up: bool) -> None:
    atomic.write_json(
        d / DONE, {"steps": steps, "condition": condition, "time_up": time_up}, indent=2
    )


def latest_checkpoint(d: Path) -> Path | None:
    """The checkpoint folder checkpoints/latest points to, if it exists."""
    p = d / CKPT_DIR / LATEST
    if not p.is_file():
        return None
    ckpt = d / CKPT_DIR / json.loads(p.read_text())["checkpoint"]
    return ckpt if ckpt.is_dir() else None


def checkpoint_step(d: Path) -> int:
    """The step of the latest checkpoint (0 when there is none or it cannot be read)."""
    try:
        return int(json.loads((d / CKPT_DIR / LATEST).read_text())["step"])
    except (OSError, KeyError, ValueError):
        return 0


# ================================================================ what evaluation left behind


def eval_done(d: Path, conditions: list[str], n_items: int, samples: int) -> bool:
    """Every condition has a complete done-part and records.jsonl holds all of them (it is
    rewritten after each condition, so a kill in between leaves it short)."""
    for c in conditions:
        marker = part_done_file(d, c)
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
