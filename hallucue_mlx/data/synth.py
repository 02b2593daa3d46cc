"""`synth`: a procedural visual-reasoning benchmark drawn with PIL, deterministic per seed and item id.

Every item's needed information sits in the image, the text, or both, following MathVerse's
modality versions:
- text_dominant: the visual fact is also stated in the text, with a short figure description;
- text_lite: the visual fact is stated tersely in the text;
- vision_dominant: the visual fact is in the image only; other conditions (a number to add) in the text;
- vision_only: the image alone holds everything; the text is only the question.

Tasks are visual skills a tiny vision tower can learn from scratch (field notes: reading and adding
two digits from pixels stayed at chance): counting shapes, reading one large digit, the tallest of
four bars (multiple choice), the colour of a shape (one word). `condition_spans` mark the exact
sentences that state conditions, so text removal cuts exactly those.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from hallucue_mlx.data.item import Item

SPLITS = ("sft", "train", "validation", "test")
SYNTH_VERSIONS = ("text_dominant", "text_lite", "vision_dominant", "vision_only")
TASKS = ("count", "digit", "bars", "color")
# validation: what chooses settings (scripts/grpo_gain.py, the periodic evaluation); test: read
# only by the final evaluation
DEFAULT_SIZES = {"sft": 20000, "train": 1000, "validation": 600, "test": 600}
IMAGE_SIZE = 112  # 112 x 112 px is 16 image tokens for Qwen2-VL-style processors

COLORS = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 30),
    "purple": (140, 60, 180),
    "orange": (240, 130, 20),
}
BAR_LETTERS = "ABCD"


@dataclass(frozen=True)
class SynthConfig:
    """Which tasks and modality versions the generator draws, and how often (relative weights)."""

    tasks: tuple[str, ...] = TASKS
    task_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    versions: tuple[str, ...] = SYNTH_VERSIONS
    version_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    image_size: int = IMAGE_SIZE


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont:
    # Pillow's bundled font: identical glyphs on every platform, no system font needed.
    return ImageFont.load_default(size=size)


def _rng(seed: int, split: str, index: int) -> random.Random:
    # str seeds hash with SHA-512 in CPython: stable across processes (unlike hash()).
    return random.Random(f"synth:{seed}:{split}:{index}")


def _canvas(size: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGB", (size, size), (255, 255, 255))
    return img, ImageDraw.Draw(img)


def _shape(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, fill) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    if kind == "circle":
        draw.ellipse(box, fill=fill)
    elif kind == "square":
        draw.rectangle(box, fill=fill)
    else:  # triangle
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)


@dataclass
class _Parts:
    """A question assembled from sentences; the spans of condition sentences are tracked."""

    sentences: list[tuple[str, bool]]

    def build(self) -> tuple[str, tuple[tuple[int, int], ...]]:
        text, spans, pos = [], [], 0
        for i, (s, is_condition) in enumerate(self.sentences):
            if i:
                text.append(" ")
                pos += 1
            if is_condition:
                spans.append((pos, pos + len(s)))
            text.append(s)
            pos += len(s)
        return "".join(text), tuple(spans)


def _stated(version: str, **sentences: str) -> list[tuple[str, bool]]:
    """The sentence that states the visual fact in this version (a condition span), if any."""
    return [(sentences[version], True)] if version in sentences else []


def _count(rng: random.Random, version: str, size: int):
    k = rng.randint(1, 6)
    kind = rng.choice(["circle", "square"])
    color = rng.choice(list(COLORS))
    img, draw = _canvas(size)
    cells = rng.sample(range(9), k)  # 3x3 grid with jitter: shapes never overlap
    step = size / 3
    for c in cells:
        cx = (c % 3 + 0.5) * step + rng.uniform(-5, 5)
        cy = (c // 3 + 0.5) * step + rng.uniform(-5, 5)
        _shape(draw, kind, cx, cy, rng.uniform(8, 12), COLORS[color])
    m = rng.randint(1, 9)
    plural = f"{kind}s" if k != 1 else kind
    if version == "vision_only":
        parts = [(f"How many {kind}s are in the image?", False)]
        answer, think = k, f"I count {k} {plural}."
    else:
        parts = _stated(
            version,
            text_dominant=f"The image shows {k} {color} {plural}.",
            text_lite=f"There {'are' if k != 1 else 'is'} {k} {plural}.",
        )
        parts.append((f"Add {m} to the number of {kind}s.", True))
        parts.append(("What is the result?", False))
        answer, think = k + m, f"There are {k} {plural}. {k} + {m} = {k + m}."
    return img, parts, str(answer), (), "number", think


def _digit(rng: random.Random, version: str, size: int):
    d = rng.randint(0, 9)
    img, draw = _canvas(size)
    font = _font(rng.randint(58, 72))
    color = (rng.randint(0, 60), rng.randint(0, 60), rng.randint(0, 60))
    x0, y0, x1, y1 = draw.textbbox((0, 0), str(d), font=font)
    w, h = x1 - x0, y1 - y0
    x = rng.uniform(4, size - w - 4) - x0
    y = rng.uniform(4, size - h - 4) - y0
    draw.text((x, y), str(d), font=font, fill=color)
    m = rng.randint(1, 9)
    if version == "vision_only":
        parts = [("What digit is shown in the image?", False)]
        answer, think = d, f"The digit is {d}."
    else:
        parts = _stated(
            version,
            text_dominant=f"The image shows the digit {d} in large print.",
            text_lite=f"The digit is {d}.",
        )
        parts.append((f"Add {m} to the digit.", True))
        parts.append(("What is the result?", False))
        answer, think = d + m, f"The digit is {d}. {d} + {m} = {d + m}."
    return img, parts, str(answer), (), "number", think


def _bars(rng: random.Random, version: str, size: int):
    heights = rng.sample(range(2, 10), 4)  # distinct: exactly one tallest bar
    img, draw = _canvas(size)
    font = _font(12)
    color = COLORS[rng.choice(list(COLORS))]
    base, unit, width = size - 18, (size - 28) / 9, size / 4
    # Jitter widths and offsets so that no two items share an image (splits stay disjoint).
    shift, gap = rng.uniform(-3, 3), rng.uniform(8, 12)
    for i, h in enumerate(heights):
        x0 = i * width + 5 + shift
        draw.rectangle((x0, base - h * unit, x0 + width - gap, base), fill=color)
        draw.text((x0 + width / 2 - 8, base + 2), BAR_LETTERS[i], font=font, fill=(0, 0, 0))
    best = BAR_LETTERS[heights.index(max(heights))]
    values = ", ".join(f"{BAR_LETTERS[i]} = {h}" for i, h in enumerate(heights))
    parts = _stated(
        version,
        text_dominant=f"The bar chart shows four bars with heights {values}.",
        text_lite=f"Heights: {values}.",
        vision_dominant="The bar chart shows four bars labelled A to D.",
    )
    parts.append(("Which bar is the tallest?", False))
    choices = tuple(f"bar {c}" for c in BAR_LETTERS)
    think = f"Bar {best} is the tallest."
    return img, parts, best, choices, "choice", think


def _color(rng: random.Random, version: str, size: int):
    # A free-form word answer, not a choice: a 4-layer model reads the colour from the image early
    # but fails to map a colour name to a shuffled option letter (measured: think text right 10/10,
    # letter at chance), which would grade a visual success as wrong.
    color = rng.choice(list(COLORS))
    kind = rng.choice(["circle", "square", "triangle"])
    img, draw = _canvas(size)
    r = rng.uniform(22, 34)
    cx, cy = rng.uniform(r + 4, size - r - 4), rng.uniform(r + 4, size - r - 4)
    _shape(draw, kind, cx, cy, r, COLORS[color])
    parts = _stated(
        version,
        text_dominant=f"The image shows a {color} {kind} on a white background.",
        text_lite=f"The {kind} is {color}.",
        vision_dominant=f"The image shows a {kind}.",
    )
    parts.append((f"What colour is the {kind}?", False))
    think = f"The {kind} is {color}."
    return img, parts, color, (), "free", think


_TASK_FNS = {"count": _count, "digit": _digit, "bars": _bars, "color": _color}


def _pick(rng: random.Random, options: tuple[str, ...], weights: tuple[float, ...]) -> str:
    return rng.choices(options, weights=weights, k=1)[0]


def make_item(split: str, index: int, seed: int = 0, config: SynthConfig | None = None) -> Item:
    """Item `index` of `split`: a pure function of (split, index, seed, config)."""
    if split not in SPLITS:
        raise ValueError(f"unknown synth split {split!r}; choose one of {SPLITS}")
    cfg = config or SynthConfig()
    rng = _rng(seed, split, index)
    task = _pick(rng, cfg.tasks, cfg.task_weights)
    version = _pick(rng, cfg.versions, cfg.version_weights)
    img, sentences, answer, choices, kind, think = _TASK_FNS[task](rng, version, cfg.image_size)
    question, spans = _Parts(sentences).build()
    return Item(
        id=f"synth-{split}-{index:06d}",
        benchmark="synth",
        split=split,
        question=question,
        answer=answer,
        image=img,
        choices=choices,
        task=task,
        version=version,
        condition_spans=spans,
        answer_kind=kind,
        meta={
            "think": think,
            "seed": seed,
            # where the needed information lives (corrupt.info_removed): the visual fact is in
            # the text only for text_dominant / text_lite; the addend of count and digit is in
            # the text only
            "needs_image": version in ("vision_dominant", "vision_only"),
            "text_only_facts": task in ("count", "digit") and version != "vision_only",
        },
    )


def load_synth(
    split: str, n: int | None = None, seed: int = 0, config: SynthConfig | None = None
) -> list[Item]:
    """The first `n` items of a split (default sizes: sft 20000, train 1000, validation 600,
    test 600).

    Splits are disjoint by construction: each split draws from its own random stream.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown synth split {split!r}; choose one of {SPLITS}")
    n = DEFAULT_SIZES[split] if n is None else n
    if n < 0:
        raise ValueError(f"synth: n must be >= 0, got {n}")
    return [make_item(split, i, seed, config) for i in range(n)]
