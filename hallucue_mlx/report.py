"""The report of a run folder: tables, figures and a plain reading, rebuilt from per-item records.

    write_report(run_dir) -> run_dir/report.md, run_dir/figures/*.png|pdf, run_dir/tables/*

Inputs (as the grid writes them; any of them may be missing in a partial run):
manifest.json and results.json (only for the model name, the expected benchmarks and conditions,
and timing), train/<condition>/metrics.jsonl (training curves), and
eval/<model>/<benchmark>-<split>/records.jsonl (one record per item and eval condition). Every
number is recomputed from the records with `hallucue_mlx.metrics`, so the report does not trust
results.json and works on any partial run; what is missing is listed, not fatal.

Output is deterministic: the bootstrap is seeded, tables are ordered, and figures carry no
timestamps, so rebuilding a report from the same folder gives identical bytes.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hallucue_mlx import atomic
from hallucue_mlx.metrics import Record, diagnostics, paired_bootstrap_ci, summarize

# ============================================================================ names and labels

DEFAULT_TRAIN = ("none", "blank", "random", "text_removal")
DEFAULT_EVAL = ("none", "blank", "random", "text_removal")
MODEL_LABELS = {
    "base": "base",
    "none": "GRPO",
    "blank": "GRPO-BI",
    "random": "GRPO-RI",
    "text_removal": "GRPO-TR",
}
EVAL_LABELS = {"none": "clean", "blank": "BI", "random": "RI", "text_removal": "TR"}
EVAL_LONG = {
    "none": "clean inputs",
    "blank": "blank images",
    "random": "random images",
    "text_removal": "text removal",
}
# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
OKABE_ITO = ("#000000", "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442")
BOOT_SEED = 0
N_BOOT = 2000
# The paper's Table 1 (Qwen2.5-VL-3B, RL on Geometry3K), shown only as a labelled reference.
PAPER_3B = {
    "base": (18.19, 34.82, 51.40, 54.48, 39.72),
    "GRPO": (22.73, 37.72, 58.40, 60.11, 44.74),
    "GRPO-BI": (20.95, 35.10, 56.40, 56.55, 42.25),
    "GRPO-RI": (20.86, 35.76, 58.00, 55.17, 42.45),
}


class ReportError(ValueError):
    """The folder is not a run folder (nothing a report could be built from)."""


def model_label(model: str) -> str:
    return MODEL_LABELS.get(model, f"GRPO-{model}")


def eval_label(cond: str) -> str:
    return EVAL_LABELS.get(cond, cond)


# ============================================================================ loading


@dataclass
class RunData:
    """Everything the report reads from one run folder."""

    root: Path
    model_name: str
    benchmarks: list[str]
    train_conditions: list[str]
    eval_conditions: list[str]
    # (model, benchmark, split) -> records of every eval condition, one per item and condition
    records: dict[tuple[str, str, str], list[Record]]
    curves: dict[str, list[dict[str, Any]]]  # train condition -> metrics.jsonl step lines
    eval_curves: dict[str, list[dict[str, Any]]]  # train condition -> in-training eval lines
    manifest: dict[str, Any] | None
    results: dict[str, Any] | None
    problems: list[str] = field(default_factory=list)  # data problems found while reading
    split_names: dict[str, str] = field(
        default_factory=dict
    )  # benchmark -> its split read as "test"

    @property
    def models(self) -> list[str]:
        return ["base", *self.train_conditions]

    def cell(self, model: str, bench: str, split: str, cond: str) -> list[Record]:
        return [r for r in self.records.get((model, bench, split), []) if r["corruption"] == cond]

    def has(self, model: str, bench: str, split: str, cond: str) -> bool:
        return any(r["corruption"] == cond for r in self.records.get((model, bench, split), []))

    def splits(self) -> list[str]:
        present = {s for (_, _, s) in self.records}
        return [s for s in ("test", "train") if s in present] + sorted(present - {"test", "train"})


def _read_json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        problems.append(f"`{path.name}` is not valid JSON ({e.msg}, line {e.lineno}); ignored.")
        return None
    return data if isinstance(data, dict) else None


def _read_jsonl(path: Path, root: Path, problems: list[str]) -> list[dict[str, Any]]:
    """JSON lines; a cut-off line (a run killed mid-write) is skipped and reported."""
    rows: list[dict[str, Any]] = []
    bad = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            bad += 1
    if bad:
        problems.append(f"`{path.relative_to(root)}`: {bad} unreadable line(s) skipped.")
    return rows


def _names(value: Any) -> list[str] | None:
    """A list of names from results/manifest: strings, or dicts with a name."""
    if not isinstance(value, list):
        return None
    out = [
        v if isinstance(v, str) else v.get("name") if isinstance(v, dict) else None for v in value
    ]
    return [str(v) for v in out if v is not None]


def _dedupe(recs: list[Record], where: str, problems: list[str]) -> list[Record]:
    """One record per (benchmark, id, condition, sample): the last wins (a resumed cell may repeat)."""
    seen: dict[tuple[str, str, str], Record] = {}
    for r in recs:
        key = (str(r.get("benchmark", "")), str(r["id"]), str(r["corruption"]), r.get("sample", 0))
        seen[key] = r
    if len(seen) < len(recs):
        problems.append(f"`{where}`: {len(recs) - len(seen)} repeated record(s); kept the last.")
    return list(seen.values())


def load_run(run_dir: Path) -> RunData:
    """Read a run folder. Raises ReportError if it holds none of the expected pieces."""
    root = Path(run_dir)
    if not root.is_dir():
        raise ReportError(
            f"run folder {root} does not exist; pass the folder `hallucue-mlx run` wrote"
        )
    problems: list[str] = []
    manifest = _read_json(root / "manifest.json", problems)
    results = _read_json(root / "results.json", problems)
    cfg = (manifest or {}).get("config") if isinstance((manifest or {}).get("config"), dict) else {}

    records: dict[tuple[str, str, str], list[Record]] = {}
    split_names: dict[str, str] = {}
    for path in sorted((root / "eval").glob("*/*/records.jsonl")):
        model, cell = path.parent.parent.name, path.parent.name
        bench, _, split = cell.rpartition("-")
        if not bench:
            problems.append(
                f"`{path.relative_to(root)}`: folder name is not <benchmark>-<split>; skipped."
            )
            continue
        rows = _read_jsonl(path, root, problems)
        good = [r for r in rows if {"id", "corruption", "correct"} <= r.keys()]
        if len(good) < len(rows):
            problems.append(
                f"`{path.relative_to(root)}`: {len(rows) - len(good)} record(s) without id, "
                "corruption or correct; skipped."
            )
        for r in good:
            r.setdefault("benchmark", bench)
        if good:
            # the benchmark's evaluation split (test, testmini, ...) plays the test role
            role = "train" if split == "train" else "test"
            if role != split:
                split_names.setdefault(bench, split)
            key = (model, bench, role)
            if key in records:
                problems.append(
                    f"`{path.relative_to(root)}`: a second {role}-role split of {bench} for "
                    f"{model}; merged with the first."
                )
            where = str(path.relative_to(root))
            records[key] = _dedupe(records.get(key, []) + good, where, problems)

    curves: dict[str, list[dict[str, Any]]] = {}
    eval_curves: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((root / "train").glob("*/metrics.jsonl")):
        rows = _read_jsonl(path, root, problems)
        curves[path.parent.name] = [r for r in rows if "step" in r and r.get("event") is None]
        eval_curves[path.parent.name] = [r for r in rows if r.get("event") == "eval"]

    if manifest is None and results is None and not records and not curves:
        raise ReportError(
            f"{root} holds no manifest.json, results.json, eval/*/*/records.jsonl or "
            "train/*/metrics.jsonl: not a run folder"
        )

    def listed(key: str) -> list[str] | None:
        for src in (results, manifest, cfg):
            names = _names((src or {}).get(key))
            if names:
                return names
        return None

    found_models = sorted({m for (m, _, _) in records} - {"base"})
    train = listed("train_conditions") or [
        c for c in DEFAULT_TRAIN if c in curves or c in found_models
    ]
    train += [m for m in sorted(set(found_models) | set(curves)) if m not in train]
    found_evals = {str(r["corruption"]) for rs in records.values() for r in rs}
    evals = listed("eval_conditions") or [c for c in DEFAULT_EVAL if c in found_evals]
    evals += sorted(found_evals - set(evals))
    benches = listed("benchmarks") or []
    benches += sorted({b for (_, b, _) in records} - set(benches))
    name = (results or {}).get("model") or cfg.get("model") or (manifest or {}).get("model")
    return RunData(
        root=root,
        model_name=str(name) if name else "unknown model",
        benchmarks=benches,
        train_conditions=train,
        eval_conditions=evals,
        records=records,
        curves=curves,
        eval_curves=eval_curves,
        manifest=manifest,
        results=results,
        problems=problems,
        split_names=split_names,
    )


def missing_pieces(run: RunData) -> list[str]:
    """What a finished run would have and this one lacks, one sentence each."""
    out: list[str] = []
    if run.manifest is None:
        out.append("`manifest.json` is missing.")
    if run.results is None:
        out.append(
            "`results.json` is missing (the run has not finished); numbers come from the records."
        )
    for cond in run.train_conditions:
        if cond not in run.curves:
            out.append(
                f"{model_label(cond)} (train condition `{cond}`): no training metrics (`train/{cond}/metrics.jsonl`)."
            )
    if not run.records:
        out.append("No evaluation records yet (`eval/<model>/<benchmark>-<split>/records.jsonl`).")
    for model in run.models:
        for bench in run.benchmarks:
            if (model, bench, "test") not in run.records:
                out.append(f"{model_label(model)}: no test-split evaluation on {bench}.")
                continue
            lacking = [c for c in run.eval_conditions if not run.has(model, bench, "test", c)]
            if lacking:
                names = ", ".join(EVAL_LONG.get(c, c) for c in lacking)
                out.append(f"{model_label(model)} on {bench} (test): not evaluated under {names}.")
    return out


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


def excludes_zero(ci: Sequence[float] | None) -> bool:
    return ci is not None and (ci[0] > 0 or ci[1] < 0)


def _r(x: float | None, digits: int = 4) -> float | str:
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


# ============================================================================ Table 1


@dataclass(frozen=True)
class T1Cell:
    n: int
    accuracy: float
    ci95: tuple[float, float]  # Wilson for a benchmark, bootstrap for AVG
    delta: dict[str, Any] | None  # paired_diff vs base (diff, ci95, n), None for base


def first_samples(recs: Sequence[Record]) -> list[Record]:
    """Sample 0 of each item: what paired record-level diagnostics use (as evaluation does)."""
    return [r for r in recs if r.get("sample", 0) == 0]


def _item_scores(recs: Sequence[Record]) -> dict[str, float]:
    """Per item id, mean correctness over its samples (0 or 1 with one sample), in record order."""
    tot: dict[str, list[float]] = {}
    for r in recs:
        tot.setdefault(str(r["id"]), []).append(float(bool(r["correct"])))
    return {k: sum(v) / len(v) for k, v in tot.items()}


def paired_diff(
    per_a: dict[str, Sequence[Record]], per_b: dict[str, Sequence[Record]] | None = None
) -> dict[str, Any] | None:
    """Macro-averaged accuracy of a minus b over benchmarks, paired on shared items, with a
    bootstrap CI (metrics.paired_bootstrap_ci); without b, the accuracy of a with its CI.

    Items are weighted n_total / (n_benchmarks * n_benchmark) so that the plain mean the bootstrap
    resamples equals the unweighted mean over benchmarks (the paper's AVG); with one benchmark every
    weight is 1. None when some benchmark has no shared item.
    """
    xa_by, xb_by = {}, {}
    for bench, recs in per_a.items():
        sa = _item_scores(recs)
        sb = _item_scores(per_b[bench]) if per_b is not None else {}
        ids = [k for k in sa if k in sb] if per_b is not None else list(sa)
        if not ids:
            return None
        xa_by[bench] = [sa[k] for k in ids]
        xb_by[bench] = [sb[k] for k in ids] if per_b is not None else [0.0] * len(ids)
    n_total = sum(len(v) for v in xa_by.values())
    xa, xb = [], []
    for bench in xa_by:
        w = n_total / (len(xa_by) * len(xa_by[bench]))
        xa += [w * x for x in xa_by[bench]]
        xb += [w * x for x in xb_by[bench]]
    diff, lo, hi = paired_bootstrap_ci(xa, xb, N_BOOT, BOOT_SEED)
    return {
        "n": n_total,
        "diff": diff,
        "ci95": [lo, hi],
        "accuracy_a": sum(xa) / n_total,
        "accuracy_b": sum(xb) / n_total,
    }


def table1_cells(
    run: RunData, split: str = "test", cond: str = "none"
) -> dict[tuple[str, str], T1Cell]:
    """(model, benchmark or 'AVG') -> accuracy, CI and paired delta vs base under one eval condition.

    AVG is the unweighted mean over benchmarks (as in the paper), given only when a model has
    every benchmark. Deltas are paired on shared items (per-item mean over samples).
    """
    out: dict[tuple[str, str], T1Cell] = {}
    for model in run.models:
        per: dict[str, list[Record]] = {}
        for bench in run.benchmarks:
            recs = run.cell(model, bench, split, cond)
            if not recs:
                continue
            per[bench] = recs
            s = summarize(recs)[cond]
            base = run.cell("base", bench, split, cond)
            delta = paired_diff({bench: recs}, {bench: base}) if model != "base" and base else None
            out[(model, bench)] = T1Cell(s["n"], s["accuracy"], tuple(s["ci95"]), delta)
        if len(per) == 1 and len(run.benchmarks) == 1:
            out[(model, "AVG")] = out[(model, next(iter(per)))]  # AVG of one benchmark is itself
        elif per and len(per) == len(run.benchmarks):
            avg = paired_diff(per)
            assert avg is not None
            base = {b: run.cell("base", b, split, cond) for b in per}
            delta = paired_diff(per, base) if model != "base" and all(base.values()) else None
            n = sum(len(v) for v in per.values())
            out[(model, "AVG")] = T1Cell(n, avg["diff"], tuple(avg["ci95"]), delta)
    return out


def table1(run: RunData, cells: dict[tuple[str, str], T1Cell]) -> Table:
    cols = ["Model", *[_bench_head(run, b) for b in run.benchmarks], "AVG"]
    rows, csv_rows = [], []
    for model in run.models:
        row = [model_label(model)]
        for bench in [*run.benchmarks, "AVG"]:
            c = cells.get((model, bench))
            if c is None:
                row.append("—")
                csv_rows.append([model_label(model), model, bench, "", "", "", "", "", "", "", ""])
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
                    model_label(model),
                    model,
                    bench,
                    c.n,
                    _r(c.accuracy),
                    _r(c.ci95[0]),
                    _r(c.ci95[1]),
                    _r(d.get("diff")),
                    _r(dci[0]),
                    _r(dci[1]),
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


def table1_latex(run: RunData, cells: dict[tuple[str, str], T1Cell]) -> str:
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
        parts = [esc(model_label(model))]
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


# ============================================================================ matrix, splits


def matrix_table(run: RunData, split: str = "test") -> Table:
    """Rows (benchmark, model), columns eval conditions: accuracy % with Wilson CI."""
    cols = ["Benchmark", "Model", *[eval_label(c) for c in run.eval_conditions]]
    rows, csv_rows = [], []
    for bench in run.benchmarks:
        for model in run.models:
            if (model, bench, split) not in run.records:
                continue
            summ = summarize(run.records[(model, bench, split)])
            row = [bench, model_label(model)]
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
                        _r(s["accuracy"]),
                        _r(s["ci95"][0]),
                        _r(s["ci95"][1]),
                        _r(s["format_rate"]),
                        _r(s["mean_response_tokens"], 2),
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
            row = [bench, model_label(model)]
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
                        csv_rows.append([bench, model, s, c, v["n"], _r(v["accuracy"])])
            if any_cell:
                rows.append(row)
    return Table(
        "splits",
        cols,
        rows,
        ["benchmark", "train_condition", "split", "eval_condition", "n", "accuracy"],
        csv_rows,
    )


# ============================================================================ diagnostics, versions


def diagnostics_all(run: RunData, split: str = "test") -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for bench in run.benchmarks:
        for model in run.models:
            recs = run.records.get((model, bench, split))
            if recs and any(r["corruption"] == "none" for r in recs):
                # record-level pairing: sample 0 of each item, as evaluation's own summary does
                out[(model, bench)] = diagnostics(
                    first_samples(recs), n_boot=N_BOOT, seed=BOOT_SEED
                )
    return out


def _gain_text(g: dict[str, Any] | None) -> str:
    if g is None:
        return "—"
    mark = "**" if excludes_zero(g["ci95"]) else ""
    return f"{mark}{signed(g['diff'])}{mark} {ci_text(g['ci95'])}"


def diagnostics_table(run: RunData, diag: dict[tuple[str, str], dict[str, Any]]) -> Table:
    corrupted = [c for c in run.eval_conditions if c != "none"]
    cols = [
        "Benchmark",
        "Model",
        "vision gain (clean−BI)",
        "random-image gain (clean−RI)",
        "text gain (clean−TR)",
    ] + [f"answered under {eval_label(c)} (lucky)" for c in corrupted]
    rows, csv_rows = [], []
    for (model, bench), d in diag.items():
        row = [bench, model_label(model)]
        for key in ("vision_gain", "random_image_gain", "text_gain"):
            g = d[key]
            row.append(_gain_text(g))
            ci = (g or {}).get("ci95") or [None, None]
            csv_rows.append(
                [
                    bench,
                    model,
                    key,
                    (g or {}).get("n", ""),
                    _r((g or {}).get("diff")),
                    _r(ci[0]),
                    _r(ci[1]),
                    _r((g or {}).get("mcnemar_p")),
                    "",
                ]
            )
        for c in corrupted:
            h = d["hallucination"].get(c)
            if h is None:
                row.append("—")
                continue
            row.append(f"{pct(h['rate'])} {ci_text(h['ci95'])} ({h['answered_correct']})")
            csv_rows.append(
                [
                    bench,
                    model,
                    f"answered_rate/{c}",
                    h["n"],
                    _r(h["rate"]),
                    _r(h["ci95"][0]),
                    _r(h["ci95"][1]),
                    "",
                    h["answered_correct"],
                ]
            )
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


def _version_order(versions: set[str]) -> list[str]:
    from hallucue_mlx.data.item import VERSIONS

    return [v for v in VERSIONS if v in versions] + sorted(versions - set(VERSIONS))


def versions_table(run: RunData, diag: dict[tuple[str, str], dict[str, Any]]) -> Table | None:
    benches = versioned_benchmarks(run)
    if not benches:
        return None
    rows, csv_rows = [], []
    all_versions: list[str] = []
    per_bench = {b: version_accuracy(run, b) for b in benches}
    for b in benches:
        for by in per_bench[b].values():
            for v in _version_order(set(by) - {""}):
                if v not in all_versions:
                    all_versions.append(v)
    all_versions = _version_order(set(all_versions))
    cols = ["Benchmark", "Model", *[f"{v} (clean / BI)" for v in all_versions]]
    for b in benches:
        acc = per_bench[b]
        for model in run.models:
            clean, blank = acc.get((model, "none"), {}), acc.get((model, "blank"), {})
            if not clean and not blank:
                continue
            row = [b, model_label(model)]
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
                        _r((c or {}).get("accuracy")),
                        _r((k or {}).get("accuracy")),
                        _r(g.get("diff")),
                        _r(gci[0]),
                        _r(gci[1]),
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


# ============================================================================ figures


def _plt():
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


def _save(fig: Any, figdir: Path, stem: str) -> Path:
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
    import numpy as np

    plt = _plt()
    benches = [b for b in run.benchmarks if any(k[1] == b and k[2] == "test" for k in run.records)]
    if not benches:
        return None
    ncol = min(3, len(benches))
    nrow = math.ceil(len(benches) / ncol)
    width = 1.1 * len(run.eval_conditions) + 1.6
    fig, axes = plt.subplots(
        nrow,
        ncol,
        figsize=(width * ncol, 0.55 * len(run.models) * nrow + 1.2),
        squeeze=False,
        constrained_layout=True,
    )
    cmap = plt.get_cmap("cividis").with_extremes(bad="#dddddd")
    for ax in axes.flat[len(benches) :]:
        ax.axis("off")
    for ax, bench in zip(axes.flat, benches):
        grid = np.full((len(run.models), len(run.eval_conditions)), np.nan)
        for i, model in enumerate(run.models):
            summ = (
                summarize(run.records[(model, bench, "test")])
                if (model, bench, "test") in run.records
                else {}
            )
            for j, cond in enumerate(run.eval_conditions):
                if cond in summ:
                    grid[i, j] = 100 * summ[cond]["accuracy"]
        finite = grid[np.isfinite(grid)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 100.0)
        if hi - lo < 1:  # all cells (nearly) equal: keep a sane 0-100 colour range
            lo, hi = max(0.0, lo - 1), min(100.0, hi + 1)
            lo, hi = (lo, lo + 1) if hi - lo < 1 else (lo, hi)
        im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                v = grid[i, j]
                if np.isfinite(v):
                    dark = (v - lo) / (hi - lo) < 0.55
                    ax.text(
                        j,
                        i,
                        f"{v:.1f}",
                        ha="center",
                        va="center",
                        fontsize=10,
                        color="white" if dark else "black",
                    )
                else:
                    ax.text(j, i, "—", ha="center", va="center", color="#555555")
        ax.set_xticks(range(len(run.eval_conditions)), [eval_label(c) for c in run.eval_conditions])
        ax.set_yticks(range(len(run.models)), [model_label(m) for m in run.models])
        ax.set_xlabel("evaluated under")
        ax.set_title(f"{bench} (test): accuracy %")
        ax.tick_params(length=0)
        for s in ax.spines.values():
            s.set_visible(False)
        fig.colorbar(im, ax=ax, shrink=0.8, label="accuracy %")
    return _save(fig, figdir, "matrix")


def fig_gains(run: RunData, cells: dict[tuple[str, str], T1Cell], figdir: Path) -> Path | None:
    plt = _plt()
    trained = [
        m for m in run.train_conditions if any((m, b) in cells for b in [*run.benchmarks, "AVG"])
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
        ax.set_yticks(range(len(trained)), [model_label(m) for m in trained])
        ax.set_ylim(len(trained) - 0.5, -0.5)
        ax.grid(axis="x", color="#eeeeee")
    fig.suptitle("Clean test accuracy change vs base, paired bootstrap 95% CI", fontsize=11)
    return _save(fig, figdir, "gains")


def fig_versions(run: RunData, bench: str, figdir: Path) -> Path | None:
    import numpy as np

    plt = _plt()
    acc = version_accuracy(run, bench)
    if not acc:
        return None
    conds = [c for c in ("none", "blank") if any(k[1] == c for k in acc)]
    models = [m for m in run.models if any((m, c) in acc for c in conds)]
    versions = _version_order({v for by in acc.values() for v in by} - {""})
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
            vals = [
                100 * by[v]["accuracy"] if v in by and by[v]["accuracy"] is not None else np.nan
                for v in versions
            ]
            ax.bar(
                x + (k - (len(models) - 1) / 2) * width,
                vals,
                width,
                color=colors[m],
                label=model_label(m),
                edgecolor="white",
                linewidth=0.5,
            )
        ax.set_xticks(x, [v.replace("_", "\n") for v in versions])
        ax.set_title(f"{bench} (test), {EVAL_LONG[cond]}")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", color="#eeeeee")
        ax.set_axisbelow(True)
    axes[0][0].set_ylabel("accuracy %")
    axes[0][-1].legend(loc="upper right", frameon=False, ncol=1)
    return _save(fig, figdir, f"versions-{bench}")


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

    plt = _plt()
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
                label=model_label(c),
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
    return _save(fig, figdir, "training_curves")


def fig_eval_curves(run: RunData, figdir: Path) -> Path | None:
    """Held-out greedy accuracy logged during training: clean (solid) and own corruption (dashed)."""
    plt = _plt()
    conds = [c for c in run.train_conditions if run.eval_curves.get(c)]
    if not conds:
        return None
    colors = model_colors(run)
    fig, ax = plt.subplots(figsize=(6.4, 3.8), constrained_layout=True)
    for c in conds:
        rows = run.eval_curves[c]
        for key, ls, suffix in (
            ("eval/clean/accuracy", "-", "clean"),
            (f"eval/{c}/accuracy", "--", eval_label(c)),
        ):
            pts = [(r["step"], 100 * r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            if pts and not (c == "none" and suffix != "clean"):
                xs, ys = zip(*pts)
                ax.plot(
                    xs,
                    ys,
                    ls,
                    marker="o",
                    ms=3,
                    color=colors[c],
                    label=f"{model_label(c)}, {suffix}",
                )
    ax.set_xlabel("step")
    ax.set_ylabel("held-out accuracy %")
    ax.set_title("Greedy evaluation during training")
    ax.grid(color="#eeeeee")
    ax.legend(frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, figdir, "training_eval")


# ============================================================================ reading


def _ci_words(ci: Sequence[float]) -> str:
    return f"95% CI {ci_text(ci)}"


def reading(
    run: RunData,
    cells: dict[tuple[str, str], T1Cell],
    diag: dict[tuple[str, str], dict[str, Any]],
) -> list[str]:
    """Plain sentences stating what the numbers show; only CIs that exclude 0 are called gains/drops."""
    out: list[str] = []
    cols = [*run.benchmarks, "AVG"] if len(run.benchmarks) > 1 else list(run.benchmarks)
    # 1. each training vs base, clean test accuracy
    for model in run.train_conditions:
        for b in cols:
            c, base = cells.get((model, b)), cells.get(("base", b))
            if c is None or base is None or c.delta is None:
                continue
            where = "the average over benchmarks" if b == "AVG" else b
            d = c.delta
            nums = f"{signed(d['diff'])} points, {_ci_words(d['ci95'])}"
            if excludes_zero(d["ci95"]):
                verb = "raised" if d["diff"] > 0 else "lowered"
                out.append(
                    f"{model_label(model)} {verb} clean test accuracy on {where} from "
                    f"{pct(base.accuracy)}% to {pct(c.accuracy)}% ({nums})."
                )
            else:
                out.append(
                    f"{model_label(model)}'s clean test accuracy on {where} ({pct(c.accuracy)}% "
                    f"vs {pct(base.accuracy)}% for base) is within noise of base ({nums})."
                )
    # 2. share of clean GRPO's gain kept by corruption-trained models
    key = "AVG" if len(run.benchmarks) > 1 else (run.benchmarks[0] if run.benchmarks else None)
    ref = cells.get(("none", key)) if key else None
    if ref is not None and ref.delta is not None:
        where = "on average" if key == "AVG" else f"on {key}"
        for model in [m for m in run.train_conditions if m != "none"]:
            c = cells.get((model, key))
            if c is None or c.delta is None:
                continue
            if excludes_zero(ref.delta["ci95"]) and ref.delta["diff"] > 0:
                share = c.delta["diff"] / ref.delta["diff"]
                out.append(
                    f"{model_label(model)} kept {100 * share:.0f}% of clean GRPO's gain {where} "
                    f"({signed(c.delta['diff'])} vs {signed(ref.delta['diff'])} points)."
                )
            vs = _vs_grpo(run, model, key)
            if vs is not None:
                nums = f"{signed(vs['diff'])} points, {_ci_words(vs['ci95'])}"
                if excludes_zero(vs["ci95"]):
                    word = "above" if vs["diff"] > 0 else "below"
                    out.append(f"{model_label(model)} scored {word} clean GRPO {where} ({nums}).")
                else:
                    out.append(
                        f"{model_label(model)} and clean GRPO differ {where} within noise ({nums})."
                    )
    # 3. blank images at inference, by modality version
    for model in ("base", "none"):
        for b in versioned_benchmarks(run):
            byv = (diag.get((model, b)) or {}).get("vision_gain_by_version") or {}
            parts = []
            for v in _version_order(set(byv)):
                g = byv[v]
                if g is None:
                    continue
                if excludes_zero(g["ci95"]):
                    fell = g["diff"] > 0
                    ci = g["ci95"] if fell else [-g["ci95"][1], -g["ci95"][0]]
                    word = "fell by" if fell else "rose by"
                    parts.append(
                        f"{word} {pct(abs(g['diff']))} points on {v} items ({_ci_words(ci)})"
                    )
                else:
                    parts.append(
                        f"changed within noise on {v} items ({signed(-g['diff'])} points, "
                        f"{_ci_words([-g['ci95'][1], -g['ci95'][0]])})"
                    )
            if parts:
                out.append(
                    f"Under blank images, {model_label(model)} accuracy on {b} (test) "
                    + "; ".join(parts)
                    + "."
                )
    # 4. blank images overall: a drop, a rise (the paper's finding 4) or noise, per model
    for (model, b), d in diag.items():
        g = d.get("vision_gain")
        if g is None or not excludes_zero(g["ci95"]) or g["diff"] > 0:
            continue
        out.append(
            f"Blank images raised {model_label(model)}'s accuracy on {b} (test) from "
            f"{pct(g['accuracy_a'])}% to {pct(g['accuracy_b'])}% ({_ci_words([-g['ci95'][1], -g['ci95'][0]])})."
        )
    # 5. answering anyway under corruption
    for (model, b), d in diag.items():
        if model not in ("base", "none"):
            continue
        hs = d["hallucination"]
        parts = [
            f"{pct(h['rate'])}% of items under {EVAL_LONG.get(c, c)} ({h['answered_correct']} of "
            "those answers right)"
            for c, h in hs.items()
            if h["rate"] is not None
        ]
        if parts:
            out.append(
                f"{model_label(model)} on {b} (test) still committed to an answer on "
                + ", ".join(parts)
                + "."
            )
    # 6. corruption-trained models on their own corruption vs clean GRPO (finding 6)
    for model in [m for m in run.train_conditions if m != "none" and m in run.eval_conditions]:
        for b in run.benchmarks:
            a, r = run.cell(model, b, "test", model), run.cell("none", b, "test", model)
            g = paired_diff({b: a}, {b: r}) if a and r else None
            if g is None:
                continue
            nums = f"{pct(g['accuracy_a'])}% vs {pct(g['accuracy_b'])}%, {signed(g['diff'])} points, {_ci_words(g['ci95'])}"
            if excludes_zero(g["ci95"]):
                word = "above" if g["diff"] > 0 else "below"
                out.append(
                    f"Under {EVAL_LONG[model]} on {b}, {model_label(model)} scored {word} clean GRPO ({nums})."
                )
            else:
                out.append(
                    f"Under {EVAL_LONG[model]} on {b}, {model_label(model)} is within noise of clean GRPO ({nums})."
                )
    # 7. train vs test split, clean (different items: numbers only, no claim)
    for model in run.train_conditions[:1]:
        for b in run.benchmarks:
            tr, te = run.cell(model, b, "train", "none"), run.cell(model, b, "test", "none")
            if tr and te:
                a_tr = sum(bool(r["correct"]) for r in tr) / len(tr)
                a_te = sum(bool(r["correct"]) for r in te) / len(te)
                out.append(
                    f"{model_label(model)} scored {pct(a_tr)}% on a {len({r['id'] for r in tr})}-item slice of the {b} "
                    f"train split against {pct(a_te)}% on its test split (clean; different items, "
                    "so no paired test)."
                )
    return out


def _vs_grpo(run: RunData, model: str, key: str) -> dict[str, Any] | None:
    """Paired clean test difference of a model vs clean GRPO, on one benchmark or macro-averaged."""
    benches = run.benchmarks if key == "AVG" else [key]
    per_a = {b: run.cell(model, b, "test", "none") for b in benches}
    per_b = {b: run.cell("none", b, "test", "none") for b in benches}
    if not all(per_a.values()) or not all(per_b.values()):
        return None
    return paired_diff(per_a, per_b)


# ============================================================================ report.md

FIGURE_STEMS = ("matrix", "gains", "training_curves", "training_eval")


def _run_info(run: RunData) -> list[str]:
    lines = [f"- Model: `{run.model_name}`"]
    lines.append(f"- Benchmarks: {', '.join(run.benchmarks) or 'none found'}")
    lines.append(
        "- Train conditions: "
        + ", ".join(f"{model_label(c)} (`{c}`)" for c in run.train_conditions)
    )
    lines.append(
        "- Eval conditions: " + ", ".join(f"{eval_label(c)} (`{c}`)" for c in run.eval_conditions)
    )
    timing = (run.results or {}).get("timing")
    if isinstance(timing, dict):
        # top-level numbers only: per-cell timings live in results.json
        items = [
            f"{k} {v:.0f} s"
            for k, v in sorted(timing.items())
            if k.endswith("_s") and isinstance(v, (int, float))
        ]
        if items:
            lines.append(f"- Timing: {', '.join(items)}")
    if run.split_names:
        names = ", ".join(f"{b}: `{s}`" for b, s in sorted(run.split_names.items()))
        lines.append(f"- Evaluation split read as the test split: {names}")
    samples = 1 + max(
        (int(r.get("sample", 0)) for rs in run.records.values() for r in rs), default=0
    )
    if samples > 1:
        lines.append(
            f"- Up to {samples} samples per item: accuracies average the samples (their Wilson "
            "intervals count samples as independent, so they are too narrow); deltas pair per-item "
            "means; modality diagnostics use sample 0."
        )
    errs = sum(1 for rs in run.records.values() for r in rs if r.get("grader_error"))
    lines.append(
        f"- Grader errors in the records: {errs}"
        + (" (these count as wrong; check them)" if errs else "")
    )
    return lines


def write_report(run_dir: Path) -> Path:
    """Rebuild run_dir/report.md, figures/ and tables/ from the run folder; returns report.md's path."""
    run = load_run(Path(run_dir))
    root = run.root
    figdir, tabdir = root / "figures", root / "tables"
    figdir.mkdir(exist_ok=True)
    tabdir.mkdir(exist_ok=True)
    for old in [
        *figdir.glob("versions-*.*"),
        *[figdir / f"{s}.{e}" for s in FIGURE_STEMS for e in ("png", "pdf")],
    ]:
        old.unlink(missing_ok=True)  # a rebuild must not keep figures the data no longer gives

    cells = table1_cells(run)
    diag = diagnostics_all(run)
    t1 = table1(run, cells)
    tables: list[Table] = [t1, matrix_table(run), diagnostics_table(run, diag)]
    vt = versions_table(run, diag)
    st = splits_table(run)
    tables += [t for t in (vt, st) if t is not None]
    for t in tables:
        atomic.write_text(tabdir / f"{t.name}.csv", t.csv())
        atomic.write_text(tabdir / f"{t.name}.md", t.markdown() + "\n")
    atomic.write_text(tabdir / "table1.tex", table1_latex(run, cells))

    figs: dict[str, Path | None] = {
        "matrix": fig_matrix(run, figdir),
        "gains": fig_gains(run, cells, figdir),
        "training_curves": fig_curves(run, figdir),
        "training_eval": fig_eval_curves(run, figdir),
    }
    for b in versioned_benchmarks(run):
        figs[f"versions-{b}"] = fig_versions(run, b, figdir)

    missing = missing_pieces(run)
    L: list[str] = [f"# Hallucination-as-Cue report: {run.model_name}", ""]
    L += [
        "Rebuilt from the run folder's per-item records and training logs by `hallucue-mlx report`.",
        "Accuracies are % of items; intervals are 95%: Wilson for one accuracy, paired bootstrap over "
        f"shared items ({N_BOOT} resamples, seed {BOOT_SEED}) for a difference. **Bold** differences "
        "have a CI that excludes 0.",
        "",
    ]
    L += ["## Run", "", *_run_info(run), ""]
    if missing or run.problems:
        L += [
            "## Missing or incomplete",
            "",
            "This report covers what the folder holds; a finished run would also have:",
            "",
        ]
        L += [f"- {m}" for m in missing] + [f"- {p}" for p in run.problems] + [""]

    L += ["## Reading", ""]
    sentences = reading(run, cells, diag)
    L += (
        [f"- {s}" for s in sentences]
        if sentences
        else ["- No comparison is possible yet: no model has clean test records next to base."]
    )
    L += [""]

    L += [
        "## Table 1: clean test accuracy",
        "",
        "Rows as in the paper's Table 1. Base: accuracy [Wilson CI]. Trained models: accuracy "
        "(change vs base [paired bootstrap CI]). AVG is the unweighted mean over benchmarks.",
        "",
        t1.markdown(),
        "",
        "Also as `tables/table1.csv` and LaTeX `tables/table1.tex`.",
        "",
    ]
    if figs["gains"]:
        L += ["![Change vs base](figures/gains.png)", ""]

    L += [
        "## Train × eval corruption matrix (test split)",
        "",
        "Rows: the model (trained under a condition, or base); columns: the condition at evaluation.",
        "",
        tables[1].markdown() if tables[1].rows else "_No evaluation records yet._",
        "",
    ]
    if figs["matrix"]:
        L += ["![Corruption matrix](figures/matrix.png)", ""]

    L += [
        "## Modality diagnostics (test split)",
        "",
        "Gains are clean accuracy minus accuracy under the corruption, in points, paired on items "
        "(vision gain: blank images; random-image gain: mismatched images; text gain: text removal). "
        "'Answered' is the share of items where the model still committed to an answer under the "
        "corruption (no abstention), with how many of those were right by luck.",
        "",
        tables[2].markdown() if tables[2].rows else "_No clean records to compare with._",
        "",
    ]

    L += ["## Modality versions", ""]
    if vt is not None:
        L += ["Accuracy % by modality version, clean / under blank images.", "", vt.markdown(), ""]
        for b in versioned_benchmarks(run):
            if figs.get(f"versions-{b}"):
                L += [f"![Versions on {b}](figures/versions-{b}.png)", ""]
    else:
        L += ["_No benchmark with modality versions in the records._", ""]

    L += ["## Train vs test split", ""]
    if st is not None:
        L += [
            "Accuracy % by split and eval condition. The paper's eight settings for a corruption X are "
            "the cells {GRPO, GRPO-X} × {clean, X} × {train, test}.",
            "",
            st.markdown(),
            "",
        ]
    else:
        L += ["_No train-split evaluation in the records._", ""]

    L += ["## Training curves", ""]
    if figs["training_curves"]:
        L += ["![Training curves](figures/training_curves.png)", ""]
        for c in run.train_conditions:
            rows = run.curves.get(c) or []
            if rows:
                last = rows[-1]
                L.append(
                    f"- {model_label(c)}: {len(rows)} steps logged, last step {last['step']}, "
                    f"final reward {last.get('reward', float('nan')):.3f}."
                )
        L.append("")
    else:
        L += ["_No training metrics found._", ""]
    if figs["training_eval"]:
        L += ["![Evaluation during training](figures/training_eval.png)", ""]

    L += ["## Figures", ""]
    listed = [(k, p) for k, p in figs.items() if p is not None]
    L += [
        f"- [{p.name}](figures/{p.name}) (also [PDF](figures/{p.stem}.pdf))" for _, p in listed
    ] or ["- none"]
    L += ["", "## Tables", ""]
    L += [
        f"- [{t.name}.csv](tables/{t.name}.csv), [{t.name}.md](tables/{t.name}.md)" for t in tables
    ]
    L += ["- [table1.tex](tables/table1.tex)", ""]

    L += [
        "## Reference: the paper's Table 1 (not this run)",
        "",
        "Qwen2.5-VL-3B, RL on Geometry3K, accuracy % (Zhang et al., arXiv 2604.03179), for scale only:",
        "",
        "| Model | MathVision | MathVerse | MathVista | WeMath | AVG |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    L += [f"| {k} | " + " | ".join(f"{v:.2f}" for v in vals) + " |" for k, vals in PAPER_3B.items()]
    L.append("")
    return atomic.write_text(root / "report.md", "\n".join(L))
