"""The report of a sweep folder: accuracy and vision gain against the swept value (dose-response).

    write_sweep_report(sweep_dir) -> report.md, report.html, figures/dose_response.png|pdf,
                                     tables/dose_response.md|csv

Every number is recomputed from each value folder's records (hallucue_mlx.metrics), on the first
evaluation target of each benchmark's test split, as the run report does. Intervals are 95% over
items only: each point is one training seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hallucue_mlx import atomic
from hallucue_mlx.metrics import macro_paired_diff, table1_cells
from hallucue_mlx.report.figures import pyplot, save_figure
from hallucue_mlx.report.html import write_html
from hallucue_mlx.report.labels import BASE, FILTER_NOTE, OKABE_ITO, md_code
from hallucue_mlx.report.load import RunData, SweepData, is_sweep, load_sweep
from hallucue_mlx.report.seeds import write_seeds_report
from hallucue_mlx.report.tables import Table, ci_text, csv_value, pct, signed
from hallucue_mlx.runfolder import CONTROL_MODELS

CLEAN, BLANK = "none", "blank"
SEED_KEY = "seed"  # a sweep of this key (run --seeds N) gets the across-seed report
STEM = "dose_response"


@dataclass(frozen=True)
class DosePoint:
    """One model at one swept value: clean accuracy (with its paired change vs that value's base)
    and vision gain (clean minus blank-image accuracy, paired), averaged over benchmarks."""

    value: Any
    model: str
    n: int
    accuracy: float
    ci95: tuple[float, float]
    delta: float | None
    delta_ci95: tuple[float, float] | None
    vision_gain: float | None
    vision_gain_ci95: tuple[float, float] | None
    shared: bool = False  # copied from an earlier value (its recipe ignores the swept key)


def _records(run: RunData, model: str, cond: str) -> dict[str, list]:
    return {b: run.cell(model, b, "test", cond) for b in run.benchmarks}


def points(sweep: SweepData) -> list[DosePoint]:
    """Every (value, model) with clean test records, in value order (base first)."""
    out = []
    for value, name in zip(sweep.values, sweep.names, strict=False):
        run = sweep.runs.get(name)
        if run is None:
            continue
        clean = {m: _records(run, m, CLEAN) for m in run.models}
        cells = table1_cells(clean, run.benchmarks, CLEAN)
        for m in run.models:
            c = cells.get((m, "AVG"))
            if c is None:
                continue
            blank = _records(run, m, BLANK)
            vg = macro_paired_diff(clean[m], blank) if all(blank.values()) else None
            d = c.delta or {}
            out.append(
                DosePoint(
                    value,
                    m,
                    c.n,
                    c.accuracy,
                    tuple(c.ci95),
                    d.get("diff"),
                    tuple(d["ci95"]) if d.get("ci95") else None,
                    vg["diff"] if vg else None,
                    tuple(vg["ci95"]) if vg else None,
                    m in sweep.shared.get(name, []),
                )
            )
    return out


def dose_table(sweep: SweepData, pts: list[DosePoint]) -> Table:
    cols = [
        sweep.key,
        "Model",
        "n",
        "Clean acc. % [95% CI]",
        "Δ vs base [95% CI]",
        "Vision gain (clean − BI) [95% CI]",
    ]
    rows, csv_rows = [], []
    for p in pts:
        if p.shared:  # the same numbers as at the first value: shown once
            continue
        shown = _shown(p.value)
        if _ratio_zero(sweep, p.model):
            shown = "0 (no corruption)"
        elif sweep.key == RATIO_KEY and p.model in CONTROL_MODELS:
            shown = "— (no corruption)"  # trained on clean items once, like clean GRPO
        elif p.model == BASE:
            shown = "— (untrained)"
        rows.append(
            [
                md_code(shown),
                sweep.any_run.label(p.model),
                str(p.n),
                f"{pct(p.accuracy)} {ci_text(p.ci95)}",
                "—" if p.delta is None else f"{signed(p.delta)} {ci_text(p.delta_ci95)}",
                "—"
                if p.vision_gain is None
                else f"{signed(p.vision_gain)} {ci_text(p.vision_gain_ci95)}",
            ]
        )
        dci = p.delta_ci95 or (None, None)
        vci = p.vision_gain_ci95 or (None, None)
        csv_rows.append(
            [
                sweep.key,
                _shown(p.value),
                p.model,
                sweep.any_run.label(p.model),
                p.n,
                csv_value(p.accuracy),
            ]
            + [
                csv_value(p.ci95[0]),
                csv_value(p.ci95[1]),
                csv_value(p.delta),
                csv_value(dci[0]),
                csv_value(dci[1]),
            ]
            + [csv_value(p.vision_gain), csv_value(vci[0]), csv_value(vci[1])]
        )
    csv_cols = ["key", "value", "train_condition", "label", "n", "accuracy", "ci_lo", "ci_hi"]
    csv_cols += ["delta_vs_base", "delta_ci_lo", "delta_ci_hi"]
    csv_cols += ["vision_gain", "vision_gain_ci_lo", "vision_gain_ci_hi"]
    return Table(STEM, cols, rows, csv_cols, csv_rows)


def _shown(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _positions(values: list[Any]) -> tuple[list[float], bool]:
    """x positions: the values themselves when numeric and roughly evenly spread, else 0..n-1."""
    nums = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if nums and len(values) > 1:
        xs = sorted(float(v) for v in values)
        gaps = [b - a for a, b in zip(xs, xs[1:])]
        if min(gaps) > 0 and max(gaps) / min(gaps) <= 4:
            return [float(v) for v in values], True
    return [float(i) for i in range(len(values))], False


RATIO_KEY = "grid.ratio"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINES = ("-", "--", "-.", ":")


def _ratio_zero(sweep: SweepData, model: str) -> bool:
    """In a ratio sweep, clean GRPO is the 0% end of every corrupted line (trained once)."""
    return sweep.key == RATIO_KEY and model == CLEAN


def fig_dose_response(sweep: SweepData, pts: list[DosePoint], figdir: Path) -> Path | None:
    """Three panels against the swept value: clean accuracy, the change vs base and the vision
    gain, a line per trained condition with its 95% CI as a band. Each line has its own marker
    and dash and is nudged sideways a little, so identical lines stay visible. A model whose
    recipe ignores the swept key is drawn once: the base as a grey band, and in a ratio sweep
    clean GRPO as the ratio-0 point every corrupted line starts from."""
    if not pts:
        return None
    plt = pyplot()
    values = list(sweep.values)
    ratio = sweep.key == RATIO_KEY and any(p.model == CLEAN for p in pts)
    if ratio and 0 not in values:
        values = [0, *values]
    xs, numeric = _positions(values)
    xof = {json.dumps(v): x for v, x in zip(values, xs)}
    span = (max(xs) - min(xs)) or 1.0
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), constrained_layout=True)
    order = [m for m in dict.fromkeys(p.model for p in pts) if m != BASE]
    getters = (_acc, _delta, _gain)
    zero = next((p for p in pts if _ratio_zero(sweep, p.model)), None) if ratio else None
    base = next((p for p in pts if p.model == BASE), None)
    if base is not None:
        for ax, get in zip(axes, getters):
            got = get(base)
            if got is None:
                continue
            y, lo, hi = got
            ax.axhline(y, color="#777777", ls="--", lw=1.2, label=sweep.any_run.label(BASE))
            ax.axhspan(lo, hi, color="#777777", alpha=0.08, lw=0)
    for k, model in enumerate(order):
        color = OKABE_ITO[1 + k % (len(OKABE_ITO) - 1)]
        dodge = (k - (len(order) - 1) / 2) * 0.02 * span
        style = dict(color=color, marker=MARKERS[k % len(MARKERS)], ms=5, ls=LINES[k % len(LINES)])
        if _ratio_zero(sweep, model):
            mine = [zero] if zero is not None else []
            x = [xof[json.dumps(0)]]
        else:
            mine = sorted(
                (p for p in pts if p.model == model), key=lambda p: xof[json.dumps(p.value)]
            )
            x = [xof[json.dumps(p.value)] for p in mine]
            if zero is not None and model not in CONTROL_MODELS:  # starts at clean GRPO, 0%
                mine, x = [zero, *mine], [xof[json.dumps(0)], *x]
        for ax, get in zip(axes, getters):
            got = [(xi + dodge, *get(p)) for xi, p in zip(x, mine) if get(p) is not None]
            if not got:
                continue
            gx, y, lo, hi = (list(t) for t in zip(*got))
            label = sweep.any_run.label(model)
            if _ratio_zero(sweep, model):
                label += " (ratio 0: no corruption)"
                ax.errorbar(
                    gx,
                    y,
                    yerr=[[a - b for a, b in zip(y, lo)], [b - a for a, b in zip(y, hi)]],
                    color=color,
                    marker=style["marker"],
                    ms=7,
                    capsize=3,
                    ls="none",
                    label=label,
                )
                continue
            ax.plot(gx, y, label=label, **style)
            # light fill plus edge lines: overlapping bands stay readable
            ax.fill_between(gx, lo, hi, color=color, alpha=0.08, lw=0)
            for edge in (lo, hi):
                ax.plot(gx, edge, color=color, lw=0.7, ls=":", alpha=0.8)
    titles = (
        "Clean test accuracy (%)",
        "Change vs base, paired (points)",
        "Vision gain: clean − blank (points)",
    )
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.set_xlabel(sweep.key)
        ax.set_xticks(xs, [_shown(v) for v in values])
        ax.grid(color="#eeeeee")
        if not numeric:
            ax.set_xlim(min(xs) - 0.3, max(xs) + 0.3)
    for ax in axes[1:]:
        ax.axhline(0, color="#999999", lw=1)
        lo, hi = ax.get_ylim()  # at least +-1 point, so that a zero-width interval reads as one
        ax.set_ylim(min(lo, -1.0), max(hi, 1.0))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), frameon=False)
    n = max((p.n for p in pts), default=0)
    fig.suptitle(
        f"Dose-response over {sweep.key} (n={n} test items a point; bands: 95% CI over items, "
        "one seed; lines nudged sideways so that equal ones stay visible)"
    )
    return save_figure(fig, figdir, STEM)


def _acc(p: DosePoint) -> tuple[float, float, float]:
    return 100 * p.accuracy, 100 * p.ci95[0], 100 * p.ci95[1]


def _delta(p: DosePoint) -> tuple[float, float, float] | None:
    if p.delta is None or p.delta_ci95 is None:
        return None
    return 100 * p.delta, 100 * p.delta_ci95[0], 100 * p.delta_ci95[1]


def _gain(p: DosePoint) -> tuple[float, float, float] | None:
    if p.vision_gain is None or p.vision_gain_ci95 is None:
        return None
    return 100 * p.vision_gain, 100 * p.vision_gain_ci95[0], 100 * p.vision_gain_ci95[1]


def reading(sweep: SweepData, pts: list[DosePoint]) -> list[str]:
    """Plain sentences: per trained condition, accuracy at the first and last value, and whether
    any value moved clean accuracy or vision gain beyond its interval."""
    out = []
    models = [m for m in dict.fromkeys(p.model for p in pts) if m != BASE]
    for m in models:
        mine = [p for p in pts if p.model == m]
        a, b = mine[0], mine[-1]
        if len(mine) > 1 and all(p.shared for p in mine[1:]):
            out.append(
                f"- **{sweep.any_run.label(m)}** does not depend on {sweep.key} (one model, shared): clean "
                f"accuracy {pct(a.accuracy)}, change vs the base {signed(a.delta)} "
                f"{ci_text(a.delta_ci95)}."
            )
            continue
        moved = [md_code(_shown(p.value)) for p in mine if p.delta_ci95 and _excl(p.delta_ci95)]
        text = (
            f"- **{sweep.any_run.label(m)}**: clean accuracy {pct(a.accuracy)} at {sweep.key}="
            f"{md_code(_shown(a.value))} and {pct(b.accuracy)} at {md_code(_shown(b.value))}; "
        )
        text += (
            f"its change vs the base excludes zero at {', '.join(moved)}."
            if moved
            else "at no value does its change vs the base exclude zero."
        )
        if a.vision_gain is not None and b.vision_gain is not None:
            text += f" Vision gain {signed(a.vision_gain)} → {signed(b.vision_gain)} points."
        out.append(text)
    return out


def _excl(ci: tuple[float, float]) -> bool:
    return ci[0] > 0 or ci[1] < 0


def _head(sweep: SweepData, pts: list[DosePoint]) -> list[str]:
    run = sweep.any_run
    ns = sorted({p.n for p in pts})
    lines = [
        f"# Sweep of `{sweep.key}`: dose-response",
        "",
        f"- Model: {md_code(run.model_name)}" + (" (a --quick smoke run)" if sweep.quick else ""),
        f"- Values of `{sweep.key}`: {', '.join(md_code(_shown(v)) for v in sweep.values)}",
        f"- Numbers: the test split of {', '.join(run.benchmarks)} ({'/'.join(map(str, ns))} "
        "items per point), one training seed per point; 95% intervals cover item sampling only "
        "(Wilson for one benchmark's accuracy, paired bootstrap for differences), not seeds.",
        "- Vision gain: clean accuracy minus blank-image accuracy of the same model, paired on items.",
        *([f"- {FILTER_NOTE}"] if run.filtered else []),
    ]
    for name in sweep.names:
        if name in sweep.runs:
            shared = sweep.shared.get(name) or []
            note = (
                f" (shared, not recomputed: {', '.join(map(run.label, shared))})" if shared else ""
            )
            lines.append(f"- [{name}]({name}/report.md){note}")
        else:
            lines.append(f"- {name}: not run yet")
    return [*lines, ""]


def write_sweep_report(root: Path) -> Path:
    """Rebuild root/report.md, figures/dose_response.* and tables/dose_response.* (a sweep of
    `seed` gets the across-seed report, report.seeds, instead)."""
    sweep = load_sweep(Path(root))
    if sweep.key == SEED_KEY:
        return write_seeds_report(sweep)
    pts = points(sweep)
    figdir, tabdir = sweep.root / "figures", sweep.root / "tables"
    figdir.mkdir(exist_ok=True)
    tabdir.mkdir(exist_ok=True)
    table = dose_table(sweep, pts)
    atomic.write_text(tabdir / f"{STEM}.md", table.markdown() + "\n")
    atomic.write_text(tabdir / f"{STEM}.csv", table.csv())
    fig = fig_dose_response(sweep, pts, figdir)
    lines = _head(sweep, pts)
    if sweep.quick:  # after the title: a smoke sweep says so before any number
        lines[1:1] = [
            "",
            "> **Smoke run (`--quick`).** Every value's grid ran on a few items with a few "
            "training steps, to check the pipeline; its numbers say nothing about the method. "
            "Run without `--quick` for the real sweep (`hallucue-mlx plan` predicts its time).",
        ]
    if fig is not None:
        lines += [f"![Dose-response over {sweep.key}](figures/{fig.name})", ""]
    lines += ["## Dose-response table", "", table.markdown(), ""]
    if any(p.shared for p in pts):
        lines += [
            "A model shared between values (same recipe) has one row, at its first value "
            "(in a ratio sweep, clean GRPO is the ratio-0 row: no corruption).",
            "",
        ]
    lines += ["## Reading", "", *(reading(sweep, pts) or ["- no trained model yet"]), ""]
    lines += ["## Files", "", f"- [{STEM}.csv](tables/{STEM}.csv), [{STEM}.md](tables/{STEM}.md)"]
    if fig is not None:
        lines.append(f"- [{fig.name}](figures/{fig.name}) (also [PDF](figures/{STEM}.pdf))")
    path = atomic.write_text(sweep.root / "report.md", "\n".join(lines) + "\n")
    write_html(path)
    return path


__all__ = ["DosePoint", "SweepData", "is_sweep", "load_sweep", "points", "write_sweep_report"]
