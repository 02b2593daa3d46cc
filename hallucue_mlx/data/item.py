"""The one record a benchmark item travels in, from loading to corruption, prompt and grading."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image

# Modality versions as in MathVerse: where the conditions needed to answer are stated.
# text_dominant: in the text (and the image); vision_only: in the image alone.
VERSIONS = ("text_dominant", "text_lite", "vision_intensive", "vision_dominant", "vision_only")

ANSWER_KINDS = ("choice", "number", "free")

# Option letters: the gold answer of a choice item is the letter of its correct option.
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# Transparent pixels become this colour: the background of a page or figure (and the blank fill).
ALPHA_BACKGROUND = (255, 255, 255)


def to_rgb(image: Image.Image, item_id: str = "") -> Image.Image:
    """The one image normalisation of the project: any PIL mode to 8-bit RGB.

    Transparency (RGBA, LA, P with a transparent colour) is composited over white, not dropped
    (dropping it turns a transparent diagram background black). 16/32-bit integer images are
    scaled from their 0-65535 range (Pillow's own conversion clips them to 255, i.e. white);
    float images from 0-1. Everything else (L, 1, P, CMYK, YCbCr ...) uses Pillow's conversion.
    Sizes are left alone: the model's processor caps large images at its max_pixels and scales
    small ones up to its min_pixels.
    """
    if image.mode == "RGB":
        return image
    try:
        if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
            arr = np.asarray(image, dtype=np.float64)
            if image.mode == "F":
                arr = arr * 255.0 if arr.size and arr.max() <= 1.0 else arr
            elif arr.size and arr.max() > 255:
                arr = arr / 257.0  # 65535 -> 255
            gray = np.clip(np.round(arr), 0, 255).astype(np.uint8)
            return Image.fromarray(gray).convert("RGB")
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
        if image.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return image.convert("RGB")
    except (OSError, ValueError) as err:
        raise ValueError(
            f"item {item_id}: its {image.mode} image cannot be converted to RGB "
            f"({type(err).__name__}: {err}); save it as an 8-bit RGB PNG or JPEG."
        ) from err


@dataclass(frozen=True)
class Item:
    """One benchmark question.

    `condition_spans` are [start, end) character offsets into `question` of the text that states
    the conditions (givens and problem description), so text removal can cut exactly those.
    `image` is always 8-bit RGB: any other mode is converted once, here (`to_rgb`).
    """

    id: str
    benchmark: str
    split: str
    question: str
    answer: str
    image: Image.Image | None
    choices: tuple[str, ...] = ()
    task: str = ""
    version: str = ""
    condition_spans: tuple[tuple[int, int], ...] = ()
    answer_kind: str = "free"
    precision: int | None = None
    unit: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        # Every image is RGB from here on, whoever built the item (loaders, synth, user code).
        if self.image is None:
            return
        if not isinstance(self.image, Image.Image):
            raise TypeError(
                f"item {self.id}: image must be a PIL image or None, got "
                f"{type(self.image).__name__}; open it with PIL.Image.open(...)"
            )
        if self.image.mode != "RGB":
            object.__setattr__(self, "image", to_rgb(self.image, self.id))

    def with_(self, **changes: Any) -> Item:
        """A copy with some fields replaced (items are immutable)."""
        return replace(self, **changes)

    @property
    def is_choice(self) -> bool:
        return self.answer_kind == "choice"


def chance(item: Item) -> float | None:
    """The accuracy of a uniform guess over the item's answer set: 1/size where the adapter
    knows the size (meta "answer_set_size": synth's per-task sets), 1/k for k options; None
    where unknown (an open answer, or options only in the image)."""
    size = item.meta.get("answer_set_size")
    if isinstance(size, int) and size > 0:
        return 1.0 / size
    return 1.0 / len(item.choices) if item.choices else None


def cluster(item: Item) -> str:
    """The group of items that are one question for interval estimates (meta "cluster": synth's
    stated fact, MathVerse's problem, We-Math's problem), else the item itself."""
    key = item.meta.get("cluster")
    return str(key) if key else f"{item.benchmark}:{item.id}"
