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
    imported.json                 models brought in from elsewhere (`hallucue-mlx import`), by name:
                                  source, format, options, prompt template, done
    imported/<name>/model/        such a model's checkpoint, converted to MLX by mlx-vlm
    .hallucue.lock                held (flock) by the one command writing the folder (folder_lock)

A low utility module: files and JSON only (no MLX, no higher package module).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from hallucue_mlx import atomic
from hallucue_mlx.backend import PACKAGES
from hallucue_mlx.safefile import FileKindError, is_state_file, open_state, read_state

# The grid's model folders (train/<model>, eval/<model>) are named after the training
# condition, except the control model's: GRPO with a coin-flip accuracy reward on clean items
# (grid.random_reward_control).
RANDOM_REWARD = "random_reward"
CONTROL_MODELS = (RANDOM_REWARD,)
MANIFEST = "manifest.json"
RESULTS = "results.json"
TIMING = "timing.json"
DONE = "done.json"
TRAIN_DIR = "train"
EVAL_DIR = "eval"
REPORT_FILE = "report.md"
SWEEP = "sweep.json"  # a sweep folder: key, values, one run folder per value (hallucue_mlx.sweep)
# Models trained elsewhere and evaluated into the run (hallucue_mlx.importer): the record of them,
# and the folder their converted checkpoints go in (imported/<name>/model).
IMPORTED = "imported.json"
IMPORTED_DIR = "imported"
IMPORTED_MODEL = "model"
# What `run --force` removes, and only in a run folder (one whose manifest.json the grid wrote):
# what the grid writes. figures/ and tables/ stay (the report rewrites its own files there and a
# rebuild drops figures the data no longer gives), and so does everything else.
# (the names; runfolder.RUN_TREE says which files inside them)
# The resolved config the Python API's `run` hands its processes (a command that continues it).
RUN_CONFIG = "run_config.yaml"
OWNED_PATHS = (
    MANIFEST,
    RESULTS,
    TIMING,
    TRAIN_DIR,
    EVAL_DIR,
    REPORT_FILE,
    IMPORTED,
    IMPORTED_DIR,
    RUN_CONFIG,
)
# The one-writer lock of an output folder (folder_lock).
LOCK = ".hallucue.lock"
# Written by rank 0 and read back by the others when ranks share a run folder (grid.parallel
# cells): a rank that cannot read it is on another machine without a shared filesystem.
RANK_CHECK = ".hallucue.ranks"


def rank_done_file(out: Path, rank: int) -> Path:
    """Where a rank other than 0 leaves its task times when its cells are done (grid.parallel
    cells); rank 0 reads and removes it."""
    return out / f".hallucue.rank{rank}.json"


# A training folder (train()): checkpoints/latest is {"checkpoint": <dir name>, "step": <int>}.
CKPT_DIR = "checkpoints"
LATEST = "latest"
ADAPTER_DIR = "adapter"
# mlx-vlm's adapter files (mlx_vlm.load(..., adapter_path=) reads these names)
ADAPTER_WEIGHTS = "adapters.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
METRICS_FILE = "metrics.jsonl"
ROLLOUTS_FILE = "rollouts.jsonl"
TRAIN_CONFIG = "train_config.json"
# What `train --force` removes: what train() writes in its folder.
TRAIN_OWNED_PATHS = (METRICS_FILE, ROLLOUTS_FILE, CKPT_DIR, ADAPTER_DIR, TRAIN_CONFIG, DONE)

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


class FolderBusy(GridError):
    """Another process holds the output folder's lock (or the lock cannot be taken)."""


def train_dir(out: Path, condition: str) -> Path:
    return out / TRAIN_DIR / condition


def eval_dir(out: Path, model: str, target: str) -> Path:
    """The evaluation folder of one model on one target (`<benchmark>-<test|train>`)."""
    return out / EVAL_DIR / model / target


def imported_model_dir(out: Path, name: str) -> Path:
    """Where an imported model's converted checkpoint goes."""
    return out / IMPORTED_DIR / name / IMPORTED_MODEL


def read_imported(out: Path) -> dict[str, dict[str, Any]]:
    """imported.json: name -> what the import recorded (source, format, options, template, done),
    in import order; {} when nothing was imported. GridError when the file cannot be read."""
    path = out / IMPORTED
    if not path.is_file():
        return {}
    try:
        data = json.loads(read_state(path))
    except (OSError, ValueError) as e:
        raise GridError(
            f"{path} cannot be read ({e}); restore it, or import the models again after "
            f"deleting it and their folders under {EVAL_DIR}/ and {IMPORTED_DIR}/"
        ) from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict) or not all(isinstance(v, dict) for v in models.values()):
        raise GridError(f"{path} is not an imported-models record ({{'models': {{name: ...}}}})")
    return models


def write_imported(out: Path, models: dict[str, dict[str, Any]]) -> None:
    atomic.write_json(out / IMPORTED, {"models": models}, indent=2)


def imported_models(out: Path) -> list[str]:
    """The names of the imported models whose evaluations are finished, in import order."""
    return [name for name, entry in read_imported(out).items() if entry.get("done")]


def adopt_model(src: Path, out: Path, model: str, trained: bool) -> list[str]:
    """Copy one model's finished training (train/<model>, when `trained`) and evaluations
    (eval/<model>/*) from the finished run folder `src` into `out`, where `out` has none yet: a
    sweep shares a model whose recipe the swept key does not change. Returns what was copied.
    Each copy lands under a temporary name first, so a kill leaves no half-copied folder."""
    pairs = [(d, eval_dir(out, model, d.name)) for d in sorted((src / EVAL_DIR / model).glob("*"))]
    if trained:
        pairs.insert(0, (train_dir(src, model), train_dir(out, model)))
    copied = []
    for a, b in pairs:
        if not a.is_dir() or b.exists():
            continue
        tmp = b.with_name(f".{b.name}.adopting")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(a, tmp, symlinks=True)
        os.replace(tmp, b)
        copied.append(str(b.relative_to(out)))
    return copied


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


FORCE_HINT = f"--force to clear this run's own files ({', '.join(OWNED_PATHS)}; other files stay)"


def check_resumable(out: Path, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The previous manifest if this folder's earlier run matches; GridError naming what changed."""
    path = out / MANIFEST
    if not path.is_file():
        if (out / TRAIN_DIR).exists() or (out / EVAL_DIR).exists():
            raise GridError(
                f"{out} holds train/ or eval/ results but no {MANIFEST}, so they cannot be "
                "checked against this config; use a new --out, or move train/ and eval/ away "
                "(--force clears only a run folder's own files)"
            )
        return None
    try:
        old = json.loads(read_state(path))
    except ValueError as e:
        raise GridError(f"{path} is not valid JSON ({e}); use a new --out") from None
    if not isinstance(old, dict):
        raise GridError(f"{path} is not a run manifest (a JSON object); use a new --out")
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
            + f"). Use a new --out folder, or {FORCE_HINT}."
        )
    check_weights(out, old.get("weights"), manifest.get("weights"))
    for name, sub in manifest["subsets"].items():
        was = old.get("subsets", {}).get(name, {}).get("content_hash")
        if was is not None and was != sub["content_hash"]:
            raise GridError(
                f"the data of {name} changed since {out} was started (content hash "
                f"{was[:12]} -> {sub['content_hash'][:12]}); use a new --out, or {FORCE_HINT}"
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


def is_run_folder(out: Path) -> bool:
    """A folder the grid wrote: its manifest.json is the grid's (a JSON object with config_hash)."""
    try:
        return "config_hash" in json.loads(read_state(out / MANIFEST))
    except (OSError, ValueError, TypeError):
        return False


# ---------------------------------------------------------------- what --force may remove
#
# The files the project writes, as a tree of name patterns (fnmatch): a pattern maps to FILE (a
# file the project writes under that name) or to the tree of a folder it writes. `--force` walks
# the folder itself (never a list read from a state file), removes only what matches, goes into a
# matching folder only if it is a real folder (a link is removed, never followed), and removes a
# folder only when nothing else is left in it. Everything else stays and is named.

FILE = None
# atomic.write_with's temporary files, and the hidden folders a killed write leaves
TEMP = {".*.tmp*": FILE}
ADAPTER_TREE: dict[str, Any] = {ADAPTER_WEIGHTS: FILE, ADAPTER_CONFIG: FILE, **TEMP}
CHECKPOINT_TREE: dict[str, Any] = {
    **ADAPTER_TREE,
    "optimizer.safetensors": FILE,
    "state.json": FILE,
}
TRAIN_TREE: dict[str, Any] = {
    METRICS_FILE: FILE,
    ROLLOUTS_FILE: FILE,
    TRAIN_CONFIG: FILE,
    DONE: FILE,
    CKPT_DIR: {
        LATEST: FILE,
        "step_[0-9][0-9][0-9][0-9][0-9][0-9]": CHECKPOINT_TREE,
        ".tmp_step_[0-9][0-9][0-9][0-9][0-9][0-9]": CHECKPOINT_TREE,
        **TEMP,
    },
    ADAPTER_DIR: ADAPTER_TREE,
    **TEMP,
}
EVAL_TREE: dict[str, Any] = {
    RECORDS_FILE: FILE,
    SUMMARY_FILE: FILE,
    PARTS_DIR: {f"*{PART_DONE_SUFFIX}": FILE, f"*{PART_SUFFIX}": FILE, **TEMP},
    **TEMP,
}
RUN_TREE: dict[str, Any] = {
    MANIFEST: FILE,
    RESULTS: FILE,
    TIMING: FILE,
    REPORT_FILE: FILE,
    IMPORTED: FILE,
    RANK_CHECK: FILE,
    ".hallucue.rank[0-9]*.json": FILE,
    TRAIN_DIR: {"*": TRAIN_TREE},
    EVAL_DIR: {"*": {"*": EVAL_TREE, ".*.adopting": EVAL_TREE}},
    # an imported model's folder is mlx-vlm's conversion, written whole by the import
    IMPORTED_DIR: {
        "*": {IMPORTED_MODEL: {"*": FILE}, f".{IMPORTED_MODEL}.converting": {"*": FILE}}
    },
    **TEMP,
}


def _match(name: str, tree: dict[str, Any]) -> tuple[bool, Any]:
    from fnmatch import fnmatchcase

    for pattern, sub in tree.items():
        if fnmatchcase(name, pattern):
            return True, sub
    return False, None


def _clear_tree(d: Path, tree: dict[str, Any], rel: str, kept: list[str]) -> bool:
    """Remove what `tree` names under the real folder d; append what stays (relative names) to
    kept; True when d is left empty."""
    import stat as _stat

    empty = True
    for p in sorted(d.iterdir()):
        name = f"{rel}{p.name}"
        if p.name == LOCK and not rel:
            continue
        ours, sub = _match(p.name, tree)
        mode = p.lstat().st_mode
        is_dir = _stat.S_ISDIR(mode)
        if not ours or (sub is FILE and is_dir):
            kept.append(name + ("/" if is_dir else ""))
            empty = False
        elif is_dir:
            if _clear_tree(p, sub, f"{name}/", kept):
                p.rmdir()
            else:
                empty = False
        else:  # a file of ours, or a link standing where one of ours belongs: the link only
            p.unlink()
    return empty


def clear_owned(out: Path, tree: dict[str, Any]) -> list[str]:
    """Remove what the project wrote in `out`, as the pattern tree `tree` (RUN_TREE, TRAIN_TREE)
    names it, found by walking the folder; returns what stays (relative names, folders with a
    trailing /): the user's files, and anything inside the project's folders it did not write."""
    kept: list[str] = []
    if out.is_dir() and not out.is_symlink():
        _clear_tree(out, tree, "", kept)
    return kept


def clear_run(out: Path) -> list[str]:
    """--force: remove what the grid wrote in `out` (RUN_TREE), only if it is a run folder;
    returns what stays. A folder that is no run folder but holds train/ or eval/ is refused."""
    if not is_run_folder(out):
        if (out / TRAIN_DIR).exists() or (out / EVAL_DIR).exists():
            raise GridError(
                f"{out} holds train/ or eval/ but no {MANIFEST} of a run, so they are not known "
                "to be this project's and --force clears nothing there; move train/ and eval/ "
                "away, or use a new --out"
            )
        return clear_owned(out, {})
    return clear_owned(out, RUN_TREE)


def read_sweep(out: Path) -> dict[str, Any] | None:
    """The sweep.json of `out` (None when there is none), read as a state file; GridError when it
    is damaged or names a value folder that is not a plain folder name inside `out`."""
    path = out / SWEEP
    if not path.exists() and not path.is_symlink():
        return None
    try:
        data = json.loads(read_state(path))
    except ValueError as e:
        raise GridError(f"{path} is not valid JSON ({e}); restore it or use a new --out") from None
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, list) or not all(isinstance(r, str) for r in runs):
        raise GridError(f"{path} is not a sweep record (a JSON object with a list of runs)")
    for r in runs:
        if not is_child_name(r):
            raise GridError(
                f"{path} names the value folder {r!r}, which is not a folder name inside {out} "
                "(a sweep's value folders are its own subfolders); restore sweep.json or use a "
                "new --out"
            )
    return data


def is_child_name(name: str) -> bool:
    """A plain name of an entry inside a folder: not empty, '.', '..', and without a separator."""
    return bool(name) and name not in (".", "..") and not {"/", "\\", "\0"} & set(name)


# ================================================================ one writer per folder


def _holder(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(read_state(path))
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def _lock_fd(path: Path) -> int:
    """An open, flock-held descriptor of the lock file (FolderBusy if another process holds it)."""
    for _ in range(5):
        fd = open_state(path, os.O_RDWR | os.O_CREAT)  # never through a link, never a FIFO
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            h = _holder(path)
            raise FolderBusy(
                f"{path.parent} is in use by process {h.get('pid', '?')} "
                f"({h.get('command', 'unknown command')}, since {h.get('started', '?')}); "
                "wait for it to finish or stop it, or use another --out"
            ) from None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd  # not a file its last holder removed between our open and flock
        except FileNotFoundError:
            pass
        os.close(fd)
    raise FolderBusy(f"could not take the lock {path}: other processes keep taking it")


@contextmanager
def folder_lock(out: str | Path, command: str) -> Iterator[Path]:
    """Hold `out`'s lock (created, with `out`, if missing) while the body runs: one writer per
    folder. The OS drops the lock when its process dies, so a lock file left by a killed process
    is taken over (with a note on stderr naming its pid). FolderBusy names the holder."""
    out = Path(out)
    created = not out.exists()
    path = out / LOCK
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = _lock_fd(path)
    except FileExistsError:
        raise FolderBusy(f"{out} is a file, not a folder; pass a folder to --out") from None
    except FileKindError as e:
        raise FolderBusy(f"cannot take the lock: {e}") from None
    except OSError as e:
        raise FolderBusy(
            f"cannot take the lock {path} ({e.strerror}); make {out} writable or use another --out"
        ) from None
    try:
        old = _holder(path)
        if old.get("pid") and old.get("pid") != os.getpid():
            gone = "no longer running" if not _pid_alive(old["pid"]) else "not holding it"
            print(
                f"note: took over the lock of {out} left by process {old['pid']} "
                f"({old.get('command', 'unknown command')}), {gone}",
                file=sys.stderr,
            )
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        yield path
    finally:
        try:
            path.unlink(missing_ok=True)  # while still held: the next writer makes a new one
        except OSError:
            pass
        os.close(fd)
        if created:
            try:
                out.rmdir()  # only if the command left the folder it made empty
            except OSError:
                pass


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
    """Seconds per task ('train <cond>', 'eval <model> on <target>'), summed over sessions.
    path None: kept in memory only (a rank other than 0 reports its tasks to rank 0)."""

    path: Path | None
    tasks: dict[str, float] = field(default_factory=dict)
    sessions: int = 0

    @classmethod
    def load(cls, path: Path) -> Timing:
        if path.is_file():
            try:
                d = json.loads(read_state(path))
                return cls(path, dict(d.get("tasks", {})), int(d.get("sessions", 0)))
            except (ValueError, TypeError, AttributeError, OverflowError):
                pass
        return cls(path)

    def add(self, name: str, seconds: float) -> None:
        self.tasks[name] = self.tasks.get(name, 0.0) + seconds
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
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
        done = json.loads(read_state(marker))
        # a train.max_minutes budget ends a run early, as a finished one
        return int(done.get("steps", -1)) == steps or bool(done.get("time_up"))
    except (ValueError, TypeError, AttributeError, OverflowError):
        return False


def mark_training_done(d: Path, steps: int, condition: str, time_up: bool) -> None:
    atomic.write_json(
        d / DONE, {"steps": steps, "condition": condition, "time_up": time_up}, indent=2
    )


def read_pointer(d: Path) -> dict[str, Any] | None:
    """checkpoints/latest of training folder d ({"checkpoint": "step_N", "step": N}), None when
    there is none; GridError naming the file when it is damaged (torn, not JSON, or naming
    something other than a step folder of its own)."""
    p = d / CKPT_DIR / LATEST
    if not p.exists() and not p.is_symlink():
        return None
    fix = (
        'restore it to name the newest step folder (e.g. {"checkpoint": "step_000002", "step": '
        "2}), or train into a new --out"
    )
    try:
        ptr = json.loads(read_state(p))
    except ValueError as e:
        raise GridError(f"the checkpoint pointer {p} is damaged ({e}); {fix}") from None
    except FileKindError as e:
        raise GridError(f"the checkpoint pointer: {e}") from None
    name = ptr.get("checkpoint") if isinstance(ptr, dict) else None
    step = ptr.get("step") if isinstance(ptr, dict) else None
    if (
        not isinstance(name, str)
        or not is_child_name(name)
        or not name.startswith("step_")
        or not isinstance(step, int)
        or isinstance(step, bool)
        or step < 0
    ):
        raise GridError(
            f"the checkpoint pointer {p} is damaged (it must name a step_N folder and its step, "
            f"got {ptr!r:.120}); {fix}"
        )
    return ptr


def latest_checkpoint(d: Path) -> Path | None:
    """The checkpoint folder checkpoints/latest points to, if it exists (GridError when the
    pointer is damaged)."""
    ptr = read_pointer(d)
    if ptr is None:
        return None
    ckpt = d / CKPT_DIR / ptr["checkpoint"]
    return ckpt if ckpt.is_dir() and not ckpt.is_symlink() else None


def read_checkpoint_state(ckpt: Path) -> dict[str, Any]:
    """A checkpoint's state.json (its step and settings); GridError naming it when damaged."""
    path = ckpt / "state.json"
    try:
        state = json.loads(read_state(path))
    except (OSError, ValueError) as e:
        state, why = None, str(e)
    else:
        why = "no step or config"
    if (
        not isinstance(state, dict)
        or not isinstance(state.get("config"), dict)
        or not isinstance(state.get("step"), int)
    ):
        raise GridError(
            f"the checkpoint state {path} is damaged ({why}); delete {ckpt.name} and point "
            f"{CKPT_DIR}/{LATEST} at the step folder before it, or train into a new --out"
        )
    return state


def checkpoint_step(d: Path) -> int:
    """The step of the latest checkpoint (0 when there is none or it cannot be read)."""
    try:
        ptr = read_pointer(d)
    except GridError:
        return 0
    return 0 if ptr is None else int(ptr["step"])


# ================================================================ what evaluation left behind


def eval_done(d: Path, conditions: list[str], n_items: int, samples: int) -> bool:
    """Every condition has a complete done-part and records.jsonl holds all of them (it is
    rewritten after each condition, so a kill in between leaves it short)."""
    for c in conditions:
        marker = part_done_file(d, c)
        if not marker.is_file():
            return False
        try:
            if json.loads(read_state(marker)).get("n_records") != n_items * samples:
                return False
        except (ValueError, AttributeError):
            return False
    records = d / RECORDS_FILE
    if not is_state_file(records):
        return False
    with records.open("rb") as f:
        lines = sum(1 for ln in f if ln.strip())
    return lines == n_items * samples * len(conditions)
