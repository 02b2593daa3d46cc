"""Reading a run folder into RunData: safe against missing, cut-off and repeated pieces."""

from __future__ import annotations

import gzip
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hallucue_mlx import runfolder
from hallucue_mlx.corrupt import CORRUPTIONS
from hallucue_mlx.metrics import Record
from hallucue_mlx.report.labels import BASE, EVAL_LONG, filtered, md_code, model_label, plain_name
from hallucue_mlx.runfolder import CONTROL_MODELS
from hallucue_mlx.safefile import INPUT_MAX_BYTES, FileKindError, read_input_bytes, read_state


class ReportError(ValueError):
    """The folder is not a run folder (nothing a report could be built from)."""


@dataclass
class RunData:
    """Everything the report reads from one run folder."""

    root: Path
    model_name: str
    benchmarks: list[str]
    train_conditions: list[str]  # the trained models: one per condition, then the controls
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
    # models trained elsewhere (`hallucue-mlx import`): name -> imported.json's entry
    imported: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        return [BASE, *self.train_conditions, *self.imported]

    @property
    def controls(self) -> list[str]:
        """The trained models that are controls, not a training condition (the random-reward
        control): findings about a corruption leave them out."""
        return [m for m in self.train_conditions if m in CONTROL_MODELS]

    @property
    def corruption_trained(self) -> list[str]:
        """The models trained under a corruption (not clean GRPO, not a control)."""
        return [m for m in self.train_conditions if m != "none" and m not in CONTROL_MODELS]

    @property
    def filtered(self) -> bool:
        """Trained with the zero-spread group filter (labels.FILTER_MARK on its models)."""
        cfg = (self.manifest or {}).get("config")
        return filtered(cfg) if isinstance(cfg, dict) else False

    def label(self, model: str) -> str:
        """A model's name in tables and figures: an imported model's own name, else the name of
        the condition it was trained under (labels.model_label, marked when filtered)."""
        return model if model in self.imported else model_label(model, self.filtered)

    def cell(self, model: str, bench: str, split: str, cond: str) -> list[Record]:
        return [r for r in self.records.get((model, bench, split), []) if r["corruption"] == cond]

    def has(self, model: str, bench: str, split: str, cond: str) -> bool:
        return any(r["corruption"] == cond for r in self.records.get((model, bench, split), []))


def _read_json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    if not path.exists() and not path.is_symlink():
        return None
    try:
        data = json.loads(read_state(path))
    except json.JSONDecodeError as e:
        problems.append(
            f"{md_code(path.name)} is not valid JSON ({e.msg}, line {e.lineno}); ignored."
        )
        return None
    except FileKindError as e:
        problems.append(f"{md_code(path.name)}: {e}; ignored.")
        return None
    return data if isinstance(data, dict) else None


def _gunzip(data: bytes, path: Path) -> bytes:
    """The lines of a gzip-compressed records file, bounded like an uncompressed one."""
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
        out = f.read(INPUT_MAX_BYTES + 1)
    if len(out) > INPUT_MAX_BYTES:
        raise FileKindError(f"{path} holds over {INPUT_MAX_BYTES} bytes uncompressed", path)
    return out


def _lines(path: Path) -> list[str | None]:
    """The lines of a JSON-lines file (checked for kind and size before it is read); a line that
    is not UTF-8 is None (counted as unreadable by the callers)."""
    out: list[str | None] = []
    data = read_input_bytes(path, what="records file")
    if path.suffix == ".gz":  # a packed run folder (scripts/pack_results.py): the same lines
        data = _gunzip(data, path)
    for raw in data.splitlines():
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(None)
    return out


def _read_jsonl(path: Path, root: Path, problems: list[str]) -> list[dict[str, Any]]:
    """JSON lines; a cut-off line (a run killed mid-write) is skipped and reported."""
    rows: list[dict[str, Any]] = []
    bad = not_objects = 0
    for line in _lines(path):
        if line is None:
            bad += 1
            continue
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            not_objects += 1
    if bad:
        problems.append(f"{md_code(path.relative_to(root))}: {bad} unreadable line(s) skipped.")
    if not_objects:
        problems.append(
            f"{md_code(path.relative_to(root))}: {not_objects} line(s) that are not JSON objects skipped."
        )
    return rows


# The type each records.jsonl field must have when present: a string "false" where a boolean
# belongs would otherwise count as correct.
_BOOL, _INT, _STR = (bool,), (int,), (str,)
_RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str, int),
    "benchmark": _STR,
    "split": _STR,
    "corruption": _STR,
    "correct": _BOOL,
    "format_ok": _BOOL,
    "truncated": _BOOL,
    "corruption_applied": _BOOL,
    "corruption_changed": _BOOL,
    "sample": _INT,
    "response_tokens": _INT,
    "n_choices": _INT,
    "declined": _BOOL,
    "extracted": (str, type(None)),
    "grader_error": (str, type(None)),
    # step traces (trace.py): absent from records written before them
    "trace_chain": _INT,
    "trace_steps_ok": _INT,
    "trace_read": (bool, type(None)),
    "trace_computed": (bool, type(None)),
}
_TYPE_WORDS = {_BOOL: "true or false", _INT: "an integer", _STR: "a string"}


def _bad_field(row: Any) -> str | None:
    """Why a record line cannot be used (a field of the wrong type), or None."""
    if not isinstance(row, dict):
        return f"not a JSON object ({type(row).__name__})"
    for name, types in _RECORD_TYPES.items():
        if name not in row:
            continue
        v = row[name]
        ok = isinstance(v, types) and not (isinstance(v, bool) and bool not in types)
        if not ok:
            want = _TYPE_WORDS.get(
                types, " or ".join("null" if t is type(None) else t.__name__ for t in types)
            )
            return (
                f"field {name!r} is {md_code(repr(v)[:60])} ({type(v).__name__}), expected {want}"
            )
    if "corruption" in row and not plain_name(row["corruption"]):
        return (
            f"field 'corruption' is {md_code(repr(row['corruption'])[:60])}, not a condition name"
        )
    return None


def _typed_records(path: Path, root: Path, problems: list[str]) -> list[dict[str, Any]]:
    """The record lines of a records.jsonl whose fields have their types; each refused line is
    named (file:line and the field), the first few of a file one by one."""
    rows: list[dict[str, Any]] = []
    refused: list[str] = []
    torn = 0
    for lineno, line in enumerate(_lines(path), 1):
        if line is None:
            torn += 1
            continue
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            torn += 1
            continue
        why = _bad_field(row)
        if why is None:
            rows.append(row)
        else:
            refused.append(
                f"{md_code(f'{path.relative_to(root)}:{lineno}')}: {why}; record skipped."
            )
    if torn:
        problems.append(f"{md_code(path.relative_to(root))}: {torn} unreadable line(s) skipped.")
    problems.extend(refused[:5])
    if len(refused) > 5:
        problems.append(
            f"{md_code(path.relative_to(root))}: {len(refused) - 5} more record(s) with a field of the "
            "wrong type skipped."
        )
    return rows


def _names(value: Any) -> list[str] | None:
    """A list of names from results/manifest: strings, or dicts with a name."""
    if not isinstance(value, list):
        return None
    out = [
        v if isinstance(v, str) else v.get("name") if isinstance(v, dict) else None for v in value
    ]
    return [v for v in out if plain_name(v)]  # names only the project writes (plain_name)


def records_files(root: Path) -> list[Path]:
    """eval/<model>/<benchmark>-<split>/records.jsonl, or records.jsonl.gz in a packed folder."""
    plain = sorted((root / "eval").glob("*/*/records.jsonl"))
    have = {p.parent for p in plain}
    packed = [
        p for p in sorted((root / "eval").glob("*/*/records.jsonl.gz")) if p.parent not in have
    ]
    return sorted(plain + packed)


def _dedupe(recs: list[Record], where: str, problems: list[str]) -> list[Record]:
    """One record per (benchmark, id, condition, sample): the last wins (a resumed cell may repeat)."""
    seen: dict[tuple[str, str, str], Record] = {}
    for r in recs:
        key = (str(r.get("benchmark", "")), str(r["id"]), str(r["corruption"]), r.get("sample", 0))
        seen[key] = r
    if len(seen) < len(recs):
        problems.append(
            f"{md_code(where)}: {len(recs) - len(seen)} repeated record(s); kept the last."
        )
    return list(seen.values())


def _load_records(
    root: Path, problems: list[str]
) -> tuple[dict[tuple[str, str, str], list[Record]], dict[str, str]]:
    """eval/<model>/<benchmark>-<split>/records.jsonl -> records by (model, benchmark, role), and
    the benchmarks whose evaluation split is not called test."""
    records: dict[tuple[str, str, str], list[Record]] = {}
    split_names: dict[str, str] = {}
    for path in records_files(root):
        model, cell = path.parent.parent.name, path.parent.name
        bench, _, split = cell.rpartition("-")
        if not all(map(plain_name, (model, bench, split))):
            problems.append(
                f"{md_code(path.relative_to(root))}: not a folder name the project writes "
                "(eval/<model>/<benchmark>-<split>, letters, digits and ._+=-); skipped."
            )
            continue
        if not bench:
            problems.append(
                f"{md_code(path.relative_to(root))}: folder name is not <benchmark>-<split>; skipped."
            )
            continue
        rows = _typed_records(path, root, problems)
        good = [r for r in rows if {"id", "corruption", "correct"} <= r.keys()]
        if len(good) < len(rows):
            problems.append(
                f"{md_code(path.relative_to(root))}: {len(rows) - len(good)} record(s) without id, "
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
                    f"{md_code(path.relative_to(root))}: a second {role}-role split of {bench} for "
                    f"{model}; merged with the first."
                )
            where = str(path.relative_to(root))
            records[key] = _dedupe(records.get(key, []) + good, where, problems)
    return records, split_names


def _load_curves(
    root: Path, problems: list[str]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    """train/<condition>/metrics.jsonl -> its step lines and its in-training eval lines."""
    curves: dict[str, list[dict[str, Any]]] = {}
    eval_curves: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((root / "train").glob("*/metrics.jsonl")):
        if not plain_name(path.parent.name):
            problems.append(
                f"{md_code(path.relative_to(root))}: not a folder name the project writes; skipped."
            )
            continue
        rows = _read_jsonl(path, root, problems)
        curves[path.parent.name] = [r for r in rows if "step" in r and r.get("event") is None]
        eval_curves[path.parent.name] = [r for r in rows if r.get("event") == "eval"]
    return curves, eval_curves


def _refuse_torn(root: Path, problems: list[str]) -> None:
    """A folder with records files but not one complete record: a run stopped while writing."""
    found = [*records_files(root), *(root / "train").glob("*/metrics.jsonl")]
    if found:
        raise ReportError(
            f"{root} is a run folder whose records are incomplete: "
            f"{' '.join(problems) or 'its records files are empty.'} No complete record is left "
            "to report on (a run stopped while writing). Continue the run with the same command "
            f"and config (hallucue-mlx run --out {root} ...), then report again"
        )


def _listed(key: str, *sources: dict[str, Any] | None) -> list[str] | None:
    """The first non-empty list of names under `key` in results, manifest or config."""
    for src in sources:
        names = _names((src or {}).get(key))
        if names:
            return names
    return None


def load_run(run_dir: Path) -> RunData:
    """Read a run folder. Raises ReportError if it holds none of the expected pieces."""
    root = Path(run_dir)
    if root.exists() and not root.is_dir():
        raise ReportError(
            f"{root} is a file, not a run folder; pass the folder `hallucue-mlx run` wrote "
            f"(the one holding manifest.json and eval/), e.g. hallucue-mlx report {root.parent}"
        )
    if not root.is_dir():
        raise ReportError(
            f"run folder {root} does not exist; pass the folder `hallucue-mlx run` wrote"
        )
    problems: list[str] = []
    manifest = _read_json(root / "manifest.json", problems)
    results = _read_json(root / "results.json", problems)
    cfg = (manifest or {}).get("config") if isinstance((manifest or {}).get("config"), dict) else {}
    records, split_names = _load_records(root, problems)
    curves, eval_curves = _load_curves(root, problems)
    if manifest is None and results is None and not records and not curves:
        _refuse_torn(root, problems)
        raise ReportError(
            f"{root} holds no manifest.json, results.json, eval/*/*/records.jsonl or "
            "train/*/metrics.jsonl: not a run folder"
        )

    try:
        imported = runfolder.read_imported(root)
    except runfolder.GridError as e:
        problems.append(f"{md_code(e)}; its models are shown as trained ones.")
        imported = {}
    odd = [n for n in imported if not plain_name(n)]
    if odd:
        problems.append(
            f"{md_code(runfolder.IMPORTED)} names {len(odd)} model(s) with a name the import "
            f"never writes (e.g. {md_code(odd[0][:60])}); left out."
        )
        imported = {n: e for n, e in imported.items() if plain_name(n)}
    sources = (results, manifest, cfg)
    found_models = sorted({m for (m, _, _) in records} - {BASE} - set(imported))
    train = _listed("train_conditions", *sources) or [
        c for c in CORRUPTIONS if c in curves or c in found_models
    ]
    # the trained models that are no condition (the random-reward control), in the run's order
    listed = _listed("models", results, manifest) or []
    train += [m for m in listed if m != BASE and m not in imported and m not in train]
    train += [m for m in sorted(set(found_models) | set(curves)) if m not in train]
    found_evals = {str(r["corruption"]) for rs in records.values() for r in rs}
    evals = _listed("eval_conditions", *sources) or [c for c in CORRUPTIONS if c in found_evals]
    evals += sorted(found_evals - set(evals))
    benches = _listed("benchmarks", *sources) or []
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
        imported=imported,
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
                f"{run.label(cond)} (train condition `{cond}`): no training metrics (`train/{cond}/metrics.jsonl`)."
            )
    if not run.records:
        out.append("No evaluation records yet (`eval/<model>/<benchmark>-<split>/records.jsonl`).")
    for model in run.models:
        for bench in run.benchmarks:
            if (model, bench, "test") not in run.records:
                out.append(f"{run.label(model)}: no test-split evaluation on {bench}.")
                continue
            lacking = [c for c in run.eval_conditions if not run.has(model, bench, "test", c)]
            if lacking:
                names = ", ".join(EVAL_LONG.get(c, c) for c in lacking)
                out.append(f"{run.label(model)} on {bench} (test): not evaluated under {names}.")
    return out


@dataclass
class SweepData:
    root: Path
    key: str
    values: list[Any]
    runs: dict[str, RunData]  # value folder name -> its run (finished or partial)
    names: list[str]  # value folder names, in value order
    shared: dict[str, list[str]]  # value folder name -> models copied from an earlier value
    quick: bool

    @property
    def any_run(self) -> RunData:
        return next(iter(self.runs.values()))


def is_sweep(root: Path) -> bool:
    """A folder `hallucue-mlx sweep` (or a run with grid.ratios) wrote."""
    return (Path(root) / runfolder.SWEEP).is_file()


def load_sweep(root: Path) -> SweepData:
    """Read sweep.json and every value folder that has started. ReportError if none has."""
    root = Path(root)
    path = root / runfolder.SWEEP
    try:
        meta = runfolder.read_sweep(root)
    except runfolder.GridError as e:
        raise ReportError(str(e)) from None
    if meta is None or not path.is_file():
        raise ReportError(f"{root} has no {runfolder.SWEEP}: not a sweep folder")
    names = list(meta["runs"])
    key = meta.get("key")
    if not isinstance(key, str) or re.fullmatch(r"[A-Za-z0-9_.\[\]]{1,100}", key) is None:
        raise ReportError(
            f"{path} is not a sweep record: its key {md_code(repr(key)[:60])} is no config key"
        )
    values = meta.get("values")
    if not isinstance(values, list) or len(values) != len(names):
        raise ReportError(f"{path} is not a sweep record: its values do not match its runs")
    runs = {}
    for name in names:
        sub = root / name
        if sub.is_dir() and not sub.is_symlink() and (sub / runfolder.MANIFEST).is_file():
            runs[name] = load_run(sub)
    if not runs:
        raise ReportError(f"no value of the sweep in {root} has started; run the sweep first")
    return SweepData(
        root,
        key,
        values,
        runs,
        names,
        meta["shared"] if isinstance(meta.get("shared"), dict) else {},
        bool(meta.get("quick")),
    )
