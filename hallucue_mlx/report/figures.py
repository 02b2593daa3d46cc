"""The report's figures: PNG and PDF under figures/, without timestamps, so rebuilds are identical.

matplotlib is imported on first use (the Agg backend, fixed fonts and hash salt).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from hallucue_mlx import atomic
from hallucue_mlx.metrics import summarize, wilson_ci
from hallucue_mlx.report.labels import EVAL_LONG, OKABE_ITO, eval_label
from hallucue_mlx.report.load import RunData
from hallucue_mlx.report.tables import Cells, version_accuracy, version_order


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.family": "DejaVu Sans",
            "font.size": 10,
            "axes.titlesize": 11,
            "axes.labelsize": 10,
            "legend.fontsize": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "svg.hashsalt": "hallucue",
        }
    )
    return plt


def model_colors(run: RunData) -> dict[str, str]:
    return {m: OKABE_ITO[i % len(OKABE_ITO)] for i, m in enumerate(run.models)}


def save_figure(fig: Any, figdir: Path, stem: str) -> Path:
    png = figdir / f"{stem}.png"
    # atomic (temp file, then rename): a kill mid-save never leaves a half-written figure
    atomic.write_with(
        png, lambda p: fig.savefig(p, dpi=150, bbox_inches="tight", metadata={"Software": None})
    )
    atomic.write_with(
        figdir / f"{stem}.pdf",
        lambda p: fig.savefig(p, bbox_inches="tight", metadata={"CreationDate": None}),
    )
    import matplotlib.pyplot as plt

    plt.close(fig)
    return png


def fig_matrix(run: RunData, figdir: Path) -> Path | None:
    """Accuracy of every model under every eval condition, a panel per benchmark. Every panel
    uses one fixed 0-100% colour scale (one colour bar), so colours compare across panels and
    runs; each cell gives its accuracy and Wilson 95% interval, each title its n."""
    plt = pyplot()
    benches = [b for b in run.benchmarks if any(k[1] == b and k[2] == "test" for k in run.records)]
    if not benches:
        return None
    ncol = min(3, len(benches))
    nrow = math.ceil(len(benches) / ncol)
    width = 1.25 * len(run.eval_conditions) + 1.6
    fig, axes = plt.subplots(
        nrow,
        ncol,
        figsize=(width * ncol + 0.8, 0.62 * len(run.models) * nrow + 1.3),
        squeeze=False,
        constrained_layout=True,
    )
    cmap = plt.get_cmap("cividis").with_extremes(bad="#dddddd")
    for ax in axes.flat[len(benches) :]:
        ax.axis("off")
    im = None
    for ax, bench in zip(axes.flat, benches):
        grid = np.full((len(run.models), len(run.eval_conditions)), np.nan)
        cis: dict[tuple[int, int], tuple[float, float]] = {}
        n_items = 0
        for i, model in enumerate(run.models):
            summ = (
                summarize(run.records[(model, bench, "test")])
                if (model, bench, "test") in run.records
                else {}
            )
            for j, cond in enumerate(run.eval_conditions):
                if cond in summ:
                    grid[i, j] = 100 * summ[cond]["accuracy"]
                    lo, hi = summ[cond]["ci95"]
                    cis[(i, j)] = (100 * lo, 100 * hi)
                    n_items = max(n_items, int(summ[cond]["n"]))
        im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=100, aspect="auto")
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                v = grid[i, j]
                if np.isfinite(v):
                    color = "white" if v < 55 else "black"
                    ax.text(
                        j, i - 0.1, f"{v:.1f}", ha="center", va="center", fontsize=10, color=color
                    )
                    lo, hi = cis[(i, j)]
                    ax.text(
                        j,
                        i + 0.25,
                        f"[{lo:.0f}, {hi:.0f}]",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color=color,
                    )
                else:
                    ax.text(j, i, "—", ha="center", va="center", color="#555555")
        ax.set_xticks(range(len(run.eval_conditions)), [eval_label(c) for c in run.eval_conditions])
        ax.set_yticks(range(len(run.models)), [run.label(m) for m in run.models])
        ax.set_xlabel("evaluated under")
        ax.set_title(f"{bench} (test, n={n_items}): accuracy % [95% CI]")
        ax.tick_params(length=0)
        for sp in ax.spines.values():
            sp.set_visible(False)
    fig.colorbar(im, ax=list(axes.flat[: len(benches)]), shrink=0.8, label="accuracy % (0-100)")
    return save_figure(fig, figdir, "matrix")


def fig_gains(run: RunData, cells: Cells, figdir: Path) -> Path | None:
    plt = pyplot()
    trained = [  # every model but base: trained here or imported
        m
        for m in [*run.train_conditions, *run.imported]
        if any((m, b) in cells for b in [*run.benchmarks, "AVG"])
    ]
    avg = ["AVG"] if len(run.benchmarks) > 1 else []  # with one benchmark AVG repeats it
    cols = [
        b
        for b in [*run.benchmarks, *avg]
        if any((m, b) in cells and cells[(m, b)].delta for m in trained)
    ]
    if not trained or not cols:
        return None
    colors = model_colors(run)
    fig, axes = plt.subplots(
        1,
        len(cols),
        figsize=(2.6 * len(cols) + 1.2, 0.5 * len(trained) + 1.4),
        sharey=True,
        squeeze=False,
        constrained_layout=True,
    )
    for ax, b in zip(axes[0], cols):
        for i, m in enumerate(trained):
            c = cells.get((m, b))
            if c is None or c.delta is None:
                continue
            d, (lo, hi) = (
                100 * c.delta["diff"],
                (100 * c.delta["ci95"][0], 100 * c.delta["ci95"][1]),
            )
            ax.errorbar(d, i, xerr=[[d - lo], [hi - d]], fmt="o", color=colors[m], capsize=3, ms=6)
        ax.axvline(0, color="#777777", lw=1, ls="--")
        lo, hi = ax.get_xlim()
        ax.set_xlim(
            min(lo, -1.0), max(hi, 1.0)
        )  # at least +-1 point, so zero-width CIs read as such
        ax.set_title(b)
        ax.set_xlabel("Δ accuracy vs base (points)")
        ax.set_yticks(range(len(trained)), [run.label(m) for m in trained])
        ax.set_ylim(len(trained) - 0.5, -0.5)
        ax.grid(axis="x", color="#eeeeee")
    fig.suptitle("Clean test accuracy change vs base, paired bootstrap 95% CI", fontsize=11)
    return save_figure(fig, figdir, "gains")


def fig_versions(run: RunData, bench: str, figdir: Path) -> Path | None:
    plt = pyplot()
    acc = version_accuracy(run, bench)
    if not acc:
        return None
    conds = [c for c in ("none", "blank") if any(k[1] == c for k in acc)]
    models = [m for m in run.models if any((m, c) in acc for c in conds)]
    versions = version_order({v for by in acc.values() for v in by} - {""})
    colors = model_colors(run)
    fig, axes = plt.subplots(
        1,
        len(conds),
        figsize=(4.6 * len(conds) + 0.6, 3.6),
        sharey=True,
        squeeze=False,
        constrained_layout=True,
    )
    width = 0.8 / len(models)
    x = np.arange(len(versions))
    for ax, cond in zip(axes[0], conds):
        for k, m in enumerate(models):
            by = acc.get((m, cond), {})
            vals, errs = [], [[], []]
            for v in versions:
                g = by.get(v)
                if g is None or g["accuracy"] is None or not g.get("n"):
                    vals.append(np.nan)
                    errs[0].append(0.0)
                    errs[1].append(0.0)
                    continue
                a = 100 * g["accuracy"]
                lo, hi = wilson_ci(round(g["accuracy"] * g["n"]), g["n"])
                vals.append(a)
                errs[0].append(max(a - 100 * lo, 0.0))
                errs[1].append(max(100 * hi - a, 0.0))
            ax.bar(
                x + (k - (len(models) - 1) / 2) * width,
                vals,
                width,
                yerr=errs,
                capsize=2,
                error_kw={"elinewidth": 0.8, "ecolor": "#808080"},
                color=colors[m],
                label=run.label(m),
                edgecolor="white",
                linewidth=0.5,
            )
        ns = {
            v: max((acc.get((m, cond), {}).get(v) or {}).get("n", 0) for m in models)
            for v in versions
        }
        ax.set_xticks(x, [f"{v.replace('_', chr(10))}{chr(10)}n={ns[v]}" for v in versions])
        ax.set_title(f"{bench} (test), {EVAL_LONG[cond]}")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", color="#eeeeee")
        ax.set_axisbelow(True)
    axes[0][0].set_ylabel("accuracy % (bars: Wilson 95% CI)")
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, ncol=1)
    return save_figure(fig, figdir, f"versions-{bench}")


def _smooth(values: list[float], weight: float = 0.6) -> list[float]:
    """Debiased exponential moving average (TensorBoard's smoothing), light by default."""
    out, ema, norm = [], 0.0, 0.0
    for v in values:
        ema, norm = weight * ema + (1 - weight) * v, weight * norm + (1 - weight)
        out.append(ema / norm)
    return out


CURVE_PANELS = (
    ("reward", "mean reward", 1.0),
    ("accuracy", "rollout accuracy %", 100.0),
    ("completions/mean_length", "completion length (tokens)", 1.0),
    ("kl", "KL to base (k3)", 1.0),
)


def fig_curves(run: RunData, figdir: Path) -> Path | None:
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    conds = [c for c in run.train_conditions if run.curves.get(c)]
    if not conds:
        return None
    colors = model_colors(run)
    # a line style per condition too: curves that coincide stay visible, and print in grey
    styles = {c: ("-", "--", "-.", ":")[i % 4] for i, c in enumerate(run.train_conditions)}
    fig, axes = plt.subplots(2, 2, figsize=(9.5, 6.2), constrained_layout=True)
    for ax, (key, title, scale) in zip(axes.flat, CURVE_PANELS):
        drawn = False
        for c in conds:
            pts = [
                (r["step"], scale * float(r[key]))
                for r in run.curves[c]
                if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])
            ]
            if not pts:
                continue
            steps, vals = zip(*pts)
            # light smoothing, lighter still for short runs where it would mostly add lag
            weight = min(0.6, len(vals) / 50)
            ax.plot(steps, vals, color=colors[c], alpha=0.25, lw=1)
            ax.plot(
                steps,
                _smooth(list(vals), weight),
                styles[c],
                color=colors[c],
                lw=1.8,
                label=run.label(c),
            )
            drawn = True
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(color="#eeeeee")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if not drawn:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.text(
                0.5,
                0.5,
                f"{key} not logged",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="#777777",
            )
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if not handles:
        for ax in axes.flat:
            handles, labels = ax.get_legend_handles_labels()
            if handles:
                break
    fig.legend(handles, labels, loc="outside lower center", ncol=len(conds), frameon=False)
    fig.suptitle("GRPO training (faint: per step; bold: smoothed)", fontsize=11)
    return save_figure(fig, figdir, "training_curves")


def _clean_eval_accuracy(row: dict[str, Any]) -> Any:
    """A logged in-training eval line's clean accuracy: `eval/none/accuracy`, or, in run folders
    written before the clean condition was named `none` there, `eval/clean/accuracy`."""
    return row.get("eval/none/accuracy", row.get("eval/clean/accuracy"))


def _n_eval(run: RunData) -> int:
    """Held-out items per in-training evaluation point (the run config's train.n_eval)."""
    cfg = (run.manifest or {}).get("config")
    train = cfg.get("train") if isinstance(cfg, dict) else None
    n = train.get("n_eval") if isinstance(train, dict) else None
    return int(n) if isinstance(n, int) and n > 0 else 0


def fig_eval_curves(run: RunData, figdir: Path) -> Path | None:
    """Held-out greedy accuracy logged during training: clean (solid) and own corruption (dashed)."""
    plt = pyplot()
    conds = [c for c in run.train_conditions if run.eval_curves.get(c)]
    if not conds:
        return None
    colors = model_colors(run)
    n = _n_eval(run)
    fig, ax = plt.subplots(figsize=(7.4, 3.8), constrained_layout=True)
    for c in conds:
        rows = run.eval_curves[c]
        lines = [("-", "clean", [(r["step"], _clean_eval_accuracy(r)) for r in rows])]
        if c in run.corruption_trained:  # clean training's (and a control's) is the clean line
            own = [(r["step"], r.get(f"eval/{c}/accuracy")) for r in rows]
            lines.append(("--", eval_label(c), own))
        for ls, suffix, values in lines:
            pts = [(s, v) for s, v in values if isinstance(v, (int, float))]
            if pts:
                xs, ys = zip(*pts)
                ys100 = [100 * y for y in ys]
                line = ax.plot(
                    xs,
                    ys100,
                    ls,
                    marker="o",
                    ms=3,
                    color=colors[c],
                    label=f"{run.label(c)}, {suffix}",
                )
                if n:
                    bounds = [wilson_ci(round(y * n), n) for y in ys]
                    ax.fill_between(
                        xs,
                        [100 * b[0] for b in bounds],
                        [100 * b[1] for b in bounds],
                        color=line[0].get_color(),
                        alpha=0.08 if ls == "-" else 0.05,
                        lw=0,
                    )
    ax.set_xlabel("step")
    ax.set_ylabel("held-out accuracy %")
    ax.set_ylim(0, 100)
    ax.set_title(
        "Greedy evaluation during training"
        + (f" (n={n} held-out items a point; bands: Wilson 95% CI)" if n else ""),
        fontsize=10,
    )
    ax.grid(color="#eeeeee")
    ax.legend(frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return save_figure(fig, figdir, "training_eval")
