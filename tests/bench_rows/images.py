"""The pictures the row builders store: one distinct small diagram per index."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw


def picture(i: int, size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A distinct small diagram per index."""
    img = Image.new("RGB", size, (250, 250, 245))
    d = ImageDraw.Draw(img)
    w, h = size
    d.polygon(
        [(8 + i * 3 % 20, h - 8), (w - 10, h - 8 - i % 7), (w // 2, 8 + i % 11)],
        outline=(20, 20, 20),
        width=2,
    )
    d.text((4, 4), str(i), fill=(200, 30, 30))
    return img


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
