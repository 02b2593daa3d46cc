"""The rich live views and printed tables of the command line (rich and the standard library only)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


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
        self.task = self.progress.add_task("grid", total=len(costs), done=0, eta="?")
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


def print_grid_summary(path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    """The accuracy tables of a grid's results.json, one per split role."""
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
