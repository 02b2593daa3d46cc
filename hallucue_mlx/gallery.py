"""A picture of items under every corruption, side by side: what the model sees.

Rows are items, columns are corruptions; each cell shows the image and the question text the model
gets, and a grey note of what changed. Drawn with Pillow's bundled default font, saved as PNG with
no timestamp, so the same items and seed give a byte-identical file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from hallucue_mlx.corrupt import CORRUPTIONS, DEFAULT_FILL, Corruption, CorruptionRecord, apply
from hallucue_mlx.data.bench import get_adapter, load_benchmark
from hallucue_mlx.data.item import LETTERS, Item
from hallucue_mlx.rewards import check_golds

CELL_W = 270
IMAGE_BOX = (246, 180)
LABEL_W = 150
TEXT_LINES = 11
LINE_H = 16
PAD = 12
HEADER_H = 34
BG = (255, 255, 255)
INK = (20, 20, 20)
GREY = (110, 110, 110)
WARN = (180, 40, 30)
FRAME = (170, 170, 170)
IMAGE_BG = (236, 238, 242)  # behind the image so a white blank image still shows its size


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> list[str]:
    """Greedy word wrap to a pixel width; keeps the text's own line breaks."""
    lines: list[str] = []
    for para in text.split("\n"):
        line = ""
        for word in para.split():
            trial = f"{line} {word}".strip()
            if font.getlength(trial) <= width or not line:
                line = trial
            else:
                lines.append(line)
                line = word
            while font.getlength(line) > width:  # a single very long word
                cut = max(1, int(len(line) * width / font.getlength(line)) - 1)
                lines.append(line[:cut])
                line = line[cut:]
        lines.append(line)
    return lines


def _fit(image: Image.Image, box: tuple[int, int]) -> Image.Image:
    w, h = image.size
    scale = min(box[0] / w, box[1] / h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return image.resize(size, Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BICUBIC)


def _question_text(item: Item) -> str:
    text = item.question
    if item.choices:
        text += "\n" + "  ".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(item.choices))
    return text


def _note(record: CorruptionRecord) -> tuple[str, tuple[int, int, int]]:
    if record.corruption == "none":
        return "original", GREY
    if not record.changed:
        return f"unchanged: {record.detail}", WARN
    if record.corruption == "text_removal":
        return "text cut (" + record.detail.split(";")[0] + ")", GREY
    return record.detail, GREY


def _draw_cell(
    canvas: Image.Image, x: int, y: int, item: Item, record: CorruptionRecord, font, small
) -> None:
    draw = ImageDraw.Draw(canvas)
    bw, bh = IMAGE_BOX
    draw.rectangle([x, y, x + bw - 1, y + bh - 1], fill=IMAGE_BG)
    if item.image is not None:
        img = _fit(item.image, IMAGE_BOX)
        ox, oy = x + (bw - img.width) // 2, y + (bh - img.height) // 2
        canvas.paste(img, (ox, oy))
        draw.rectangle([ox - 1, oy - 1, ox + img.width, oy + img.height], outline=FRAME)
        size_note = f"{item.image.width}x{item.image.height}"
    else:
        draw.text((x + 8, y + bh // 2 - 8), "(no image)", font=font, fill=GREY)
        size_note = ""
    ty = y + bh + 6
    note, colour = _note(record)
    if size_note:
        note = f"{size_note} px · {note}"
    for line in wrap(note, small, bw)[:2]:
        draw.text((x, ty), line, font=small, fill=colour)
        ty += LINE_H - 2
    ty += 4
    lines = wrap(_question_text(item), font, bw)
    if len(lines) > TEXT_LINES:
        lines = lines[: TEXT_LINES - 1] + [lines[TEXT_LINES - 1] + " …"]
    for line in lines:
        draw.text((x, ty), line, font=font, fill=INK)
        ty += LINE_H


def render_gallery(
    items: Sequence[Item],
    *,
    seed: int = 0,
    fill: tuple[int, int, int] = DEFAULT_FILL,
    corruptions: Sequence[str] = CORRUPTIONS,
    title: str = "",
) -> Image.Image:
    """The gallery picture; the random corruption draws its images from `items` themselves."""
    if not items:
        raise ValueError("the gallery needs at least one item")
    font, small, bold = _font(13), _font(11), _font(15)
    columns = [apply(items, Corruption(name, 1.0, seed, fill)) for name in corruptions]
    # each row is as tall as its longest question needs (capped at TEXT_LINES)
    row_hs = []
    for r in range(len(items)):
        lines = max(len(wrap(_question_text(col[r][0]), font, IMAGE_BOX[0])) for col in columns)
        lines = min(max(lines, 5), TEXT_LINES)
        row_hs.append(IMAGE_BOX[1] + 6 + 2 * (LINE_H - 2) + 4 + lines * LINE_H + PAD)
    title_h = HEADER_H if title else 0
    width = LABEL_W + len(corruptions) * CELL_W + PAD
    height = title_h + HEADER_H + sum(row_hs) + PAD
    canvas = Image.new("RGB", (width, height), BG)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((PAD, 8), title, font=bold, fill=INK)
    for c, name in enumerate(corruptions):
        draw.text((LABEL_W + c * CELL_W, title_h + 8), name, font=bold, fill=INK)
    draw.line([PAD, title_h + HEADER_H - 4, width - PAD, title_h + HEADER_H - 4], fill=FRAME)
    y = title_h + HEADER_H
    for r, item in enumerate(items):
        row_h = row_hs[r]
        label = [
            item.id,
            f"task: {item.task or '-'}",
            f"version: {item.version or '-'}",
            f"answer: {item.answer}",
            f"kind: {item.answer_kind}",
        ]
        ly = y
        for text in label:
            for line in wrap(text, small, LABEL_W - 2 * PAD)[:2]:
                draw.text((PAD, ly), line, font=small, fill=INK if ly == y else GREY)
                ly += LINE_H - 2
        for c in range(len(corruptions)):
            new_item, record = columns[c][r]
            _draw_cell(canvas, LABEL_W + c * CELL_W, y, new_item, record, font, small)
        if r < len(items) - 1:
            draw.line([PAD, y + row_h - PAD // 2, width - PAD, y + row_h - PAD // 2], fill=FRAME)
        y += row_h
    return canvas


def write_gallery(
    items: Sequence[Item],
    out: str | Path,
    *,
    seed: int = 0,
    fill: tuple[int, int, int] = DEFAULT_FILL,
    title: str = "",
) -> Path:
    """Render and save as PNG (no metadata chunks, so the bytes depend only on the pixels)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    render_gallery(items, seed=seed, fill=fill, title=title).save(out, format="PNG")
    return out


def gallery_for(
    benchmark: str,
    out: str | Path,
    *,
    n: int = 6,
    seed: int = 0,
    split: str | None = None,
    path: str | None = None,
) -> Path:
    """Load a seeded subset of n items of a benchmark and write its gallery."""
    split = split or get_adapter(benchmark).default_split
    items = load_benchmark(benchmark, split, path=path, n=n, seed=seed)
    check_golds(items, path or "")
    title = f"{benchmark} / {split or 'local'} · {len(items)} items · seed {seed}"
    return write_gallery(items, out, seed=seed, title=title)
