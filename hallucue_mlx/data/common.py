"""What every benchmark adapter shares: the adapter record, loading rows, reading images, errors."""

from __future__ import annotations

import io
import json
import os
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from hallucue_mlx.data.item import Item
from hallucue_mlx.safefile import FileKindError, read_input_bytes

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


def metadata(row: Row) -> dict[str, Any]:
    """The row's `metadata` column as a new dict ({} when missing or not a mapping)."""
    meta = row.get("metadata")
    return dict(meta) if isinstance(meta, dict) else {}


def strip_image_tokens(question: str) -> str:
    """Drop '<image>' / '<image1>' placeholders: the chat template places the image itself."""
    return re.sub(r"\s*<image\s*\d*>\s*", " ", question).strip()


def is_number(s: str) -> bool:
    try:
        float(s.replace(",", "").strip())
    except ValueError:
        return False
    return True


# The largest image decoded, in pixels (width x height): a small PNG can declare a huge canvas
# (a 17 KB file decoding to gigabytes). The models see at most their processor's max_pixels
# (about 12.8 million for Qwen2.5-VL) anyway. Set HALLUCUE_MAX_IMAGE_PIXELS to change it.
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000


def _pixel_limit(env: str, default: int) -> int:
    """A whole number of pixels >= 1 from the environment variable `env`, else `default`."""
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise BenchmarkError(f"{env} must be a whole number of pixels >= 1, got {raw!r}")
    return value


def max_image_pixels() -> int:
    """The pixel limit of image decoding: HALLUCUE_MAX_IMAGE_PIXELS, else the default."""
    return _pixel_limit("HALLUCUE_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS)


# The most pixels all images of one data set load may hold together (decoded RGB: 3 bytes each,
# so about 3 GB): images each under the per-image limit add up, and every item keeps its image.
# Set HALLUCUE_MAX_TOTAL_PIXELS to change it.
DEFAULT_MAX_TOTAL_PIXELS = 1_000_000_000
_BUDGET: ContextVar[list[int] | None] = ContextVar("hallucue_image_budget", default=None)


def max_total_pixels() -> int:
    """The limit on the pixels of one load's images together: HALLUCUE_MAX_TOTAL_PIXELS, else
    the default."""
    return _pixel_limit("HALLUCUE_MAX_TOTAL_PIXELS", DEFAULT_MAX_TOTAL_PIXELS)


@contextmanager
def image_budget() -> Iterator[None]:
    """Count the pixels of every image read_image opens inside the block against
    max_total_pixels(), each checked from its header before it is decoded."""
    token = _BUDGET.set([0])
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _spend(pixels: int, where: str) -> None:
    budget = _BUDGET.get()
    if budget is None:
        return
    limit = max_total_pixels()
    if budget[0] + pixels > limit:
        raise BenchmarkError(
            f"{where}: with this image the data set's images hold {budget[0] + pixels} pixels "
            f"together, over the limit of {limit} for one load ({3 * limit / 2**20:,.0f} MiB "
            "decoded). Use a subset (--n or data.*.n), downscale the images, or raise the limit "
            "with HALLUCUE_MAX_TOTAL_PIXELS if your memory allows it."
        )
    budget[0] += pixels


def _open_bounded(source: Any, where: str) -> Image.Image:
    """Image.open with Pillow's bomb check as an error, then the pixel limit checked from the
    header, before anything is decoded."""
    limit = max_image_pixels()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = source if isinstance(source, Image.Image) else Image.open(source)
    w, h = img.size
    if w * h > limit:
        raise BenchmarkError(
            f"{where}: the image is {w}x{h} = {w * h} pixels, over the limit of {limit} "
            "(a decompression bomb, or a needlessly large image). Downscale it (the model sees at "
            "most its processor's max_pixels anyway), drop that row, or raise the limit with "
            "HALLUCUE_MAX_IMAGE_PIXELS."
        )
    _spend(w * h, where)
    return img


def _regular_file(path: Path, where: str) -> Path:
    """`path` when it is a regular file; special files (a FIFO blocks, /dev/zero never ends,
    a directory is no image) are refused before they are opened."""
    if path.exists() and not path.is_file():
        raise BenchmarkError(
            f"{where}: the image path {path} is not a regular file (a directory, FIFO or "
            "device); give the path of an image file (PNG/JPEG) or drop that row."
        )
    return path


def read_image(value: Any, ctx: RowContext, item_id: str, column: str) -> Image.Image | None:
    """A decoded PIL image from whatever a column holds: PIL, {'bytes','path'}, bytes, a path, or
    empty (None). Decoded in full here, so damaged bytes fail at load time naming the row; the
    conversion to RGB happens in one place, when the Item is built (item.to_rgb)."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    where = f"{ctx.benchmark}: row {ctx.index} (id {item_id}), column {column!r}"
    path: Path | None = None
    try:
        if isinstance(value, Image.Image):
            img = _open_bounded(value, where)
        elif isinstance(value, dict):
            if value.get("bytes"):
                img = _open_bounded(io.BytesIO(value["bytes"]), where)
            elif value.get("path"):
                path = _regular_file(_resolve(value["path"], ctx), where)
                img = _open_bounded(path, where)
            else:
                return None
        elif isinstance(value, (bytes, bytearray)):
            img = _open_bounded(io.BytesIO(value), where)
        elif isinstance(value, (str, os.PathLike)):
            path = _regular_file(_resolve(str(value), ctx), where)
            img = _open_bounded(path, where)
        else:
            raise TypeError(f"unsupported image value of type {type(value).__name__}")
        img.load()
        return img
    except FileNotFoundError as err:
        base = f" (relative paths are read from {ctx.base_dir})" if ctx.base_dir else ""
        raise BenchmarkError(
            f"{where}: the image file {path or err.filename} does not exist{base}. Fix the path, "
            f"or set it to null for a text-only item, or drop that row."
        ) from err
    except BenchmarkError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BenchmarkError(
            f"{where}: the image is too large to decode safely, over the limit of Pillow's "
            f"decompression-bomb check ({err}). Downscale it (the model sees at most its "
            f"processor's max_pixels anyway) or drop that row."
        ) from err
    except (OSError, UnidentifiedImageError, TypeError, ValueError, SyntaxError) as err:
        source = f"file {path}" if path is not None else "bytes"
        raise BenchmarkError(
            f"{where}: the image {source} cannot be decoded ({type(err).__name__}: {err}); it is "
            f"damaged, truncated or not an image. Replace it with a valid PNG/JPEG or drop that row"
            + (
                " (or, if `hallucue-mlx data prepare` wrote the folder, run it again)"
                if ctx.benchmark == "local"
                else f", or re-create the data with `hallucue-mlx data prepare {ctx.benchmark}`"
            )
            + "."
        ) from err


def decode_utf8(data: bytes, path: Path) -> str:
    """The text of a data file, or an error naming the line with bytes that are not UTF-8."""
    try:
        return data.decode("utf-8-sig")  # a leading byte-order mark is fine
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise BenchmarkError(
            f"{path} line {line} is not UTF-8 (byte {data[err.start]:#04x} at offset "
            f"{err.start}). Re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 IN > OUT` "
            f"for Latin-1 text."
        ) from None


# A data file (items.jsonl, a JSON copy of a benchmark) is read whole; one over this is no such file.
MAX_DATA_FILE_BYTES = 1 << 30


def _read_data_file(path: Path) -> bytes:
    """The bytes of a data file, after checking it is a regular file (a FIFO would block, a
    device never end) and not over MAX_DATA_FILE_BYTES."""
    try:
        return read_input_bytes(path, MAX_DATA_FILE_BYTES, "data file")
    except FileKindError as e:
        raise BenchmarkError(str(e)) from None


def read_jsonl(path: Path) -> list[tuple[int, Any]]:
    """(line number, parsed value) of each non-blank line of a JSONL file, with errors that name
    the file and line."""
    out = []
    for n, line in enumerate(decode_utf8(_read_data_file(path), path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append((n, json.loads(line)))
        except json.JSONDecodeError as err:
            raise BenchmarkError(
                f"{path} line {n} is not valid JSON ({err}); fix or remove that line."
            ) from err
    return out


def check_item(item: Item, where: str) -> None:
    """Fail fast on an item that cannot be asked: an empty question (with no image to carry it).
    `where` names the row. Whether the gold can be graded is the grader's check
    (rewards.check_golds), run by whoever loads the items."""
    if not item.question.strip():
        raise BenchmarkError(
            f"{where}: the question is empty. Write the question text; for an image-only item "
            f"write an instruction such as 'Answer the question shown in the image.'"
        )


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


# An option label at the start of a line: "A. 3", "A:3", "A) 3", "(A) 3".
_LINE_LABEL = re.compile(r"^[ \t]*(?:\(([A-H])\)|([A-H])[ \t]*[.:：)])[ \t]*")
# An option label inside a line: after a separator ("A. 3; B. 4"), else after a blank ("(A) 3 (B) 4").
_SEPARATED_LABEL = re.compile(r"(?:^|(?<=[;；,]))\s*\(?([A-H])\s*[.:：)]\s*")
_INLINE_LABEL = re.compile(r"(?:^|(?<=[\s;；,]))\(?([A-H])\s*[.:：)]\s*")


def _inline_options(text_: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
    marks, want = [], "A"
    for m in pattern.finditer(text_):
        if m.group(1) == want:
            marks.append(m)
            want = chr(ord(want) + 1)
    if len(marks) < 2 or text_[: marks[0].start()].strip():
        return ()
    opts = []
    for m, nxt in zip(marks, marks[1:] + [None]):
        end = nxt.start() if nxt is not None else len(text_)
        opts.append(text_[m.end() : end].strip().rstrip(";；,").strip())
    return tuple(opts)


def parse_options(text_: str) -> tuple[str, ...]:
    """Option texts from 'A:3\\nB:4' (one per line; an unlabelled line continues the option
    above it) or 'A. 3; B. 4; C. 5' (inline); () unless the labels run A, B, C ... in order.

    Line labels are read first, so a letter inside an option's text ("the point C. on ...") is
    not taken for a label; inline, labels after a separator (";", ",") are read first, then
    labels after a blank, each in order (A, then the first B after it, ...), so a letter in an
    option's text cannot reorder or drop an option."""
    lines = [line for line in text_.splitlines() if line.strip()]
    labelled = [_LINE_LABEL.match(line) for line in lines]
    if len(lines) >= 2 and labelled[0] is not None and sum(m is not None for m in labelled) >= 2:
        out: list[str] = []
        letters = []
        for line, m in zip(lines, labelled):
            if m is None:
                out[-1] = f"{out[-1]} {line.strip()}"
                continue
            letters.append(m.group(1) or m.group(2))
            out.append(line[m.end() :].strip())
        if letters == [chr(ord("A") + i) for i in range(len(letters))]:
            return tuple(o.rstrip(";；,").strip() for o in out)
    return _inline_options(text_, _SEPARATED_LABEL) or _inline_options(text_, _INLINE_LABEL)
