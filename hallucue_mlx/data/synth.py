"""`synth`: a procedural visual-reasoning benchmark drawn with PIL, deterministic per seed and item id.

Every item's needed information sits in the image, the text, or both, following MathVerse's
modality versions:
- text_dominant: the visual fact is also stated in the text, with a short figure description;
- text_lite: the visual fact is stated tersely in the text;
- vision_dominant: the visual fact is in the image only (the text may describe the figure);
- vision_only: the image alone holds everything; the text is only the question.

Tasks are visual skills a tiny vision tower can learn from scratch (field notes: reading and adding
two digits from pixels stayed at chance): counting shapes, reading one large digit, the tallest of
four bars (multiple choice), the colour of a shape (one word). `condition_spans` mark the exact
sentences that state conditions, so text removal cuts exactly those; each of them restates what
the image shows, so an item stays answerable from the image after text removal, as in the paper.
The numbers to add (count, digit) are a sentence of their own ("The numbers to add are 4 and 3."),
a fact only the text holds: text removal removes it, and declining is then the right answer
(`SynthConfig.text_only_facts`). Count and digit items chain one to three additions
(`SynthConfig.chain_weights`) with a fixed think format ("The digit is 7. 7 + 4 = 11. 11 + 3 =
14.") that `trace.py` scores step by step: reading the image, then each addition.

Splits are disjoint by construction (`owner`): an image belongs to the split that a hash of its
pixels assigns, and an item whose text states its answer (text_dominant, text_lite) also to the
split that a hash of its (question, answer) pair assigns; an item drawn for another split is
redrawn within its task and version. So no image and no text-stated pair recurs across splits.
Vision versions ask generic questions ("Which bar is the tallest?") whose answer is in the image
only; those questions recur in every split by design (partitioning their few (question, answer)
pairs would leave a split with one answer per question).
"""

from __future__ import annotations

import hashlib
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
# Shares of the images and of the text-stated (question, answer) pairs each split owns (`owner`);
# every (task, version) stratum has pairs in every split (tests/test_synth.py checks it).
TEXT_SHARES = {"sft": 0.55, "train": 0.15, "validation": 0.15, "test": 0.15}
TEXT_STATED = ("text_dominant", "text_lite")
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
# How many answers each task's question allows (counts 1-6 plus a stated number, digits 0-9 plus
# one, 4 bars, 6 colours): uniform guessing is right 1/size of the time (metrics.item_chance).
ANSWER_SET_SIZES = {"count": 6, "digit": 10, "bars": 4, "color": len(COLORS), "sum": 9}


@dataclass(frozen=True)
class SynthConfig:
    """Which tasks and modality versions the generator draws, and how often (relative weights)."""

    tasks: tuple[str, ...] = TASKS
    # count and digit carry the chains (where the headroom is); colour, which a warmed-up model
    # reads without fail, is drawn least
    task_weights: tuple[float, ...] = (1.5, 1.5, 1.0, 0.5)
    versions: tuple[str, ...] = SYNTH_VERSIONS
    version_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    image_size: int = IMAGE_SIZE
    # On (the shipped splits): outside vision_only the numbers to add (count, digit) are a
    # condition sentence of their own ("The number to add is 4."), a fact only the text holds:
    # text removal removes it (meta text_only_facts), and the item is unanswerable afterwards,
    # so declining is the right answer there. Off: the number to add is part of the asking
    # sentence ("What is the digit plus 4?"), which text removal keeps. As the wording is part
    # of the split ownership hash, a split holds other items with it off.
    text_only_facts: bool = True
    # Relative weights of 1, 2, 3, ... additions in count and digit items outside vision_only
    # ("What is the digit plus those numbers?" with "The numbers to add are 4 and 3."): the
    # composed items are where a warmed-up model is at the edge of its competence (it adds once
    # reliably, chains sometimes), which is what GRPO sharpens. (1.0,): one addition only.
    chain_weights: tuple[float, ...] = (1.0, 1.0, 1.0)


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


def _addends(rng: random.Random, chain: tuple[float, ...]) -> list[int]:
    """The numbers to add, 1-9 each; how many is drawn from `chain` (no draw for one addition,
    so single-addition configs keep their items)."""
    c = 1 if len(chain) == 1 else rng.choices(range(1, len(chain) + 1), weights=chain, k=1)[0]
    return [rng.randint(1, 9) for _ in range(c)]


def _addend(version: str, ms: list[int], what: str, text_only: bool) -> list[tuple[str, bool]]:
    """The asking sentence of count and digit: '<what> plus m', or with the numbers to add as a
    condition sentence of their own (SynthConfig.text_only_facts)."""
    if len(ms) == 1:
        if text_only:
            return [
                (f"The number to add is {ms[0]}.", True),
                (f"What is {what} plus that number?", False),
            ]
        return [(f"What is {what} plus {ms[0]}?", False)]
    listed = ", ".join(str(m) for m in ms[:-1]) + f" and {ms[-1]}"
    if text_only:
        return [
            (f"The numbers to add are {listed}.", True),
            (f"What is {what} plus those numbers?", False),
        ]
    return [(f"What is {what} plus {' plus '.join(str(m) for m in ms)}?", False)]


def chain_think(start: int, ms: list[int]) -> tuple[str, int]:
    """The steps of a chain of additions as the think text writes them ("7 + 4 = 11. 11 + 3 =
    14."), and the result."""
    steps, x = [], start
    for m in ms:
        steps.append(f"{x} + {m} = {x + m}.")
        x += m
    return " ".join(steps), x


def _count(rng: random.Random, version: str, size: int, text_only: bool = False, chain=(1.0,)):
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
    ms = _addends(rng, chain)
    plural = f"{kind}s" if k != 1 else kind
    facts = {"count": k, "shape": kind, "color": color}
    if version == "vision_only":
        parts = [(f"How many {kind}s are in the image?", False)]
        answer, think = k, f"I count {k} {plural}."
    else:
        parts = _stated(
            version,
            text_dominant=f"The image shows {k} {color} {plural}.",
            text_lite=f"There {'are' if k != 1 else 'is'} {k} {plural}.",
        )
        parts += _addend(version, ms, f"the number of {kind}s", text_only)
        steps, answer = chain_think(k, ms)
        think = f"There are {k} {plural}. {steps}"  # the warm-up's wording, also for one
        facts["addends"] = ms
    return img, parts, str(answer), (), "number", think, facts


def _digit(rng: random.Random, version: str, size: int, text_only: bool = False, chain=(1.0,)):
    d = rng.randint(0, 9)
    img, draw = _canvas(size)
    font = _font(rng.randint(58, 72))
    color = (rng.randint(0, 60), rng.randint(0, 60), rng.randint(0, 60))
    x0, y0, x1, y1 = draw.textbbox((0, 0), str(d), font=font)
    w, h = x1 - x0, y1 - y0
    x = rng.uniform(4, size - w - 4) - x0
    y = rng.uniform(4, size - h - 4) - y0
    draw.text((x, y), str(d), font=font, fill=color)
    ms = _addends(rng, chain)
    facts: dict = {"digit": d}
    if version == "vision_only":
        parts = [("What digit is shown in the image?", False)]
        answer, think = d, f"The digit is {d}."
    else:
        parts = _stated(
            version,
            text_dominant=f"The image shows the digit {d} in large print.",
            text_lite=f"The digit is {d}.",
        )
        parts += _addend(version, ms, "the digit", text_only)
        steps, answer = chain_think(d, ms)
        think = f"The digit is {d}. {steps}"
        facts["addends"] = ms
    return img, parts, str(answer), (), "number", think, facts


def _bars(rng: random.Random, version: str, size: int, text_only: bool = False, chain=(1.0,)):
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
    facts = {"heights": dict(zip(BAR_LETTERS, heights))}
    return img, parts, best, choices, "choice", think, facts


def _color(rng: random.Random, version: str, size: int, text_only: bool = False, chain=(1.0,)):
    # A free-form word answer, not a choice: a 4-layer model reads the colour from the image early
    # but fails to map a colour name to a shuffled option letter (measured: think text right 10/10,
    # letter at chance), which would grade a visual success as wrong.
    color = rng.choice(list(COLORS))
    kind = rng.choice(["circle", "square", "triangle"])
    img, draw = _canvas(size)
    r = rng.uniform(22, 34)
    cx, cy = rng.uniform(r + 4, size - r - 4), rng.uniform(r + 4, size - r - 4)
    _shape(draw, kind, cx, cy, r, COLORS[color])
    # size and side widen the text-stated pairs (18 colour-shape pairs alone are too few to
    # give every split its own, see `owner`); both are read off the image too
    big = "large" if r >= 28 else "small"
    side = "left" if cx < size / 2 else "right"
    parts = _stated(
        version,
        text_dominant=f"The image shows a {big} {color} {kind} on the {side}.",
        text_lite=f"The {big} {kind} is {color}.",
        vision_dominant=f"The image shows a {kind}.",
    )
    parts.append((f"What colour is the {kind}?", False))
    think = f"The {kind} is {color}."
    return img, parts, color, (), "free", think, {"color": color, "shape": kind}


def _sum(rng: random.Random, version: str, size: int, text_only: bool = False, chain=(1.0,)):
    # Warm-up only (WARMUP_SYNTH draws it; no shipped split does): the atomic skill "x + m" for
    # the two-digit x that the later steps of a chain reach, stated in the text. The image is a
    # plain canvas with one faint mark (distinct pixels, so split ownership still applies).
    x, m = rng.randint(2, 27), rng.randint(1, 9)
    img, draw = _canvas(size)
    cx, cy = rng.uniform(10, size - 10), rng.uniform(10, size - 10)
    _shape(draw, "square", cx, cy, rng.uniform(2, 4), (225, 225, 225))
    parts = [(f"What is {x} plus {m}?", False)]
    return img, parts, str(x + m), (), "number", f"{x} + {m} = {x + m}.", {"x": x, "addends": [m]}


_TASK_FNS = {"count": _count, "digit": _digit, "bars": _bars, "color": _color, "sum": _sum}


def _pick(rng: random.Random, options: tuple[str, ...], weights: tuple[float, ...]) -> str:
    return rng.choices(options, weights=weights, k=1)[0]


def owner(kind: str, content: bytes) -> str:
    """The split that owns an image's pixels (kind "image") or a text-stated (question, answer)
    pair (kind "text"): a hash, the same for every seed and config, so the partition holds
    across runs too."""
    digest = hashlib.sha256(kind.encode() + b"\x00" + content).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for split, share in TEXT_SHARES.items():
        edge += share
        if u < edge:
            return split
    return SPLITS[-1]


def text_pair(question: str, answer: str) -> bytes:
    """The bytes `owner("text", ...)` hashes for a (question, answer) pair."""
    return f"{question}\x00{answer}".encode()


def make_item(split: str, index: int, seed: int = 0, config: SynthConfig | None = None) -> Item:
    """Item `index` of `split`: a pure function of (split, index, seed, config)."""
    if split not in SPLITS:
        raise ValueError(f"unknown synth split {split!r}; choose one of {SPLITS}")
    cfg = config or SynthConfig()
    rng = _rng(seed, split, index)
    task = _pick(rng, cfg.tasks, cfg.task_weights)
    version = _pick(rng, cfg.versions, cfg.version_weights)
    if task == "sum":
        version = "text_lite"  # the text states everything (drawn as any version, same draws)
    # an image or text-stated pair another split owns is redrawn within its (task, version), so
    # the versions keep their weights in every split (module doc: disjoint by construction)
    for _ in range(10_000):
        img, sentences, answer, choices, kind, think, facts = _TASK_FNS[task](
            rng, version, cfg.image_size, cfg.text_only_facts, cfg.chain_weights
        )
        question, spans = _Parts(sentences).build()
        if owner("image", img.tobytes()) == split and (
            version not in TEXT_STATED or owner("text", text_pair(question, answer)) == split
        ):
            break
    else:  # unreachable with the shipped tasks: every stratum has pairs in every split (tested)
        raise RuntimeError(f"synth: no {task}/{version} (question, answer) pair in {split!r}")
    text_only = cfg.text_only_facts and task in ("count", "digit") and version != "vision_only"
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
            # what the image was drawn from: the perfect-vision oracle of the tests reads it
            "facts": facts,
            # where the needed information lives (corrupt.info_removed): the image holds every
            # visual fact; vision versions state it nowhere else. Text removal cuts sentences
            # that restate the image, and, with SynthConfig.text_only_facts, the number to add,
            # which only the text holds
            "needs_image": version in ("vision_dominant", "vision_only"),
            "text_only_facts": text_only,
            "answer_set_size": ANSWER_SET_SIZES[task],
            "cluster": cluster_key(task, version, facts, answer, f"synth-{split}-{index:06d}"),
        },
    )


def cluster_key(task: str, version: str, facts: dict, answer: str, item_id: str) -> str:
    """Which items are one question for interval estimates (metrics' cluster bootstrap): a
    text-stated item is answerable from its text, so items stating the same fact with the same
    answer (in either wording) are one cluster; a vision item's answer is in its own image, so it
    is a cluster of its own."""
    if version not in TEXT_STATED:
        return item_id
    if task == "count":
        fact = f"{facts['count']} {facts['shape']}"
    elif task == "digit":
        fact = str(facts["digit"])
    elif task == "sum":
        fact = str(facts["x"])
    elif task == "bars":
        fact = ",".join(f"{k}={v}" for k, v in sorted(facts["heights"].items()))
    else:
        fact = f"{facts['color']} {facts['shape']}"
    if facts.get("addends"):  # a chain is its own question: the same fact, other steps
        fact += "+" + "+".join(str(m) for m in facts["addends"])
    return f"synth:{task}:{fact}:{answer}"


def load_synth(
    split: str, n: int | None = None, seed: int = 0, config: SynthConfig | None = None
) -> list[Item]:
    """The first `n` items of a split (default sizes: sft 20000, train 1000, validation 600,
    test 600).

    Splits are disjoint by construction (module doc): no image and no text-stated (question,
    answer) pair is shared between them.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown synth split {split!r}; choose one of {SPLITS}")
    n = DEFAULT_SIZES[split] if n is None else n
    if n < 0:
        raise ValueError(f"synth: n must be >= 0, got {n}")
    return [make_item(split, i, seed, config) for i in range(n)]
