"""write_report: a run folder's report.md, tables/ and figures/, rebuilt from its records.

write_report(run_dir) -> run_dir/report.md, run_dir/figures/*.png|pdf, run_dir/tables/*, and
run_dir/report.html (the same report as one self-contained file, see report/html.py)
"""

from __future__ import annotations

import re
from pathlib import Path

from hallucue_mlx import atomic
from hallucue_mlx.metrics import BOOT_SEED, N_BOOT
from hallucue_mlx.report.figures import (
    fig_curves,
    fig_eval_curves,
    fig_gains,
    fig_matrix,
    fig_versions,
)
from hallucue_mlx.report.html import write_html
from hallucue_mlx.report.labels import FILTER_NOTE, RANDOM_REWARD, eval_label, md_code
from hallucue_mlx.report.load import RunData, load_run, missing_pieces
from hallucue_mlx.report.reading import reading
from hallucue_mlx.report.tables import (
    OUTCOME_HEADS,
    Cells,
    Diagnostics,
    Gaps,
    Sources,
    Table,
    clean_cells,
    diagnostics_all,
    diagnostics_table,
    gain_sources_all,
    gap_table,
    matrix_table,
    outcomes_table,
    sources_table,
    splits_table,
    table1,
    table1_latex,
    train_test_gaps,
    versioned_benchmarks,
    versions_table,
)

FIGURE_STEMS = ("matrix", "gains", "training_curves", "training_eval")
# The paper's Table 1 (Qwen2.5-VL-3B, RL on Geometry3K), shown only as a labelled reference.
PAPER_3B = {
    "base": (18.19, 34.82, 51.40, 54.48, 39.72),
    "GRPO": (22.73, 37.72, 58.40, 60.11, 44.74),
    "GRPO-BI": (20.95, 35.10, 56.40, 56.55, 42.25),
    "GRPO-RI": (20.86, 35.76, 58.00, 55.17, 42.45),
}
Figures = dict[str, Path | None]


def _quick(run: RunData) -> bool:
    """A `--quick` smoke run (the manifest says so)."""
    return bool((run.manifest or {}).get("quick"))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _time_line(timing: object) -> str | None:
    """'- Time: 34.0 min of work (trainings 25.2 min, evaluations 8.6 min)' from results.json's
    timing (per-task times stay in results.json)."""
    if not isinstance(timing, dict) or not isinstance(timing.get("total_s"), (int, float)):
        return None
    parts = []
    for key, word in (("train_s", "trainings"), ("eval_s", "evaluations")):
        v = timing.get(key)
        v = sum(x for x in v.values() if isinstance(x, (int, float))) if isinstance(v, dict) else v
        if isinstance(v, (int, float)) and v > 0:
            parts.append(f"{word} {_duration(v)}")
    sessions = timing.get("sessions")
    extra = f"; {sessions} sessions (resumed)" if isinstance(sessions, int) and sessions > 1 else ""
    inner = f" ({', '.join(parts)}{extra})" if parts or extra else ""
    return f"- Time: {_duration(timing['total_s'])} of work{inner}"


def _run_info(run: RunData) -> list[str]:
    lines = [
        f"- Model: {md_code(run.model_name)}" + (" (a --quick smoke run)" if _quick(run) else "")
    ]
    lines.append(f"- Benchmarks: {', '.join(run.benchmarks) or 'none found'}")
    conds = [c for c in run.train_conditions if c not in run.controls]
    lines.append("- Train conditions: " + ", ".join(f"{run.label(c)} (`{c}`)" for c in conds))
    if RANDOM_REWARD in run.controls:
        lines.append(
            f"- Control: {run.label(RANDOM_REWARD)} (`{RANDOM_REWARD}`): clean GRPO's recipe with "
            "the accuracy reward replaced by a fair coin flip (the format reward real; "
            "grid.random_reward_control). A gain clean GRPO has over it came from the reward "
            "signal; its logged accuracy is the true one, its reward the coin's."
        )
    if run.filtered:
        lines.append(f"- {FILTER_NOTE}")
    lines.append(
        "- Eval conditions: " + ", ".join(f"{eval_label(c)} (`{c}`)" for c in run.eval_conditions)
    )
    for name, entry in run.imported.items():
        how = "converted by mlx-vlm" if entry.get("converted") else "MLX weights used as given"
        lines.append(
            f"- Imported model {name}: trained elsewhere, from {md_code(entry.get('source', '?'))} "
            f"({how}), evaluated here with the {md_code(entry.get('template', '?'))} prompt"
            + ("" if entry.get("done") else "; its evaluation is not finished")
        )
    time_line = _time_line((run.results or {}).get("timing"))
    if time_line:
        lines.append(time_line)
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


def _write_tables(
    run: RunData, cells: Cells, diag: Diagnostics, sources: Sources, gaps: Gaps, tabdir: Path
) -> list[Table]:
    """Table 1, matrix and diagnostics always; the outcomes and their sources, versions, splits
    and the train-test gap when the records allow."""
    tables: list[Table] = [table1(run, cells), matrix_table(run), diagnostics_table(run, diag)]
    optional = (
        outcomes_table(run),
        sources_table(run, sources),
        versions_table(run, diag),
        splits_table(run),
        gap_table(run, gaps),
    )
    tables += [t for t in optional if t is not None]
    for stem in ("outcomes", "gain_sources", "train_test_gap"):
        if stem not in {t.name for t in tables}:  # a rebuild must not keep tables the data lost
            for ext in ("csv", "md"):
                (tabdir / f"{stem}.{ext}").unlink(missing_ok=True)
    for t in tables:
        atomic.write_text(tabdir / f"{t.name}.csv", t.csv())
        atomic.write_text(tabdir / f"{t.name}.md", t.markdown() + "\n")
    atomic.write_text(tabdir / "table1.tex", table1_latex(run, cells))
    return tables


def _write_figures(run: RunData, cells: Cells, figdir: Path) -> Figures:
    """Every figure the data gives, by stem; None where it gives none."""
    for old in [
        *figdir.glob("versions-*.*"),
        *[figdir / f"{s}.{e}" for s in FIGURE_STEMS for e in ("png", "pdf")],
    ]:
        old.unlink(missing_ok=True)  # a rebuild must not keep figures the data no longer gives
    figs: Figures = {
        "matrix": fig_matrix(run, figdir),
        "gains": fig_gains(run, cells, figdir),
        "training_curves": fig_curves(run, figdir),
        "training_eval": fig_eval_curves(run, figdir),
    }
    for b in versioned_benchmarks(run):
        figs[f"versions-{b}"] = fig_versions(run, b, figdir)
    return figs


def _head(run: RunData) -> list[str]:
    """Title, how to read the numbers, the run, and what is missing."""
    L: list[str] = [f"# Hallucination-as-Cue report: {md_code(run.model_name)}", ""]
    if _quick(run):
        L += [
            "> **Smoke run (`--quick`).** Every cell ran, on a few items with a few training "
            "steps, to check that the pipeline works. Its numbers say nothing about the method; "
            "`hallucue-mlx run` (without `--quick`) gives the real comparison, and "
            "`hallucue-mlx plan` predicts its time first.",
            "",
        ]
    L += [
        "Rebuilt from the run folder's per-item records and training logs by `hallucue-mlx report`.",
        "Accuracies are % of items; intervals are 95%: Wilson for one accuracy, paired bootstrap over "
        f"shared items ({N_BOOT} resamples, seed {BOOT_SEED}) for a difference. **Bold** differences "
        "have a CI that excludes 0. Every trained model here is one training seed, so these "
        "intervals cover item sampling only, not seed-to-seed variation (`hallucue-mlx run "
        "--seeds 3` trains each condition under three seeds and reports intervals over both).",
        "",
    ]
    L += ["## Run", "", *_run_info(run), ""]
    missing = missing_pieces(run)
    if missing or run.problems:
        L += [
            "## Missing or incomplete",
            "",
            "This report covers what the folder holds; a finished run would also have:",
            "",
        ]
        L += [f"- {m}" for m in missing] + [f"- {p}" for p in run.problems] + [""]
    return L


_MOVED = re.compile(r"\b(raised|lowered|fell by|rose by|scored above|scored below|kept)\b")


def _noise_only(sentence: str) -> bool:
    """A comparison whose every difference is within noise (nothing in it moved)."""
    return "within noise" in sentence and not _MOVED.search(sentence)


def _reading_section(
    run: RunData, cells: Cells, diag: Diagnostics, sources: Sources, gaps: Gaps
) -> list[str]:
    """The reading: what moved first, one bullet each; the comparisons within noise folded into
    one bullet (listed in a collapsed block), so that a run where nothing moved reads short."""
    L = ["## Reading", ""]
    sentences = reading(run, cells, diag, sources, gaps)
    if not sentences:
        return [
            *L,
            "- No comparison is possible yet: no model has clean test records next to base.",
            "",
        ]
    quick = _quick(run)
    noise = [x for x in sentences if quick or _noise_only(x)]
    moved = [x for x in sentences if x not in noise]
    if quick:
        L.append(
            "- **Smoke run:** a few training steps on a few items check that every cell runs; "
            "no difference here can be told from noise, so none is read. Run without `--quick` "
            "for the real comparison."
        )
    L += [f"- {x}" for x in moved]
    if noise and not quick:
        everything = " (every comparison)" if not moved else ""
        L.append(
            f"- {len(noise)} comparisons{everything} are within noise: their 95% intervals "
            "include 0, so this run cannot tell those models apart (listed below)."
        )
    if noise:
        what = "not read (smoke run)" if quick else "within noise"
        L += ["", f"### In detail: {len(noise)} comparisons {what}", ""]
        L += [f"- {x}" for x in noise]
    return L + [""]


def _results_sections(run: RunData, tables: list[Table], figs: Figures) -> list[str]:
    """Table 1, the corruption matrix and the modality diagnostics."""
    L = [
        "## Table 1: clean test accuracy",
        "",
        "Rows as in the paper's Table 1. Base: accuracy [Wilson CI]. Trained models: accuracy "
        "(change vs base [paired bootstrap CI]). AVG is the unweighted mean over benchmarks.",
        "",
        tables[0].markdown(),
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
        "(vision gain: blank images; random-image gain: mismatched images; text gain: text removal, "
        "on the items it changed; TR coverage: how many of the items text removal changed, the "
        "rest state no condition its rules find). "
        "Hallucination: on the items whose needed information the corruption removed (the image "
        "of an item that needs it, under blank or random images; a fact only the text states, "
        "under text removal), the share the model answered anyway (neither declined nor left "
        "without an answer), with its 95% CI and the number of such items; the share declined "
        "(\\boxed{unknown} or a decline phrase, never graded correct); the accuracy of the answers "
        "against chance, 1/size of each item's answer set (1/k for k options, synth's per-task "
        "sets; open answers of unknown set are left out and counted); and the mean share of the "
        "most common answer per task (100%: one constant answer, not reading). Items still "
        "answerable from what is left, or "
        "whose benchmark does not say where their information lives, are not counted (—: none).",
        "",
        tables[2].markdown() if tables[2].rows else "_No clean records to compare with._",
        "",
    ]
    return L


def _outcomes_section(tables: list[Table]) -> list[str]:
    """Where the answers go right or wrong (traced records only; absent from older runs)."""
    named = {t.name: t for t in tables}
    ot, gt = named.get("outcomes"), named.get("gain_sources")
    if ot is None:
        return []
    heads = OUTCOME_HEADS
    L = [
        "## Where the answers go right or wrong (test split)",
        "",
        "Synth's responses state the fact they read from the image and each addition (\"The "
        'digit is 7. 7 + 4 = 11."), and every item stores the facts it was drawn from, so each '
        f"answer falls in one outcome, checked in this order: {heads['correct']}; "
        f"{heads['declined']}; {heads['format']} (no `<think>...</think> \\boxed{{}}` answer); "
        f"{heads['read']} (the fact stated is wrong); {heads['compute']} (no fact stated wrong, "
        "but an addition wrong or missing, checked from what the response itself stated; a "
        f"response that states no fact before its additions lands here); {heads['final']} "
        f"(every checked step right, the boxed answer not); {heads['wrong']} (no step to "
        "check). % of the records under each eval condition; a row sums to 100 up to rounding.",
        "",
        ot.markdown(),
        "",
    ]
    if gt is not None:
        L += [
            "Clean test inputs: reading accuracy is the share of the responses that state the "
            "visual fact which state it right; computing accuracy, among the responses that read "
            "it right and whose item asks for additions, the share with every addition right; "
            "format, the share in the answer format; accuracy, the share correct. Base: the "
            "rate; trained models: the rate (change vs base [paired bootstrap CI over items, "
            "whole clusters resampled, both rates recomputed on each resample]).",
            "",
            gt.markdown(),
            "",
        ]
    return L


def _versions_and_splits(run: RunData, tables: list[Table], figs: Figures) -> list[str]:
    named = {t.name: t for t in tables}
    vt, st, gap = named.get("versions"), named.get("splits"), named.get("train_test_gap")
    L = ["## Modality versions", ""]
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
    if gap is not None:
        L += [
            "Clean accuracy % on the train slice and on the test split (items in brackets), the "
            "gap in points, and each trained model's gap minus base's: the splits hold different "
            "items, so each is paired with base on its own items and the two paired differences "
            "are bootstrapped independently (95% CI).",
            "",
            gap.markdown(),
            "",
        ]
    return L


def _training_section(run: RunData, figs: Figures) -> list[str]:
    L = ["## Training curves", ""]
    if figs["training_curves"]:
        L += ["![Training curves](figures/training_curves.png)", ""]
        for c in run.train_conditions:
            rows = run.curves.get(c) or []
            if rows:
                last = rows[-1]
                L.append(
                    f"- {run.label(c)}: {len(rows)} steps logged, last step {last['step']}, "
                    f"final reward {last.get('reward', float('nan')):.3f}"
                    + _spread_words(rows[0], last)
                    + "."
                )
        L.append("")
    else:
        L += ["_No training metrics found._", ""]
    if figs["training_eval"]:
        L += ["![Evaluation during training](figures/training_eval.png)", ""]
    return L


def _spread_words(first: dict, last: dict) -> str:
    """Groups with reward spread (1 - frac_reward_zero_std) at the first and last step: the
    share of prompts GRPO can learn from; empty for metrics without the key."""
    if "frac_reward_zero_std" not in first or "frac_reward_zero_std" not in last:
        return ""
    a, b = (100 * (1 - r["frac_reward_zero_std"]) for r in (first, last))
    return f"; groups with reward spread {a:.0f}% at step {first['step']}, {b:.0f}% at the last"


def _listing(tables: list[Table], figs: Figures) -> list[str]:
    """Links to every figure and table, then the paper's Table 1 for scale."""
    L = ["## Figures", ""]
    listed = [p for p in figs.values() if p is not None]
    L += [f"- [{p.name}](figures/{p.name}) (also [PDF](figures/{p.stem}.pdf))" for p in listed] or [
        "- none"
    ]
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
    return L


def write_report(run_dir: Path) -> Path:
    """Rebuild run_dir/report.md, figures/, tables/ and report.html from the run folder; returns
    report.md's path (report.html is beside it)."""
    run = load_run(Path(run_dir))
    figdir, tabdir = run.root / "figures", run.root / "tables"
    figdir.mkdir(exist_ok=True)
    tabdir.mkdir(exist_ok=True)
    cells = clean_cells(run)
    diag = diagnostics_all(run)
    sources, gaps = gain_sources_all(run), train_test_gaps(run)
    tables = _write_tables(run, cells, diag, sources, gaps, tabdir)
    figs = _write_figures(run, cells, figdir)
    lines = [
        *_head(run),
        *_reading_section(run, cells, diag, sources, gaps),
        *_results_sections(run, tables, figs),
        *_outcomes_section(tables),
        *_versions_and_splits(run, tables, figs),
        *_training_section(run, figs),
        *_listing(tables, figs),
    ]
    path = atomic.write_text(run.root / "report.md", "\n".join(lines))
    write_html(path)
    return path
