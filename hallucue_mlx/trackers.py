"""Training metrics beside metrics.jsonl, for people used to TRL and mlx-lm: TensorBoard (through
tensorboardX, which needs no torch or TensorFlow) and Weights & Biases (`--report-to`, TRL's
`report_to`). Both are optional extras, imported only when asked for.

A Mirror copies a training folder's metrics.jsonl lines to the trackers as they are written, under
the names TRL's trainers log: `train/<key>` for a step's record (train/reward, train/kl,
train/completions/mean_length, ...), and the periodic evaluation's `eval/<condition>/<metric>` as
they are. metrics.jsonl stays the record; a tracker is a view of it, so it never changes a
training. A resumed training mirrors only the steps after those already in metrics.jsonl (a
resumed training redoes its steps exactly)."""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hallucue_mlx.config import ConfigError

REPORTERS = ("tensorboard", "wandb")
_NEEDS = {
    "tensorboard": ("tensorboardX", 'pip install -e ".[tensorboard]" (tensorboardX)'),
    "wandb": ("wandb", 'pip install -e ".[wandb]", then `wandb login`'),
}
# fields of a step's record that are not metrics
_NOT_METRICS = {"step", "event", "warning"}


def report_targets(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """The trackers asked for: "tensorboard", "wandb", "tensorboard,wandb", "none" or None (none).
    ConfigError for an unknown name or a tracker whose package is not installed (with the
    install line), before anything runs."""
    if value is None:
        return ()
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [n.strip().lower() for n in names if n.strip()]
    if names in ([], ["none"]):
        return ()
    for n in names:
        if n not in REPORTERS:
            raise ConfigError(
                f"--report-to: {n!r} is not a tracker; choose from {', '.join(REPORTERS)} "
                "(comma-separated) or none",
                "report_to",
            )
        module, fix = _NEEDS[n]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"--report-to {n} needs {module}: {fix}", "report_to")
    return tuple(dict.fromkeys(names))


def metric_items(rec: dict[str, Any]) -> dict[str, float]:
    """A metrics.jsonl record as tracker scalars, named as TRL logs them."""
    evaluation = rec.get("event") == "eval"
    out = {}
    for k, v in rec.items():
        if k in _NOT_METRICS or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if rec.get("event") not in (None, "eval"):
            continue
        out[k if evaluation else f"train/{k}"] = float(v)
    return out


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line being written
            break
        if isinstance(rec, dict) and isinstance(rec.get("step"), int):
            out.append(rec)
    return out


class Mirror:
    """One training folder's metrics.jsonl, mirrored to the trackers (sync() after each step)."""

    def __init__(
        self, folder: Path, targets: Sequence[str], name: str | None = None, new: bool = False
    ) -> None:
        """new: the folder's training started after mirroring did (mirror all its lines);
        otherwise lines already in metrics.jsonl belong to an earlier session, which mirrored
        them (a resumed training redoes its steps exactly)."""
        self.folder, self.targets = Path(folder), tuple(targets)
        self.path = self.folder / "metrics.jsonl"
        seen = [] if new else _read(self.path)
        self.done = {
            "train": max((r["step"] for r in seen if "event" not in r), default=-1),
            "eval": max((r["step"] for r in seen if r.get("event") == "eval"), default=-1),
        }
        self.writer: Any = None
        self.wandb: Any = None
        name = name or self.folder.name
        if "tensorboard" in self.targets:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(logdir=str(self.folder / "tensorboard"))
        if "wandb" in self.targets:
            import wandb

            kwargs = {
                "project": os.environ.get("WANDB_PROJECT", "hallucue-mlx"),
                "name": name,
                "id": self._wandb_id(),
                "resume": "allow",
                "dir": str(self.folder),
                "config": self._config(),
            }
            try:  # several runs at once (a grid's trainings): wandb >= 0.19.10
                self.wandb = wandb.init(**kwargs, reinit="create_new")
            except (TypeError, ValueError):
                self.wandb = wandb.init(**kwargs, reinit=True)

    def _wandb_id(self) -> str:
        """The folder's W&B run id, kept so that a resumed training continues the same run."""
        import secrets

        p = self.folder / "wandb_id.txt"
        if p.is_file():
            return p.read_text().strip()
        self.folder.mkdir(parents=True, exist_ok=True)
        run_id = secrets.token_hex(8)
        p.write_text(run_id + "\n")
        return run_id

    def _config(self) -> dict[str, Any]:
        p = self.folder / "train_config.json"
        try:
            return json.loads(p.read_text()) if p.is_file() else {}
        except (OSError, json.JSONDecodeError):
            return {}

    def sync(self) -> None:
        for rec in _read(self.path):
            kind = "eval" if rec.get("event") == "eval" else "train"
            if "event" in rec and kind != "eval":
                continue
            if rec["step"] <= self.done[kind]:
                continue
            self.done[kind] = rec["step"]
            scalars = metric_items(rec)
            if self.writer is not None:
                for k, v in scalars.items():
                    self.writer.add_scalar(k, v, rec["step"])
            if self.wandb is not None:
                self.wandb.log(scalars, step=rec["step"])
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        self.sync()
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()


@contextmanager
def mirror(folder: Path, targets: Sequence[str], world: Any = None) -> Iterator[Callable[[], None]]:
    """Mirror one training folder while the block runs; yields the sync to call after each step
    (a no-op without trackers, and on every rank but 0, which alone writes the folder)."""
    if not targets or (world is not None and not world.is_main):
        yield lambda: None
        return
    m = Mirror(folder, targets)
    try:
        yield m.sync
    finally:
        m.close()


@contextmanager
def mirror_run(run_folder: Path, targets: Sequence[str], every: float = 10.0) -> Iterator[None]:
    """Mirror every training of a run (or sweep) folder while the grid runs: each folder holding
    a metrics.jsonl under it gets its own tracker run (TensorBoard: <training>/tensorboard, so
    `tensorboard --logdir RUN` shows them side by side; W&B: one run per training), polled every
    `every` seconds and once more at the end."""
    if not targets:
        yield
        return
    mirrors: dict[Path, Mirror] = {}
    stop = threading.Event()
    before = {p.parent for p in Path(run_folder).rglob("metrics.jsonl")}

    def poll() -> None:
        for p in sorted(Path(run_folder).rglob("metrics.jsonl")):
            if p.parent not in mirrors:
                rel = str(p.parent.relative_to(run_folder)).replace(os.sep, "/")
                new = p.parent not in before
                mirrors[p.parent] = Mirror(p.parent, targets, name=rel, new=new)
            mirrors[p.parent].sync()

    def loop() -> None:
        while not stop.wait(every):
            poll()

    thread = threading.Thread(target=loop, name="report-to", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        poll()
        for m in mirrors.values():
            m.close()
