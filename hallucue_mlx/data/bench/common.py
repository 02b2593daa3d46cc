"""What every benchmark adapter shares: the adapter record, loading rows, reading images, errors."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from hallucue_mlx.data.item import Item

Row = dict[str, Any]


class BenchmarkError(ValueError):
    """Bad or unavailable benchmark data; the message names what and how to fix it."""


@dataclass(frozen=True)
class Adapter:
    """How one benchmark's rows become Items.

    `key(row, index)` returns (raw id, stratum) from text columns only, so subsets are chosen before
    any image is decoded; `to_item(row, index, split, ctx)` builds the Item of a chosen row.
    """

    name: str
    hub_id: str | None
    splits: tuple[str, ...]
    default_split: str
    answer_kinds: tuple[str, ...]
    description: str
    required: tuple[str, ...] = ()
    image_columns: tuple[str, ...] = ()
    key: Callable[[Row, int], tuple[str, tuple[str, ...]]] | None = None
    to_item: Callable[[Row, str, str, RowContext], Item] | None = None
    # hub config per split where the dataset uses configs (MathVerse); else None
    config_for: Callable[[str], str | None] = lambda split: None


@dataclass(frozen=True)
class RowContext:
    """Where a row came from, for error messages and relative image paths."""

    benchmark: str
    index: int
    base_dir: Path | None


def text(value: Any) -> str:
    return "" if value is None else str(value)


def strip_image_tokens(question: str) -> str:
    """Drop '<image>' / '<image1>' placeholders: the chat template places the image itself."""
    return re.sub(r"\s*<image\s*\d*>\s*", " ", question).strip()


def is_number(s: str) -> bool:
    try:
        float(s.replace(",", "").strip())
    except ValueError:
        return False
    return True


def read_image(value: Any, ctx: RowContext, item_id: str, column: str) -> Image.Image | None:
    """An RGB PIL image from whatever a column holds: PIL, {'bytes','path'}, bytes, a path, or empty."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if isinstance(value, Image.Image):
            img = value
        elif isinstance(value, dict):
            if value.get("bytes"):
                img = Image.open(io.BytesIO(value["bytes"]))
            elif value.get("path"):
                img = Image.open(_resolve(value["path"], ctx))
            else:
                return None
        elif isinstance(value, (bytes, bytearray)):
            img = Image.open(io.BytesIO(value))
        elif isinstance(value, (str, os.PathLike)):
            img = Image.open(_resolve(str(value), ctx))
        else:
            raise TypeError(f"unsupported image value of type {type(value).__name__}")
        img.load()
        return img.convert("RGB")
    except (OSError, UnidentifiedImageError, TypeError, ValueError) as err:
        raise BenchmarkError(
            f"{ctx.benchmark}: row {ctx.index} (id {item_id}): the image in column {column!r} "
            f"cannot be read ({type(err).__name__}: {err}). Check that the file or bytes are a "
            f"valid PNG/JPEG, drop or fix that row, or re-create the data with "
            f"`hallucue-mlx data prepare {ctx.benchmark}`."
        ) from err


def _resolve(path: str, ctx: RowContext) -> Path:
    p = Path(path)
    if not p.is_absolute() and ctx.base_dir is not None:
        p = ctx.base_dir / p
    return p


def require_columns(
    benchmark: str, present: list[str], needed: tuple[str, ...], source: str
) -> None:
    missing = [c for c in needed if c not in present]
    if missing:
        raise BenchmarkError(
            f"{benchmark}: column {missing[0]!r} is missing from {source}"
            + (f" (also missing: {missing[1:]})" if missing[1:] else "")
            + f". Columns present: {sorted(present)}. The {benchmark} adapter expects the "
            f"columns {list(needed)}; rename the column in your copy, or point --data at a copy "
            f"of the benchmark with its original layout."
        )


def parse_options(text_: str) -> tuple[str, ...]:
    """'A. 3; B. 4; C. 5' or 'A:3\\nB:4' -> ('3', '4', '5'); () when the letters are not A, B, C ..."""
    marks = list(re.finditer(r"(?:^|(?<=[\s;；,]))([A-H])\s*[.:：)]\s*", text_))
    letters = [m.group(1) for m in marks]
    if len(marks) < 2 or letters != [chr(ord("A") + i) for i in range(len(marks))]:
        return ()
    out = []
    for m, nxt in zip(marks, marks[1:] + [None]):
        end = nxt.start() if nxt is not None else len(text_)
        out.append(text_[m.end() : end].strip().rstrip(";；,").strip())
    return tuple(out)
