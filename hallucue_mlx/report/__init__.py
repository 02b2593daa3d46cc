"""The report of a run folder: tables, figures and a plain reading, rebuilt from per-item records.

    write_report(run_dir) -> run_dir/report.md, run_dir/figures/*.png|pdf, run_dir/tables/*,
                             run_dir/report.html
    write_html(md_path) -> report.html beside any report.md (every figure and table embedded)

Inputs (as the grid writes them; any of them may be missing in a partial run):
manifest.json and results.json (only for the model name, the expected benchmarks and conditions,
and timing), train/<condition>/metrics.jsonl (training curves), and
eval/<model>/<benchmark>-<split>/records.jsonl (one record per item and eval condition). Every
number is recomputed from the records with `hallucue_mlx.metrics`, so the report does not trust
results.json and works on any partial run; what is missing is listed, not fatal.

Output is deterministic: the bootstrap is seeded, tables are ordered, and figures carry no
timestamps, so rebuilding a report from the same folder gives identical bytes.

Modules: load (run folder -> RunData), tables (tables and number formatting), figures,
reading (plain sentences), write (report.md), html (report.md -> one self-contained report.html),
labels (names of models and conditions).
"""

from hallucue_mlx.report.html import render_html, write_html
from hallucue_mlx.report.load import ReportError, RunData, load_run, missing_pieces
from hallucue_mlx.report.tables import Table
from hallucue_mlx.report.write import write_report

__all__ = [
    "ReportError",
    "RunData",
    "Table",
    "load_run",
    "missing_pieces",
    "render_html",
    "write_html",
    "write_report",
]
