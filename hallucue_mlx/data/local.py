"""The local format for users' own data and for cached subsets: items.jsonl plus an image folder.

One JSON object per line. Required: id, question, answer. Optional: image (a path relative to the
JSONL file's folder, or null), choices (a list of option texts, or one string 'A. ..; B. ..'),
answer_kind ('choice', 'number', 'free'; default: 'choice' when choices are given, else 'number'
when the answer parses as a number, else 'free'), version (one of VERSIONS or ''), task,
precision, unit, benchmark, split, condition_spans ([[start, end], ...]), meta (an object).
For multiple-choice items the answer is the option letter.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hallucue_mlx import atomic
from hallucue_mlx.data.common import (
    Adapter,
    BenchmarkError,
    Row,
    RowContext,
    is_number,
    parse_options,
    read_image,
    read_jsonl,
    text,
)
from hallucue_mlx.data.item import ANSWER_KINDS, Item

ITEMS_FILE = "items.jsonl"
IMAGES_DIR = "images"
REQUIRED = ("id", "question", "answer")


def items_file(path: str | Path) -> Path | None:
    """The items.jsonl a path names (the file itself or a folder holding one), else None."""
    p = Path(path)
    if p.is_file() and p.suffix == ".jsonl" and _looks_local(p):
        return p
    if p.is_dir() and (p / ITEMS_FILE).is_file():
        return p / ITEMS_FILE
    return None


def _looks_local(p: Path) -> bool:
    with p.open("rb") as f:
        first = f.readline()
    try:
        # bad bytes are replaced here: read_rows then names the line that is not UTF-8
        row = json.loads(first.decode("utf-8-sig", errors="replace"))
    except json.JSONDecodeError:
        return False
    return isinstance(row, dict) and all(k in row for k in REQUIRED)


def read_rows(path: Path) -> list[Row]:
    """The rows of an items.jsonl: each a JSON object with id, question and answer, ids unique.
    Errors name the file and line."""
    rows = []
    first_line: dict[str, int] = {}
    for n, row in read_jsonl(path):
        if not isinstance(row, dict):
            raise BenchmarkError(
                f"local: {path} line {n} is a JSON {type(row).__name__}, not an object; write "
                f'one object per line, e.g. {{"id": "q1", "question": "...", "answer": "3"}}.'
            )
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise BenchmarkError(
                f"local: {path} line {n} has no {missing[0]!r}; every line needs "
                f"{list(REQUIRED)}. Add it or remove that line."
            )
        item_id = text(row["id"])
        if item_id in first_line:
            raise BenchmarkError(
                f"local: {path} lines {first_line[item_id]} and {n} have the same id "
                f"{item_id!r}; ids must be unique (records, corruptions and subsets are keyed by "
                f"id). Rename one of them or remove the duplicate."
            )
        first_line[item_id] = n
        rows.append(row)
    return rows


def _choices(row: Row) -> tuple[str, ...]:
    value = row.get("choices")
    if value is None or value == "" or value == []:
        return ()
    if isinstance(value, str):
        return parse_options(value)
    if not isinstance(value, list) or any(isinstance(v, (list, dict)) for v in value):
        shown = repr(value)[:80]
        raise BenchmarkError(
            f"local: item {text(row.get('id'))!r}: choices must be a list of option texts or "
            f"one string 'A. ..; B. ..', got {shown}; fix or remove that field."
        )
    return tuple(text(v) for v in value)


def _kind(row: Row) -> str:
    kind = text(row.get("answer_kind"))
    if kind:
        return kind
    if _choices(row):
        return "choice"
    return "number" if is_number(text(row["answer"])) else "free"


def key(row: Row, index: int) -> tuple[str, tuple[str, ...]]:
    return text(row["id"]), (text(row.get("task")), _kind(row), text(row.get("version")))


def to_item(row: Row, item_id: str, split: str, ctx: RowContext) -> Item:
    kind = _kind(row)
    where = f"local: row {ctx.index} (id {item_id})"
    if kind not in ANSWER_KINDS:
        raise BenchmarkError(
            f"{where}: answer_kind {kind!r} is not one of "
            f"{ANSWER_KINDS}; fix that field or leave it out to infer it."
        )
    question = text(row["question"])
    try:
        spans = tuple((int(a), int(b)) for a, b in row.get("condition_spans") or ())
    except (TypeError, ValueError) as err:
        raise BenchmarkError(
            f"{where}: condition_spans must be a list of [start, end] integer pairs, got "
            f"{row.get('condition_spans')!r}; fix or remove that field."
        ) from err
    bad = [s for s in spans if not 0 <= s[0] <= s[1] <= len(question)]
    if bad:
        raise BenchmarkError(
            f"{where}: condition span {list(bad[0])} is outside the question "
            f"({len(question)} characters); spans are [start, end) character offsets."
        )
    precision = row.get("precision")
    if isinstance(precision, float) and precision.is_integer():
        precision = int(precision)
    if precision is not None and (isinstance(precision, bool) or not isinstance(precision, int)):
        raise BenchmarkError(
            f"{where}: precision must be an integer number of decimals or null, got {precision!r}."
        )
    meta = row.get("meta") or {}
    if not isinstance(meta, dict):
        raise BenchmarkError(f"{where}: meta must be a JSON object, got {meta!r}.")
    return Item(
        id=item_id,
        benchmark=text(row.get("benchmark")) or "local",
        split=text(row.get("split")) or split,
        question=question,
        answer=text(row["answer"]).strip(),
        image=read_image(row.get("image"), ctx, item_id, "image"),
        choices=_choices(row),
        task=text(row.get("task")),
        version=text(row.get("version")),
        condition_spans=spans,
        answer_kind=kind,
        precision=precision,
        unit=text(row.get("unit")),
        meta=dict(meta),
    )


ADAPTER = Adapter(
    name="local",
    hub_id=None,
    splits=(),
    default_split="",
    answer_kinds=ANSWER_KINDS,
    description="Your own data: items.jsonl (id, question, answer, image, ...) + an image folder.",
    required=REQUIRED,
    image_columns=("image",),
    key=key,
    to_item=to_item,
)


def _file_name(item_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", item_id) + ".png"


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


def write_local(items: list[Item], out: str | Path) -> Path:
    """Write items in the local format (images as PNG); returns the items.jsonl path."""
    out = Path(out)
    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    names: set[str] = set()
    lines = []
    for it in items:
        image_rel = None
        if it.image is not None:
            name = _file_name(it.id)
            while name in names:  # ids that differ only in odd characters
                name = "_" + name
            names.add(name)
            image_rel = f"{IMAGES_DIR}/{name}"
            it.image.save(out / image_rel, format="PNG")
        row = {
            "id": it.id,
            "benchmark": it.benchmark,
            "split": it.split,
            "question": it.question,
            "answer": it.answer,
            "image": image_rel,
            "choices": list(it.choices),
            "answer_kind": it.answer_kind,
            "version": it.version,
            "task": it.task,
            "precision": it.precision,
            "unit": it.unit,
            "condition_spans": [list(s) for s in it.condition_spans],
            "meta": {k: _jsonable(v) for k, v in it.meta.items()},
        }
        lines.append(json.dumps(row, ensure_ascii=False, sort_keys=True))
    # Written last and atomically: a folder killed mid-write has no items.jsonl a run would trust.
    return atomic.write_text(out / ITEMS_FILE, "\n".join(lines) + "\n")
