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

from hallucue_mlx.data.bench.common import (
    Adapter,
    BenchmarkError,
    Row,
    RowContext,
    is_number,
    parse_options,
    read_image,
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
    with p.open(encoding="utf-8") as f:
        first = f.readline()
    try:
        row = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(row, dict) and all(k in row for k in REQUIRED)


def read_rows(path: Path) -> list[Row]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise BenchmarkError(
                    f"local: {path} line {n} is not valid JSON ({err}); fix or remove that line."
                ) from err
            rows.append(row)
    return rows


def _choices(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    if isinstance(value, str):
        return parse_options(value)
    return tuple(text(v) for v in value)


def _kind(row: Row) -> str:
    kind = text(row.get("answer_kind"))
    if kind:
        return kind
    if _choices(row.get("choices")):
        return "choice"
    return "number" if is_number(text(row["answer"])) else "free"


def key(row: Row, index: int) -> tuple[str, tuple[str, ...]]:
    return text(row["id"]), (text(row.get("task")), _kind(row), text(row.get("version")))


def to_item(row: Row, item_id: str, split: str, ctx: RowContext) -> Item:
    kind = _kind(row)
    if kind not in ANSWER_KINDS:
        raise BenchmarkError(
            f"local: row {ctx.index} (id {item_id}): answer_kind {kind!r} is not one of "
            f"{ANSWER_KINDS}; fix that field or leave it out to infer it."
        )
    precision = row.get("precision")
    return Item(
        id=item_id,
        benchmark=text(row.get("benchmark")) or "local",
        split=text(row.get("split")) or split,
        question=text(row["question"]),
        answer=text(row["answer"]).strip(),
        image=read_image(row.get("image"), ctx, item_id, "image"),
        choices=_choices(row.get("choices")),
        task=text(row.get("task")),
        version=text(row.get("version")),
        condition_spans=tuple((int(a), int(b)) for a, b in row.get("condition_spans") or ()),
        answer_kind=kind,
        precision=int(precision) if precision is not None else None,
        unit=text(row.get("unit")),
        meta=dict(row.get("meta") or {}),
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
    path = out / ITEMS_FILE
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
