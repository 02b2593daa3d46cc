"""The rich live views and printed tables of the command line: the grid, a training, an evaluation."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hallucue_mlx.data.item import VERSIONS
from hallucue_mlx.runfolder import SUMMARY_EXTRA_KEYS


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (a notebook, or nbclient running one)."""
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None else None  # type: ignore[attr-defined]
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def live_display() -> bool:
    """Whether a live progress bar can be drawn: a terminal, or a notebook with ipywidgets (rich
    draws its live views there as widgets; without them it shows nothing)."""
    if in_notebook():
        import importlib.util

        return importlib.util.find_spec("ipywidgets") is not None
    return sys.stderr.isatty()


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


def _untag(message: str) -> str:
    from rich.text import Text

    return Text.from_markup(message).plain


class PlainProgress:
    """Progress as plain lines where a live bar cannot be drawn (piped output, CI logs, a
    notebook without ipywidgets): a line at each new task, then at most one every `every`
    seconds, each with the elapsed time. In a notebook the lines go to stdout (the cell's
    output), elsewhere to stderr like the live bar."""

    def __init__(self, name: str, every: float = 15.0) -> None:
        self.name, self.every = name, every
        self.t0 = time.monotonic()
        self.last, self.last_task = -math.inf, None
        self.stream = sys.stdout if in_notebook() else sys.stderr

    def show(self, description: str, *extra: str) -> None:
        now = time.monotonic()
        task = description.split(":")[0]
        if task == self.last_task and now - self.last < self.every:
            return
        self.last, self.last_task = now, task
        self.say(description, *extra)

    def say(self, message: str, *extra: str) -> None:
        self.last = time.monotonic()
        tail = "".join(f"  {e}" for e in extra if e)
        print(f"[{self.name} {_clock(self.last - self.t0)}] {message}{tail}", file=self.stream)
        self.stream.flush()


class GridView:
    """Rich live view: the cell in progress, overall progress, ETA and the latest reward.

    Progress counts tasks (a training advances by its step fraction). The ETA uses the measured
    seconds per training step and per evaluated item so far; '?' until a kind has been measured."""

    def __init__(self, costs: Sequence[tuple[str, int]], quiet: bool) -> None:
        """costs: per task, (kind, units): ('train', steps) or ('eval', item-conditions)."""
        self.quiet = quiet
        self.done_units = {"train": 0.0, "eval": 0.0}
        self.seconds = {"train": 0.0, "eval": 0.0}
        self.remaining = {"train": 0.0, "eval": 0.0}
        for kind, units in costs:
            self.remaining[kind] += units
        self.reward = "-"
        self.n_done = 0
        self.plain: PlainProgress | None = None
        if quiet:
            return
        if not live_display():
            # piped output, CI logs, or a notebook without ipywidgets: plain lines instead of a
            # live bar (which would print nothing there, or glue its last frame onto the next line)
            self.plain = PlainProgress("grid")
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
        self.task = self.progress.add_task("grid", total=len(costs), done=0, eta="?")
        self.status = Text("starting")
        self.live = Live(
            Group(self.progress, self.status), console=self.console, refresh_per_second=2
        )

    def __enter__(self) -> GridView:
        if not self.quiet and self.plain is None:
            self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.quiet and self.plain is None:
            self.live.stop()
            self.console.print()  # the last frame keeps its own line

    def _plain_extra(self, with_reward: bool) -> list[str]:
        """The reward (once there is one) and the ETA (once it can be estimated)."""
        eta = self.eta()
        return [
            *([f"reward {self.reward}"] if with_reward and self.reward != "-" else []),
            *([f"ETA {eta}"] if eta != "?" else []),
        ]

    def eta(self) -> str:
        total = 0.0
        for kind in ("train", "eval"):
            if self.remaining[kind] <= 0:
                continue
            if self.done_units[kind] <= 0:
                return "?"
            total += self.remaining[kind] * self.seconds[kind] / self.done_units[kind]
        return _clock(total)

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
        if self.plain is not None:
            self.plain.show(description, *self._plain_extra(with_reward=True))
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
        if self.plain is not None:
            self.plain.say(_untag(message), *self._plain_extra(with_reward=False))
            return
        self.progress.update(self.task, completed=self.n_done, done=self.n_done, eta=self.eta())
        self.console.print(message)


def print_grid_summary(path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    """The accuracy tables of a grid's results.json, one per split role."""
    res = json.loads(path.read_text())
    console = Console()
    for split in ("test", "train"):
        table = Table(
            title=f"accuracy % ({split} split)",
            caption="rows: the model (GRPO-BI: trained with blank images, ...); columns: "
            "benchmark, eval corruption",
        )
        table.add_column("trained", style="bold")
        benches = sorted({c["benchmark"] for c in res["cells"] if c["split"] == split})
        conds = res["eval_conditions"]
        for b in benches:
            for c in conds:
                table.add_column(f"{b}\n{c}", justify="right")
        labels = res.get("labels", {})
        for m in res["models"]:
            row = [labels.get(m, m)]
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
    if res.get("label_note"):
        console.print(res["label_note"], highlight=False)
    console.print(f"results: {path} ({res['timing']['total_s']:.0f} s of work)")


# ================================================================ training


class TrainView:
    """Rich live view: step, reward, accuracy, KL, tokens/s, ETA (silent when quiet)."""

    def __init__(self, total: int, start: int, quiet: bool = False) -> None:
        self.quiet, self.total = quiet, total
        self.plain = None if quiet or live_display() else PlainProgress("GRPO")
        if quiet or self.plain is not None:
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
        if not self.quiet and self.plain is None:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if not self.quiet and self.plain is None:
            self.progress.stop()

    def update(self, step: int, rec: dict) -> None:
        if self.quiet:
            return
        if self.plain is not None:
            self.plain.show(
                f"step {step}/{self.total}: reward {rec['reward']:.3f}  acc "
                f"{rec['accuracy']:.2f}  kl {rec.get('kl', 0.0):.4f}"
            )
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
        if self.plain is not None:
            self.plain.say(message)
        elif not self.quiet:
            self.console.print(f"[yellow]{message}[/yellow]")

    def note(self, rec: dict) -> None:
        if self.quiet:
            return
        parts = [
            f"{k.split('/')[1]} acc {v:.3f}" for k, v in rec.items() if k.endswith("/accuracy")
        ]
        line = f"eval @ step {rec['step']}: " + ", ".join(parts)
        if self.plain is not None:
            self.plain.say(line)
        else:
            self.console.print(line)


# ================================================================ evaluation


def eval_progress(console: Any, enabled: bool) -> Any:
    """The evaluation progress bar: items done, items/s, elapsed time and ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class _Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("-- items/s" if speed is None else f"{speed:.2f} items/s", style="cyan")

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not (enabled and live_display()),
    )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def conditions_of(summary: dict[str, Any]) -> list[str]:
    """Condition names of a summary (its keys other than SUMMARY_EXTRA_KEYS), in order."""
    return [k for k in summary if k not in SUMMARY_EXTRA_KEYS]


def print_table(summary: dict[str, Any], console: Any = None, title: str = "") -> None:
    """Rows: conditions; columns: n, accuracy, 95% CI, format, mean tokens, and accuracy per
    modality version (all in %). Corruption coverage and grader errors follow as notes."""
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table

    console = console or Console()
    conds = conditions_of(summary)
    found = {v for c in conds for v in summary[c]["by_version"]}
    versions = [v for v in VERSIONS if v in found] + sorted(found - set(VERSIONS))
    table = Table(title=title or "evaluation", caption="accuracy, 95% CI and format in %")
    table.add_column("condition", style="bold", no_wrap=True)
    for name in ("n", "accuracy", "95% CI", "format", "mean tokens"):
        table.add_column(name, justify="right", no_wrap=name != "mean tokens")
    for v in versions:
        n = summary[conds[0]]["by_version"].get(v, {}).get("n", 0)
        table.add_column(f"{(v or '(none)').replace('_', ' ')} (n={n})", justify="right")
    notes = []
    for c in conds:
        s = summary[c]
        lo, hi = s["ci95"]
        tokens = s["mean_response_tokens"]
        row = [
            c,
            str(s["n"]),
            _pct(s["accuracy"]),
            f"{_pct(lo)}-{_pct(hi)}",
            _pct(s["format_rate"]),
            "-" if tokens is None else f"{tokens:.1f}",
        ]
        for v in versions:
            g = s["by_version"].get(v)
            row.append("-" if g is None else _pct(g["accuracy"]))
        table.add_row(*row)
        changed = s.get("corruption_changed_rate")
        if c != "none" and changed is not None and changed < 1:
            notes.append(f"{c} changed {_pct(changed)}% of the items (the rest were shown as is)")
    # Piped output (files, CI logs) gets the table's natural width rather than a folded one.
    width = console.width
    if not console.is_terminal:
        wide = console.options.update(max_width=400)
        console.width = max(width, Measurement.get(console, wide, table).maximum)
    try:
        console.print(table)
    finally:
        console.width = width
    for note in notes:
        console.print(f"note: {note}")
    errors = summary.get("meta", {}).get("grader_errors", 0)
    if errors:
        console.print(
            f"[yellow]{errors} responses could not be graded (grader errors, counted wrong); "
            "see `grader_error` in the records[/yellow]"
        )
