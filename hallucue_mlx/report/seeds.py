"""The report of a seed sweep (`run --seeds N`, grid.seeds): every model's numbers across seeds.

    write_seeds_report(sweep) -> report.md, report.html, tables/seeds.md|csv,
                                 tables/seeds_matrix.md|csv, tables/seeds_diagnostics.md|csv,
                                 tables/seeds_vs_clean.md|csv

Each value folder is an ordinary run of one training seed; the data subset (data.seed) is the same
in all, so every seed scores the same test items. Per model: clean accuracy per seed, the mean
and spread across seeds, and 95% intervals valid for few seeds (metrics.seed_cluster_ci): a t
interval whose variance adds the seed-to-seed variance of the seed means and the item sampling
variance from a bootstrap that resamples whole clusters of items (the items that are one question:
one stated fact in several wordings, one MathVerse problem in five versions), with
Welch-Satterthwaite degrees of freedom and never narrower than the t interval over the seed means.
Changes vs base are paired within each seed. Benchmarks are macro-averaged as in Table 1.
The modality diagnostics (vision gain, text gain on the items text removal changed, text-removal
coverage, hallucination) are each seed's run report's, given as mean and range over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hallucue_mlx import atomic
from hallucue_mlx.corrupt import CORRUPTIONS
from hallucue_mlx.metrics import item_scores, record_cluster, seed_cluster_ci
from hallucue_mlx.report.html import write_html
from hallucue_mlx.report.labels import BASE, FILTER_NOTE, eval_label, md_code
from hallucue_mlx.report.load import RunData, SweepData
from hallucue_mlx.report.tables import (
    Table,
    ci_text,
    csv_value,
    diagnostics_all,
    pct,
    signed,
)
from hallucue_mlx.runfolder import CONTROL_MODELS, RANDOM_REWARD

CLEAN = "none"
Interval = tuple[float, float, float]  # mean, lo, hi


@dataclass(frozen=True)
class SeedRow:
    """One model across the seeds that finished it."""

    model: str
    seeds: list[Any]
    accuracy_per_seed: list[float]  # clean, macro over benchmarks
    accuracy: Interval
    delta: Interval | None  # clean change vs base, paired within each seed; None for base
    matrix: dict[str, Interval]  # eval condition -> accuracy across seeds

    @property
    def spread(self) -> float:
        """Sample standard deviation of the per-seed clean accuracy (0 with one seed)."""
        x = self.accuracy_per_seed
        return float(np.std(x, ddof=1)) if len(x) > 1 else 0.0


def _scores(run: RunData, model: str, cond: str) -> dict[str, dict[str, float]] | None:
    """benchmark -> item -> score of one model under one condition; None if a benchmark is missing."""
    out = {}
    for b in run.benchmarks:
        recs = run.cell(model, b, "test", cond)
        if not recs:
            return None
        out[b] = item_scores(recs)
    return out


def _clusters(run: RunData, model: str, cond: str) -> dict[str, dict[str, str]]:
    """benchmark -> item -> its cluster (records' `cluster`, else the item itself)."""
    return {
        b: {str(r["id"]): record_cluster(r) for r in run.cell(model, b, "test", cond)}
        for b in run.benchmarks
    }


def _ci(
    per_seed: list[dict[str, dict[str, float]]], clusters: dict[str, dict[str, str]]
) -> Interval:
    """seed_cluster_ci of a (seeds, items) table, its items' clusters named per benchmark."""
    table = _table(per_seed)
    labels = [
        f"{b}\x1f{clusters.get(b, {}).get(i, i)}"
        for b in per_seed[0]
        for i in per_seed[0][b]
        if all(i in s[b] for s in per_seed)
    ]
    return seed_cluster_ci(table, labels)


def _table(per_seed: list[dict[str, dict[str, float]]]) -> np.ndarray:
    """(seeds, items): items shared by every seed, weighted so that the plain mean is the
    unweighted mean over benchmarks (the paper's AVG)."""
    cols: list[np.ndarray] = []
    benches = list(per_seed[0])
    n_total = 0
    parts = []
    for b in benches:
        ids = [i for i in per_seed[0][b] if all(i in s[b] for s in per_seed)]
        parts.append((b, ids))
        n_total += len(ids)
    for b, ids in parts:
        w = n_total / (len(benches) * max(len(ids), 1))
        cols.append(np.array([[w * s[b][i] for i in ids] for s in per_seed]))
    return np.concatenate(cols, axis=1)


def seed_rows(sweep: SweepData) -> list[SeedRow]:
    """One row per model that some seed has finished, base first."""
    runs = [(v, sweep.runs[n]) for v, n in zip(sweep.values, sweep.names) if n in sweep.runs]
    if not runs:
        return []
    conds = runs[0][1].eval_conditions
    out = []
    for model in runs[0][1].models:
        have = [(v, r) for v, r in runs if _scores(r, model, CLEAN) is not None]
        if not have:
            continue
        seeds = [v for v, _ in have]
        clean = [_scores(r, model, CLEAN) for _, r in have]
        clusters = _clusters(have[0][1], model, CLEAN)
        acc = _table(clean)
        delta = None
        if model != BASE:
            base = [_scores(r, BASE, CLEAN) for _, r in have]
            if all(b is not None for b in base):
                paired = [
                    {b: {i: c[b][i] - bs[b][i] for i in c[b] if i in bs[b]} for b in c}
                    for c, bs in zip(clean, base, strict=True)
                ]
                delta = _ci(paired, clusters)
        matrix = {}
        for cond in conds:
            per = [_scores(r, model, cond) for _, r in have]
            if all(p is not None for p in per):
                matrix[cond] = _ci(per, clusters)
        out.append(
            SeedRow(
                model,
                seeds,
                [float(x) for x in acc.mean(axis=1)],
                _ci(clean, clusters),
                delta,
                matrix,
            )
        )
    return out


def _within_noise(iv: Interval) -> bool:
    return iv[1] <= 0 <= iv[2]


def seeds_table(sweep: SweepData, rows: list[SeedRow]) -> Table:
    seeds = sweep.values
    cols = ["Model", *(f"seed {s}" for s in seeds), "mean ± sd", "95% CI (seeds + items)"]
    cols += ["Δ vs base [95% CI]", ""]
    md, csv_rows = [], []
    for r in rows:
        per = dict(zip(r.seeds, r.accuracy_per_seed, strict=True))
        cells = [pct(per[s]) if s in per else "—" for s in seeds]
        verdict = ""
        if r.delta is not None:
            verdict = (
                "within noise" if _within_noise(r.delta) else ("gain" if r.delta[0] > 0 else "loss")
            )
        md.append(
            [
                sweep.any_run.label(r.model),
                *cells,
                f"{pct(r.accuracy[0])} ± {100 * r.spread:.1f}",
                ci_text(r.accuracy[1:]),
                "—" if r.delta is None else f"{signed(r.delta[0])} {ci_text(r.delta[1:])}",
                verdict,
            ]
        )
        d = r.delta or (None, None, None)
        csv_rows.append(
            [r.model, sweep.any_run.label(r.model), len(r.seeds)]
            + [csv_value(per.get(s)) for s in seeds]
            + [csv_value(x) for x in (*r.accuracy, r.spread, *d)]
        )
    csv_cols = ["train_condition", "label", "n_seeds", *(f"accuracy_seed_{s}" for s in seeds)]
    csv_cols += ["accuracy_mean", "ci_lo", "ci_hi", "accuracy_sd", "delta_vs_base"]
    csv_cols += ["delta_ci_lo", "delta_ci_hi"]
    return Table("seeds", cols, md, csv_cols, csv_rows)


def matrix_seeds_table(sweep: SweepData, rows: list[SeedRow]) -> Table:
    conds = sweep.any_run.eval_conditions
    cols = ["Model (trained under)", *(eval_label(c) for c in conds)]
    md, csv_rows = [], []
    for r in rows:
        md.append(
            [sweep.any_run.label(r.model)]
            + [
                f"{pct(r.matrix[c][0])} {ci_text(r.matrix[c][1:])}" if c in r.matrix else "—"
                for c in conds
            ]
        )
        for c in conds:
            if c in r.matrix:
                csv_rows.append([r.model, c, len(r.seeds), *(csv_value(x) for x in r.matrix[c])])
    return Table(
        "seeds_matrix",
        cols,
        md,
        ["train_condition", "eval", "n_seeds", "accuracy", "ci_lo", "ci_hi"],
        csv_rows,
    )


def _paired_delta(runs: list[RunData], a: str, b: str, cond: str) -> Interval | None:
    """a minus b under one eval condition, paired by item within each seed; bootstrap over seeds
    and items. None unless every run has both models under that condition."""
    diffs = []
    for r in runs:
        sa, sb = _scores(r, a, cond), _scores(r, b, cond)
        if sa is None or sb is None:
            return None
        diffs.append({k: {i: sa[k][i] - sb[k][i] for i in sa[k] if i in sb[k]} for k in sa})
    return _ci(diffs, _clusters(runs[0], a, cond)) if diffs else None


def versus_clean_table(sweep: SweepData) -> Table | None:
    """Each corruption-trained model against clean GRPO, on clean inputs and under the corruption
    it was trained with: the paper's comparisons (findings 2, 3 and 6); the random-reward control
    against clean GRPO on clean inputs. None without clean GRPO."""
    runs = [sweep.runs[n] for n in sweep.names if n in sweep.runs]
    if not runs or CLEAN not in runs[0].models:
        return None
    conds = runs[0].eval_conditions
    cols = ["Model", "seeds", "Δ vs GRPO, clean [95% CI]", "Δ vs GRPO, under its own corruption"]
    md, csv_rows = [], []
    for model in runs[0].models:
        control = model in CONTROL_MODELS  # trained on clean items: no corruption of its own
        if model in (BASE, CLEAN) or (model not in CORRUPTIONS and not control):
            continue
        have = [r for r in runs if model in r.models and CLEAN in r.models]
        cells = []
        for cond in (CLEAN, model):
            iv = _paired_delta(have, model, CLEAN, cond) if cond in conds else None
            if iv is None:
                cells.append("—")
                continue
            verdict = "within noise" if _within_noise(iv) else ("higher" if iv[0] > 0 else "lower")
            cells.append(f"{signed(iv[0])} {ci_text(iv[1:])} ({verdict})")
            csv_rows.append([model, CLEAN, cond, len(have), *(csv_value(x) for x in iv)])
        cells[1] = "— (no corruption)" if control else f"{eval_label(model)}: {cells[1]}"
        md.append([sweep.any_run.label(model), str(len(have)), *cells])
    if not md:
        return None
    return Table(
        "seeds_vs_clean",
        cols,
        md,
        ["train_condition", "versus", "eval", "n_seeds", "delta", "ci_lo", "ci_hi"],
        csv_rows,
    )


def _spread_text(values: list[float], signed_values: bool) -> str:
    """'mean (min to max)' in percentage points over seeds."""
    show = signed if signed_values else pct
    mean = float(np.mean(values))
    if len(values) == 1:
        return show(mean)
    return f"{show(mean)} ({show(min(values))} to {show(max(values))})"


def diagnostics_seeds_table(sweep: SweepData) -> Table:
    """Per model and benchmark, each seed's modality diagnostics as mean and range over seeds."""
    runs = [(v, sweep.runs[n]) for v, n in zip(sweep.values, sweep.names) if n in sweep.runs]
    per_seed = [(v, diagnostics_all(r)) for v, r in runs]
    conds = [c for c in (runs[0][1].eval_conditions if runs else []) if c != CLEAN]
    cols = ["Benchmark", "Model", "seeds", "vision gain (clean−BI)"]
    cols += ["text gain (clean−TR) on changed items", "TR coverage"]
    cols += [
        f"hallucination under {eval_label(c)}: answered % of n (declined %; acc. vs chance %; "
        "top-answer share %)"
        for c in conds
    ]
    md, csv_rows = [], []
    keys = list(per_seed[0][1]) if per_seed else []
    for model, bench in keys:
        have = [(v, d[(model, bench)]) for v, d in per_seed if (model, bench) in d]
        row = [bench, sweep.any_run.label(model), str(len(have))]
        for key in ("vision_gain", "text_gain"):
            vals = [d[key]["diff"] for _, d in have if d.get(key)]
            row.append(_spread_text(vals, True) if vals else "—")
            csv_rows += [
                [bench, model, key, v, csv_value(d[key]["diff"])] for v, d in have if d.get(key)
            ]
        cov = have[0][1].get("text_removal_coverage") if have else None
        row.append(f"{cov['changed']}/{cov['n']}" if cov else "—")  # items, not seeds: one value
        for c in conds:
            hs = [(v, d["hallucination"].get(c)) for v, d in have]
            hs = [(v, h) for v, h in hs if h and h["n"]]
            if not hs:  # no item this corruption left unanswerable
                row.append("—")
                continue
            rates = [h["rate"] for _, h in hs]
            declined = [h.get("declined_rate") or 0.0 for _, h in hs]
            acc = [
                h["known_correct_rate"] for _, h in hs if h.get("known_correct_rate") is not None
            ]
            chance = [h["chance_rate"] for _, h in hs if h.get("chance_rate") is not None]
            top = [
                h["concentration"]["top_share"]
                for _, h in hs
                if (h.get("concentration") or {}).get("top_share") is not None
            ]
            row.append(
                f"{_spread_text(rates, False)} of {hs[0][1]['n']} "
                f"(declined {pct(float(np.mean(declined)))}; "
                f"{pct(float(np.mean(acc))) if acc else '—'} vs "
                f"{pct(float(np.mean(chance))) if chance else '—'}; "
                f"top {pct(float(np.mean(top))) if top else '—'})"
            )
            for name, key in (("hallucination_rate", "rate"), ("declined_rate", "declined_rate")):
                csv_rows += [[bench, model, f"{name}/{c}", v, csv_value(h.get(key))] for v, h in hs]
        md.append(row)
    return Table(
        "seeds_diagnostics",
        cols,
        md,
        ["benchmark", "train_condition", "metric", "seed", "value"],
        csv_rows,
    )


def reading(sweep: SweepData, rows: list[SeedRow]) -> list[str]:
    out = []
    for r in rows:
        if r.delta is None:
            continue
        n = len(r.seeds)
        what = (
            "within noise (the interval includes 0)"
            if _within_noise(r.delta)
            else ("a gain" if r.delta[0] > 0 else "a loss") + " beyond seed and item noise"
        )
        out.append(
            f"- **{sweep.any_run.label(r.model)}**: clean accuracy {signed(r.delta[0])} points vs base "
            f"{ci_text(r.delta[1:])} over {n} seed{'s' if n != 1 else ''}: {what}; per seed "
            + ", ".join(pct(a) for a in r.accuracy_per_seed)
            + "."
        )
    return out


def write_seeds_report(sweep: SweepData) -> Any:
    """Rebuild sweep.root/report.md (+ .html) and its tables from the value folders."""
    rows = seed_rows(sweep)
    tabdir = sweep.root / "tables"
    tabdir.mkdir(exist_ok=True)
    table, matrix = seeds_table(sweep, rows), matrix_seeds_table(sweep, rows)
    diag = diagnostics_seeds_table(sweep)
    versus = versus_clean_table(sweep)
    for t in (table, matrix, diag, *([versus] if versus else [])):
        atomic.write_text(tabdir / f"{t.name}.md", t.markdown() + "\n")
        atomic.write_text(tabdir / f"{t.name}.csv", t.csv())
    run = sweep.any_run
    done = [n for n in sweep.names if n in sweep.runs]
    n_items = {b: len({r["id"] for r in run.cell(BASE, b, "test", CLEAN)}) for b in run.benchmarks}
    items = ", ".join(f"{b} {n}" for b, n in n_items.items())
    lines = [
        f"# {len(sweep.values)} training seeds of every model",
        "",
        f"- Model: {md_code(run.model_name)}" + (" (a --quick smoke run)" if sweep.quick else ""),
        f"- Seeds: {', '.join(map(str, sweep.values))} ({len(done)} started). A seed sets the "
        "training's sampling and item order and the random-image donors; the data subset is "
        f"fixed, so every seed is scored on the same test items ({items}).",
        *([f"- {FILTER_NOTE}"] if run.filtered else []),
        "- Intervals: 95%, valid for few seeds: mean ± t × √(seed variance + item variance). The "
        "seed variance is that of the per-seed means over the number of seeds; the item "
        "variance comes from a bootstrap that resamples whole clusters of items (the items that "
        "are one question: one stated fact in several wordings, one MathVerse problem in five "
        "versions), so a repeated question is not counted as independent evidence; t has "
        "Welch–Satterthwaite degrees of freedom (seeds − 1 where the seeds disagree, more where "
        "items dominate), and the interval is never narrower than the t interval over the seed "
        "means alone (with one seed, the normal interval of the cluster bootstrap). Changes vs "
        "base are paired within each seed. 'within noise': the interval includes 0.",
        "",
        "## Clean accuracy across seeds",
        "",
        table.markdown(),
        "",
        "## Corruption matrix (mean over seeds, 95% CI over seeds and items)",
        "",
        "Rows: the model (base or the training corruption); columns: the evaluation condition.",
        "",
        matrix.markdown(),
        "",
        "## Modality diagnostics across seeds",
        "",
        "Each seed's run report computes these on its test records; here: the mean over seeds "
        "and, in parentheses, the lowest and highest seed. Text gain counts only the items text "
        "removal changed (TR coverage: how many of how many). Hallucination counts only the items "
        "whose needed information the corruption removed: the share answered anyway, the share "
        "declined, the accuracy of the answers against chance (1/size of each item's answer "
        "set, on the answers whose set is known), and the mean share of the most common answer "
        "per task (100: one constant answer).",
        "",
        diag.markdown(),
        "",
        *(
            [
                "## Corruption-trained vs clean-trained GRPO",
                "",
                "Each model trained under a corruption minus clean GRPO, paired by item within "
                "each seed (95% CI over seeds and items): on clean inputs, and under the "
                "corruption the model was trained with. The paper's findings 2 and 3 compare the "
                "first column; its finding 6 says the second shows no edge."
                + (
                    f" {run.label(RANDOM_REWARD)} (the random-reward control: clean GRPO's "
                    "recipe with a coin-flip accuracy reward) has the clean column only: clean "
                    "GRPO above it means the reward signal, not training alone, made the gain."
                    if RANDOM_REWARD in run.models
                    else ""
                ),
                "",
                versus.markdown(),
                "",
            ]
            if versus
            else []
        ),
        "## Reading",
        "",
        *(reading(sweep, rows) or ["- no trained model has finished a seed yet"]),
        "",
        "## Runs (one per seed)",
        "",
        *(
            f"- [{n}]({n}/report.md)" if n in sweep.runs else f"- {n}: not run yet"
            for n in sweep.names
        ),
        "",
        "## Files",
        "",
        "- [seeds.csv](tables/seeds.csv), [seeds_matrix.csv](tables/seeds_matrix.csv), "
        "[seeds_diagnostics.csv](tables/seeds_diagnostics.csv)"
        + (", [seeds_vs_clean.csv](tables/seeds_vs_clean.csv)" if versus else ""),
    ]
    path = atomic.write_text(sweep.root / "report.md", "\n".join(lines) + "\n")
    write_html(path)
    return path


__all__ = [
    "SeedRow",
    "diagnostics_seeds_table",
    "seed_rows",
    "versus_clean_table",
    "write_seeds_report",
]
