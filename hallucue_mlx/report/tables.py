"""The report's tables (markdown for report.md, CSV and LaTeX under tables/) and number formatting.

Every number comes from hallucue_mlx.metrics; this module only selects records and formats.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hallucue_mlx.data.item import VERSIONS
from hallucue_mlx.metrics import (
    Table1Cell,
    diagnostics,
    excludes_zero,
    first_samples,
    gain_sources,
    has_trace,
    outcome_shares,
    summarize,
    table1_cells,
    train_test_gap,
)
from hallucue_mlx.report.labels import BASE, eval_label
from hallucue_mlx.report.load import RunData
from hallucue_mlx.trace import OUTCOMES

Cells = dict[tuple[str, str], Table1Cell]
Diagnostics = dict[tuple[str, str], dict[str, Any]]
# (model, benchmark) -> metrics.gain_sources of the model vs base, clean test records
Sources = dict[tuple[str, str], dict[str, Any]]
# benchmark -> metrics.train_test_gap of every model with clean train-slice and test records
Gaps = dict[str, dict[str, dict[str, Any]]]

# ============================================================================ formatting


def _points(x: float, digits: int = 1) -> float:
    """x as percentage points, rounded, with -0.0 turned into 0.0 (so '-0.0' is never printed)."""
    return round(100 * x, digits) + 0.0


def pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{_points(x, digits):.{digits}f}"


def signed(x: float | None) -> str:
    return "—" if x is None else f"{_points(x):+.1f}"


def ci_text(ci: Sequence[float] | None) -> str:
    return "" if ci is None else f"[{_points(ci[0]):.1f}, {_points(ci[1]):.1f}]"


def csv_value(x: float | None, digits: int = 4) -> float | str:
    """A CSV value: rounded number, empty for missing."""
    return "" if x is None else round(float(x), digits)


@dataclass
class Table:
    """One table: formatted cells for markdown, raw values for CSV."""

    name: str  # file stem under tables/
    columns: list[str]
    rows: list[list[str]]
    csv_columns: list[str]
    csv_rows: list[list[Any]]

    def markdown(self) -> str:
        esc = [[c.replace("|", "\\|") for c in row] for row in self.rows]
        lines = ["| " + " | ".join(self.columns) + " |"]
        lines.append(
            "|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.columns))) + "|"
        )
        lines += ["| " + " | ".join(row) + " |" for row in esc]
        return "\n".join(lines)

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.csv_columns)
        w.writerows(self.csv_rows)
        return buf.getvalue()


def table1(run: RunData, cells: Cells) -> Table:
    cols = ["Model", *[_bench_head(run, b) for b in run.benchmarks], "AVG"]
    rows, csv_rows = [], []
    for model in run.models:
        row = [run.label(model)]
        for bench in [*run.benchmarks, "AVG"]:
            c = cells.get((model, bench))
            if c is None:
                row.append("—")
                csv_rows.append([run.label(model), model, bench, "", "", "", "", "", "", "", ""])
                continue
            if c.delta is None:
                row.append(f"{pct(c.accuracy)} {ci_text(c.ci95)}")
            else:
                d = c.delta
                mark = "**" if excludes_zero(d["ci95"]) else ""
                row.append(
                    f"{pct(c.accuracy)} ({mark}{signed(d['diff'])}{mark} {ci_text(d['ci95'])})"
                )
            d = c.delta or {}
            dci = d.get("ci95") or [None, None]
            csv_rows.append(
                [
                    run.label(model),
                    model,
                    bench,
                    c.n,
                    csv_value(c.accuracy),
                    csv_value(c.ci95[0]),
                    csv_value(c.ci95[1]),
                    csv_value(d.get("diff")),
                    csv_value(dci[0]),
                    csv_value(dci[1]),
                    d.get("n", ""),
                ]
            )
        rows.append(row)
    return Table(
        "table1",
        cols,
        rows,
        [
            "label",
            "train_condition",
            "benchmark",
            "n",
            "accuracy",
            "ci_lo",
            "ci_hi",
            "delta_vs_base",
            "delta_ci_lo",
            "delta_ci_hi",
            "n_paired",
        ],
        csv_rows,
    )


def _bench_head(run: RunData, bench: str) -> str:
    ns = {len(run.cell(m, bench, "test", "none")) for m in run.models} - {0}
    return f"{bench} (n={ns.pop()})" if len(ns) == 1 else bench


def table1_latex(run: RunData, cells: Cells) -> str:
    """booktabs LaTeX of Table 1: accuracy, and below the base row the delta with its CI."""
    esc = lambda s: s.replace("_", r"\_").replace("%", r"\%")  # noqa: E731
    cols = [*run.benchmarks, "AVG"]
    lines = [
        "% Generated by hallucue-mlx report; needs \\usepackage{booktabs}.",
        f"% Clean accuracy (%) on the test split, {esc(run.model_name)}; small text: change vs base",
        "% with its paired bootstrap 95% CI (bold where the CI excludes 0).",
        r"\begin{tabular}{l" + "c" * len(cols) + "}",
        r"\toprule",
        "Model & " + " & ".join(esc(c) for c in cols) + r" \\",
        r"\midrule",
    ]
    for model in run.models:
        parts = [esc(run.label(model))]
        for b in cols:
            c = cells.get((model, b))
            if c is None:
                parts.append("--")
            elif c.delta is None:
                parts.append(f"{pct(c.accuracy)}")
            else:
                d = c.delta
                delta = f"{signed(d['diff'])}"
                if excludes_zero(d["ci95"]):
                    delta = rf"\textbf{{{delta}}}"
                lo, hi = d["ci95"]
                parts.append(rf"{pct(c.accuracy)}\,{{\scriptsize {delta} {ci_text([lo, hi])}}}")
        lines.append(" & ".join(parts) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def matrix_table(run: RunData, split: str = "test") -> Table:
    """Rows (benchmark, model), columns eval conditions: accuracy % with Wilson CI."""
    cols = ["Benchmark", "Model", *[eval_label(c) for c in run.eval_conditions]]
    rows, csv_rows = [], []
    for bench in run.benchmarks:
        for model in run.models:
            if (model, bench, split) not in run.records:
                continue
            summ = summarize(run.records[(model, bench, split)])
            row = [bench, run.label(model)]
            for cond in run.eval_conditions:
                s = summ.get(cond)
                if s is None:
                    row.append("—")
                    continue
                row.append(f"{pct(s['accuracy'])} {ci_text(s['ci95'])}")
                csv_rows.append(
                    [
                        bench,
                        split,
                        model,
                        cond,
                        s["n"],
                        csv_value(s["accuracy"]),
                        csv_value(s["ci95"][0]),
                        csv_value(s["ci95"][1]),
                        csv_value(s["format_rate"]),
                        csv_value(s["mean_response_tokens"], 2),
                        s["grader_errors"],
                    ]
                )
            rows.append(row)
    return Table(
        "matrix" if split == "test" else f"matrix-{split}",
        cols,
        rows,
        [
            "benchmark",
            "split",
            "train_condition",
            "eval_condition",
            "n",
            "accuracy",
            "ci_lo",
            "ci_hi",
            "format_rate",
            "mean_response_tokens",
            "grader_errors",
        ],
        csv_rows,
    )


def splits_table(run: RunData) -> Table | None:
    """Accuracy % per model for every (split, eval condition): the paper's eight settings are the
    2x2x2 block {GRPO, GRPO-X} x {clean, X} x {train, test} of it."""
    splits = [s for s in ("test", "train") if any(k[2] == s for k in run.records)]
    if "train" not in splits:
        return None
    benches = [b for b in run.benchmarks if any(k[1] == b and k[2] == "train" for k in run.records)]
    cols = ["Benchmark", "Model"] + [
        f"{s} · {eval_label(c)}" for s in splits for c in run.eval_conditions
    ]
    rows, csv_rows = [], []
    for bench in benches:
        for model in run.models:
            row = [bench, run.label(model)]
            any_cell = False
            for s in splits:
                summ = (
                    summarize(run.records[(model, bench, s)])
                    if (model, bench, s) in run.records
                    else {}
                )
                for c in run.eval_conditions:
                    v = summ.get(c)
                    row.append(pct(v["accuracy"]) if v else "—")
                    if v:
                        any_cell = True
                        csv_rows.append([bench, model, s, c, v["n"], csv_value(v["accuracy"])])
            if any_cell:
                rows.append(row)
    return Table(
        "splits",
        cols,
        rows,
        ["benchmark", "train_condition", "split", "eval_condition", "n", "accuracy"],
        csv_rows,
    )


def clean_cells(run: RunData, split: str = "test", cond: str = "none") -> Cells:
    """Table 1's cells of this run: metrics.table1_cells over every model and benchmark."""
    per = {m: {b: run.cell(m, b, split, cond) for b in run.benchmarks} for m in run.models}
    return table1_cells(per, run.benchmarks, cond)


def diagnostics_all(run: RunData, split: str = "test") -> Diagnostics:
    """(model, benchmark) -> metrics.diagnostics of its records, where clean records exist."""
    out = {}
    for bench in run.benchmarks:
        for model in run.models:
            recs = run.records.get((model, bench, split))
            if recs and any(r["corruption"] == "none" for r in recs):
                # record-level pairing: sample 0 of each item, as evaluation's own summary does
                out[(model, bench)] = diagnostics(first_samples(recs))
    return out


def _gain_text(g: dict[str, Any] | None) -> str:
    if g is None:
        return "—"
    mark = "**" if excludes_zero(g["ci95"]) else ""
    return f"{mark}{signed(g['diff'])}{mark} {ci_text(g['ci95'])}"


# What a hallucination cell shows (hallucination_cell), for the column headers.
HALLUCINATION_CELL = (
    "answered % [CI] of n; declined %; accuracy vs chance % on the answers of known chance; "
    "top-answer share %"
)


def hallucination_cell(h: dict[str, Any]) -> str:
    """One corruption's metrics.hallucination as a cell: the share answered anyway (with its CI
    and the number of items the corruption left unanswerable), the share declined, the accuracy
    of the answers against per-item chance on the same answers (with how many answers of unknown
    chance were left out), and the mean share of the most common answer per task (100: one
    constant answer, not reading)."""
    acc, chance = h.get("known_correct_rate"), h.get("chance_rate")
    vs = f"{pct(acc)} vs {pct(chance)}" if acc is not None and chance is not None else "—"
    if h.get("chance_unknown"):
        vs += f" ({h['chance_unknown']} of unknown chance left out)"
    conc = (h.get("concentration") or {}).get("top_share")
    return (
        f"{pct(h['rate'])} {ci_text(h['ci95'])} of {h['n']}; declined "
        f"{pct(h.get('declined_rate'))}; {vs}; top {pct(conc)}"
    )


def hallucination_csv(bench: str, model: str, cond: str, h: dict[str, Any]) -> list[list[Any]]:
    """The diagnostics CSV rows of one hallucination entry beyond the answered share."""
    conc = h.get("concentration") or {}
    rows = []
    for name, value, n in (
        ("declined_rate", h.get("declined_rate"), h["n"]),
        ("answered_accuracy_known_chance", h.get("known_correct_rate"), h.get("chance_n", "")),
        ("chance", h.get("chance_rate"), h.get("chance_n", "")),
        ("top_answer_share", conc.get("top_share"), h.get("answered", "")),
        ("answer_entropy", conc.get("entropy"), h.get("answered", "")),
    ):
        ci = h.get("declined_ci95", ["", ""]) if name == "declined_rate" else ["", ""]
        rows.append(
            [bench, model, f"{name}/{cond}", n, csv_value(value)]
            + [csv_value(x) if x != "" else "" for x in ci]
            + ["", ""]
        )
    return rows


def diagnostics_table(run: RunData, diag: Diagnostics) -> Table:
    corrupted = [c for c in run.eval_conditions if c != "none"]
    cols = [
        "Benchmark",
        "Model",
        "vision gain (clean−BI)",
        "random-image gain (clean−RI)",
        "text gain (clean−TR) on changed items",
        "TR coverage",
    ] + [f"hallucination under {eval_label(c)}: {HALLUCINATION_CELL}" for c in corrupted]
    rows, csv_rows = [], []
    for (model, bench), d in diag.items():
        row = [bench, run.label(model)]
        for key in ("vision_gain", "random_image_gain", "text_gain"):
            g = d[key]
            row.append(_gain_text(g))
            if key == "text_gain":
                cov = d.get("text_removal_coverage")
                row.append(f"{cov['changed']}/{cov['n']}" if cov else "—")
                if cov:
                    share = cov["changed"] / cov["n"] if cov["n"] else None
                    csv_rows.append(
                        [bench, model, "text_removal_coverage", cov["n"], csv_value(share)]
                        + ["", "", "", ""]
                    )
            ci = (g or {}).get("ci95") or [None, None]
            csv_rows.append(
                [
                    bench,
                    model,
                    key,
                    (g or {}).get("n", ""),
                    csv_value((g or {}).get("diff")),
                    csv_value(ci[0]),
                    csv_value(ci[1]),
                    csv_value((g or {}).get("mcnemar_p")),
                    "",
                ]
            )
        for c in corrupted:
            h = d["hallucination"].get(c)
            if h is None or not h["n"]:  # no item this corruption left unanswerable
                row.append("—")
                continue
            row.append(hallucination_cell(h))
            csv_rows.append(
                [
                    bench,
                    model,
                    f"hallucination_rate/{c}",
                    h["n"],
                    csv_value(h["rate"]),
                    csv_value(h["ci95"][0]),
                    csv_value(h["ci95"][1]),
                    "",
                    h["answered_correct"],
                ]
            )
            csv_rows += hallucination_csv(bench, model, c, h)
        rows.append(row)
    return Table(
        "diagnostics",
        cols,
        rows,
        [
            "benchmark",
            "train_condition",
            "metric",
            "n",
            "value",
            "ci_lo",
            "ci_hi",
            "mcnemar_p",
            "lucky_correct",
        ],
        csv_rows,
    )


def versioned_benchmarks(run: RunData, split: str = "test") -> list[str]:
    """Benchmarks whose records carry more than one modality version."""
    out = []
    for bench in run.benchmarks:
        vs = {
            str(r.get("version") or "")
            for (m, b, s), rs in run.records.items()
            if b == bench and s == split
            for r in rs
        }
        if len(vs - {""}) > 1:
            out.append(bench)
    return out


def version_accuracy(
    run: RunData, bench: str, split: str = "test"
) -> dict[tuple[str, str], dict[str, Any]]:
    """(model, eval condition in {none, blank}) -> summarize()'s by_version for that cell."""
    out = {}
    for model in run.models:
        recs = run.records.get((model, bench, split))
        if not recs:
            continue
        summ = summarize(recs)
        for cond in ("none", "blank"):
            if cond in summ:
                out[(model, cond)] = summ[cond]["by_version"]
    return out


def version_order(versions: set[str]) -> list[str]:
    """Modality versions in the data's order, unknown ones after, sorted."""
    return [v for v in VERSIONS if v in versions] + sorted(versions - set(VERSIONS))


def versions_table(run: RunData, diag: Diagnostics) -> Table | None:
    benches = versioned_benchmarks(run)
    if not benches:
        return None
    rows, csv_rows = [], []
    all_versions: list[str] = []
    per_bench = {b: version_accuracy(run, b) for b in benches}
    for b in benches:
        for by in per_bench[b].values():
            for v in version_order(set(by) - {""}):
                if v not in all_versions:
                    all_versions.append(v)
    all_versions = version_order(set(all_versions))
    cols = ["Benchmark", "Model", *[f"{v} (clean / BI)" for v in all_versions]]
    for b in benches:
        acc = per_bench[b]
        for model in run.models:
            clean, blank = acc.get((model, "none"), {}), acc.get((model, "blank"), {})
            if not clean and not blank:
                continue
            row = [b, run.label(model)]
            gains = (diag.get((model, b)) or {}).get("vision_gain_by_version") or {}
            for v in all_versions:
                c, k = clean.get(v), blank.get(v)
                row.append(
                    f"{pct(c['accuracy']) if c else '—'} / {pct(k['accuracy']) if k else '—'}"
                )
                g = gains.get(v) or {}
                gci = g.get("ci95") or [None, None]
                csv_rows.append(
                    [
                        b,
                        model,
                        v,
                        (c or {}).get("n", ""),
                        csv_value((c or {}).get("accuracy")),
                        csv_value((k or {}).get("accuracy")),
                        csv_value(g.get("diff")),
                        csv_value(gci[0]),
                        csv_value(gci[1]),
                    ]
                )
            rows.append(row)
    return Table(
        "versions",
        cols,
        rows,
        [
            "benchmark",
            "train_condition",
            "version",
            "n",
            "accuracy_clean",
            "accuracy_blank",
            "vision_gain",
            "vision_gain_ci_lo",
            "vision_gain_ci_hi",
        ],
        csv_rows,
    )


# ============================================================================ answers by outcome


def traced_benchmarks(run: RunData, split: str = "test") -> list[str]:
    """Benchmarks whose records on `split` carry step traces (metrics.has_trace); none in runs
    written before traces existed."""
    return [
        b
        for b in run.benchmarks
        if any(has_trace(rs) for (_, bb, s), rs in run.records.items() if bb == b and s == split)
    ]


# Column heads of the outcomes (trace.OUTCOMES order)
OUTCOME_HEADS = {
    "correct": "correct",
    "declined": "declined",
    "format": "bad format",
    "read": "misread",
    "compute": "miscomputed",
    "final": "wrong final",
    "wrong": "wrong (untraced)",
}


def outcomes_table(run: RunData, split: str = "test") -> Table | None:
    """Rows (benchmark, eval condition, model): % of the records in each trace.outcome; None
    when no record carries a trace."""
    benches = traced_benchmarks(run, split)
    if not benches:
        return None
    cols = ["Benchmark", "Eval", "Model", "n", *[OUTCOME_HEADS[o] for o in OUTCOMES]]
    rows, csv_rows = [], []
    for bench in benches:
        for cond in run.eval_conditions:
            for model in run.models:
                rs = run.cell(model, bench, split, cond)
                if not rs:
                    continue
                o = outcome_shares(rs)
                rows.append(
                    [bench, eval_label(cond), run.label(model), str(o["n"])]
                    + [pct(o["shares"][k]) for k in OUTCOMES]
                )
                csv_rows += [
                    [
                        bench,
                        split,
                        model,
                        cond,
                        o["n"],
                        k,
                        o["counts"][k],
                        csv_value(o["shares"][k]),
                    ]
                    for k in OUTCOMES
                ]
    return Table(
        "outcomes",
        cols,
        rows,
        [
            "benchmark",
            "split",
            "train_condition",
            "eval_condition",
            "n",
            "outcome",
            "count",
            "share",
        ],
        csv_rows,
    )


def gain_sources_all(run: RunData, split: str = "test", cond: str = "none") -> Sources:
    """Every model vs base under `cond` on the traced benchmarks (metrics.gain_sources)."""
    out: Sources = {}
    for bench in traced_benchmarks(run, split):
        base = run.cell(BASE, bench, split, cond)
        if not base:
            continue
        for model in run.models:
            recs = run.cell(model, bench, split, cond) if model != BASE else []
            g = gain_sources(recs, base) if recs else None
            if g is not None:
                out[(model, bench)] = g
    return out


SOURCE_HEADS = {
    "read": "reading",
    "compute": "computing",
    "format": "format",
    "accuracy": "accuracy",
    "solved": "kept (items base solved)",
}


def sources_table(run: RunData, sources: Sources) -> Table | None:
    """Base's reading, computing, format and accuracy rates, then each trained model's with its
    change vs base [paired bootstrap CI]; None without traced records."""
    if not sources:
        return None
    cols = ["Benchmark", "Model", *[f"{h} %" for h in SOURCE_HEADS.values()]]
    rows, csv_rows = [], []
    for bench in [b for b in run.benchmarks if any(k[1] == b for k in sources)]:
        ref = next(v for (m, b), v in sources.items() if b == bench)
        base_row = [bench, run.label(BASE)]
        for comp in SOURCE_HEADS:
            c = ref[comp]
            base_row.append(pct(c["b"]) if c else "—")
            if c:
                csv_rows.append(
                    [bench, BASE, comp, ref["n"], c["n_b"], csv_value(c["b"]), "", "", "", ""]
                )
        rows.append(base_row)
        for model in run.models:
            g = sources.get((model, bench))
            if g is None:
                continue
            row = [bench, run.label(model)]
            for comp in SOURCE_HEADS:
                c = g[comp]
                if c is None:
                    row.append("—")
                    continue
                mark = "**" if excludes_zero(c["ci95"]) else ""
                row.append(f"{pct(c['a'])} ({mark}{signed(c['diff'])}{mark} {ci_text(c['ci95'])})")
                csv_rows.append(
                    [
                        bench,
                        model,
                        comp,
                        g["n"],
                        c["n_a"],
                        csv_value(c["a"]),
                        csv_value(c["b"]),
                        csv_value(c["diff"]),
                        csv_value(c["ci95"][0]),
                        csv_value(c["ci95"][1]),
                    ]
                )
            rows.append(row)
    return Table(
        "gain_sources",
        cols,
        rows,
        [
            "benchmark",
            "train_condition",
            "component",
            "n_items",
            "n_records",
            "value",
            "base_value",
            "delta_vs_base",
            "delta_ci_lo",
            "delta_ci_hi",
        ],
        csv_rows,
    )


# ============================================================================ train vs test gap


def train_test_gaps(run: RunData, cond: str = "none") -> Gaps:
    """Per benchmark with a train-split slice: metrics.train_test_gap of every model's clean
    records (the one place the report computes these numbers)."""
    out: Gaps = {}
    for bench in run.benchmarks:
        train = {m: run.cell(m, bench, "train", cond) for m in run.models}
        test = {m: run.cell(m, bench, "test", cond) for m in run.models}
        gaps = train_test_gap(train, test, base=BASE)
        if gaps:
            out[bench] = gaps
    return out


def gap_table(run: RunData, gaps: Gaps) -> Table | None:
    """Clean accuracy on the train slice and the test split, the gap, and each trained model's
    gap minus base's [CI]; None without a train slice."""
    if not gaps:
        return None
    cols = [
        "Benchmark",
        "Model",
        "train slice % (n)",
        "test % (n)",
        "gap (train − test)",
        "gap − base's gap [CI]",
    ]
    rows, csv_rows = [], []
    for bench, by_model in gaps.items():
        for model in [m for m in run.models if m in by_model]:
            g = by_model[model]
            vs = "—"
            if g["gap_vs_base"] is not None:
                mark = "**" if excludes_zero(g["ci95"]) else ""
                vs = f"{mark}{signed(g['gap_vs_base'])}{mark} {ci_text(g['ci95'])}"
            rows.append(
                [
                    bench,
                    run.label(model),
                    f"{pct(g['train'])} ({g['n_train']})",
                    f"{pct(g['test'])} ({g['n_test']})",
                    signed(g["gap"]),
                    vs,
                ]
            )
            ci = g["ci95"] or [None, None]
            csv_rows.append(
                [
                    bench,
                    model,
                    g["n_train"],
                    csv_value(g["train"]),
                    g["n_test"],
                    csv_value(g["test"]),
                    csv_value(g["gap"]),
                    csv_value(g["gap_vs_base"]),
                    csv_value(ci[0]),
                    csv_value(ci[1]),
                ]
            )
    return Table(
        "train_test_gap",
        cols,
        rows,
        [
            "benchmark",
            "train_condition",
            "n_train",
            "accuracy_train",
            "n_test",
            "accuracy_test",
            "gap",
            "gap_vs_base",
            "gap_vs_base_ci_lo",
            "gap_vs_base_ci_hi",
        ],
        csv_rows,
    )
