"""The paper's hallucination-inductive corruptions: none, blank image, random image, text removal.

Every corruption is a pure function of (items, Corruption): the same seed gives the same corrupted
items in every process, because all random choices are derived from sha256 of the seed and the
item ids (never from Python's salted hash()).

- blank: the image becomes a same-size image of one colour, white (255, 255, 255) by default,
  the background of a blank page or figure; same size keeps the image-token count unchanged.
- random: the image becomes another item's image from the same pool (the items passed in, i.e.
  one split), resized to the original size. Donors form a seeded derangement over the sorted ids,
  repaired so that no item receives pixels identical to its own (duplicate-looking pools).
- text_removal: the conditions are cut from the question. Items with `condition_spans` (synth)
  lose exactly those spans; other items lose the spans found by the documented rules in
  TEXT_RULES. What is left (the asking sentence) is kept; if nothing is left, the question becomes
  TEXT_REMOVAL_INSTRUCTION. Choices are kept: a letter answer needs them. Items no rule matches
  stay unchanged and are flagged (changed=False); `coverage` reports the share changed.
- ratio: exactly round(ratio * n) items are corrupted, the ones whose sha256(seed, id) ranks lowest,
  so a smaller ratio's set is contained in a larger one's.

Image work happens on MLX arrays (on MLX's default device) and is converted back to PIL for the
processor.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from hallucue_mlx.data.item import Item

if TYPE_CHECKING:
    import mlx.core as mx

CORRUPTIONS = ("none", "blank", "random", "text_removal")

# What the model is told when all of the question text was a condition.
TEXT_REMOVAL_INSTRUCTION = "Answer the question shown in the image."

DEFAULT_FILL = (255, 255, 255)


@dataclass(frozen=True)
class Corruption:
    """Which corruption, on what share of the items, with which seed."""

    name: str = "none"
    ratio: float = 1.0
    seed: int = 0
    fill: tuple[int, int, int] = DEFAULT_FILL

    def __post_init__(self) -> None:
        if self.name not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {self.name!r}; choose one of {CORRUPTIONS}")
        if not 0.0 <= self.ratio <= 1.0:
            raise ValueError(f"corruption ratio must be in [0, 1], got {self.ratio}")
        if len(self.fill) != 3 or any(not 0 <= int(c) <= 255 for c in self.fill):
            raise ValueError(f"fill must be three 0-255 values (R, G, B), got {self.fill}")


@dataclass(frozen=True)
class CorruptionRecord:
    """What a corruption did to one item.

    applied: the item was among the ratio's chosen share. changed: the item differs afterwards.
    detail: for random the donor id, for text_removal the removed text or 'no rule matched'.
    """

    item_id: str
    corruption: str
    applied: bool
    changed: bool
    detail: str = ""


# ---------------------------------------------------------------- seeded, process-stable choices


def _stable_u64(*parts: object) -> int:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def selected_ids(ids: Sequence[str], ratio: float, seed: int) -> frozenset[str]:
    """Exactly round(ratio * n) ids (half rounds up), chosen by a seeded ranking of the ids."""
    if len(set(ids)) != len(ids):
        raise ValueError("item ids must be unique within a pool to corrupt it deterministically")
    k = math.floor(ratio * len(ids) + 0.5)
    ranked = sorted(sorted(ids), key=lambda i: _stable_u64(seed, "select", i))
    return frozenset(ranked[:k])


def image_digest(image: Image.Image) -> str:
    """sha256 of the pixels (mode, size and bytes): identical-looking images share a digest."""
    h = hashlib.sha256(f"{image.mode}|{image.size}|".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def donor_map(items: Sequence[Item], seed: int) -> dict[str, str | None]:
    """For each item with an image, the id of the item whose image `random` gives it.

    A seeded random cycle over the sorted ids (Sattolo's algorithm, so never the item itself),
    then repaired by swaps so that no donor's pixels equal the receiver's. If a pool is so full of
    duplicates that no permutation works, the remaining items take any different-looking image;
    if there is none at all, the donor is None (the item stays unchanged and is flagged).
    """
    with_image = sorted(it.id for it in items if it.image is not None)
    digest = {it.id: image_digest(it.image) for it in items if it.image is not None}
    n = len(with_image)
    if n < 2:
        return {i: None for i in with_image}
    rng = np.random.default_rng(_stable_u64(seed, "derangement", n))
    perm = list(range(n))
    for i in range(n - 1, 0, -1):  # Sattolo: a single n-cycle, no fixed points
        j = int(rng.integers(0, i))
        perm[i], perm[j] = perm[j], perm[i]

    def ok(receiver: int, donor: int) -> bool:
        return donor != receiver and digest[with_image[donor]] != digest[with_image[receiver]]

    order = [int(k) for k in rng.permutation(n)]
    for i in range(n):
        if ok(i, perm[i]):
            continue
        for k in order:
            if k != i and ok(i, perm[k]) and ok(k, perm[i]):
                perm[i], perm[k] = perm[k], perm[i]
                break
    out: dict[str, str | None] = {}
    for i in range(n):
        if ok(i, perm[i]):
            out[with_image[i]] = with_image[perm[i]]
        else:  # no swap fixes it: take the first different-looking image in seeded order
            out[with_image[i]] = next((with_image[k] for k in order if ok(i, k)), None)
    return out


# ---------------------------------------------------------------- image corruptions (MLX arrays)


def _to_array(image: Image.Image) -> mx.array:
    import mlx.core as mx  # lazily: the corruption names are read without loading MLX

    return mx.array(np.asarray(image.convert("RGB"), dtype=np.uint8))


def _to_pil(arr: mx.array) -> Image.Image:
    return Image.fromarray(np.array(arr, dtype=np.uint8, copy=True), mode="RGB")


def blank_array(size: tuple[int, int], fill: tuple[int, int, int] = DEFAULT_FILL) -> mx.array:
    """An (H, W, 3) uint8 array of one colour; size is PIL's (width, height)."""
    import mlx.core as mx

    w, h = size
    return mx.broadcast_to(mx.array(fill, dtype=mx.uint8), (h, w, 3))


def resize_array(arr: mx.array, size: tuple[int, int]) -> mx.array:
    """Bilinear resize of an (H, W, C) uint8 array to PIL size (width, height), pixel centres aligned."""
    import mlx.core as mx

    src_h, src_w = arr.shape[0], arr.shape[1]
    w, h = size
    if (src_w, src_h) == (w, h):
        return arr
    x = arr.astype(mx.float32)

    def coords(n_out: int, n_in: int) -> tuple[mx.array, mx.array, mx.array]:
        pos = (mx.arange(n_out, dtype=mx.float32) + 0.5) * (n_in / n_out) - 0.5
        pos = mx.clip(pos, 0, n_in - 1)
        lo = mx.floor(pos).astype(mx.int32)
        hi = mx.minimum(lo + 1, n_in - 1)
        return lo, hi, pos - lo.astype(mx.float32)

    y0, y1, wy = coords(h, src_h)
    x0, x1, wx = coords(w, src_w)
    wx = wx[None, :, None]
    top = mx.take(x, y0, axis=0)
    bot = mx.take(x, y1, axis=0)
    top = mx.take(top, x0, axis=1) * (1 - wx) + mx.take(top, x1, axis=1) * wx
    bot = mx.take(bot, x0, axis=1) * (1 - wx) + mx.take(bot, x1, axis=1) * wx
    out = top * (1 - wy[:, None, None]) + bot * wy[:, None, None]
    return mx.clip(mx.round(out), 0, 255).astype(mx.uint8)


def blank_image(image: Image.Image, fill: tuple[int, int, int] = DEFAULT_FILL) -> Image.Image:
    return _to_pil(blank_array(image.size, fill))


def replace_image(image: Image.Image, donor: Image.Image) -> Image.Image:
    """The donor's pixels at the original image's size."""
    return _to_pil(resize_array(_to_array(donor), image.size))


# ---------------------------------------------------------------- text removal

# Rules for questions without condition spans, one policy: keep the asking sentence, cut the
# givens, never touch the options. A question is split into its options block (a "Choices:" line
# and the option lines after it, or a final run of lines labelled A, B, ...: left as it is) and
# sentences. A declarative sentence is a given (cut whole) if any rule below matches it: a number,
# an equation or relation, a figure reference, or a fact stated in words ("ABCD is a rhombus.").
# Instructions ("Round to the nearest tenth.", "Write the answer as a fraction.") are asking
# sentences. An asking sentence is never cut whole: only the clause inside it that states givens
# goes: an opening one up to the ask ("If AB = 12, find BC.", "As shown in the figure, AB = 5,
# find AC."), everything before MathVerse's ", then" ("As shown in the figure, AB is the
# diameter, angle ABC = 30.0, then the degree of angle BAC is ()"), or a closing one ("... if
# x = 3?"). A word left first after a cut is capitalised ("find BC" -> "Find BC"; a one-letter
# variable is left alone). A question with no given is left unchanged (changed=False).
_UNIT = (
    r"(?:cm|mm|km|m|kg|g|mg|ml|liters?|litres?|s|sec|seconds?|min|minutes?|h|hours?|days?|weeks?|"
    r"years?|inches|inch|ft|feet|foot|yards?|yd|miles?|mi|degrees?|°|%|percent|units?|dollars?|"
    r"cents?|m\^2|cm\^2|m\^3|cm\^3|m²|cm²|m³|cm³|km/h|m/s|mph|hz)"
)
# A fact stated in words: a relation verb of geometry or a copula ("is a rhombus", "are
# parallel", "bisects", "is tangent to").
_WORD_FACT = (
    r"\b(?:is|are|was|were|has|have|lies|lie|passes|pass|intersects?|bisects?|meets?|touches|"
    r"equals?|divides?|forms?|contains?|inscribed|circumscribed|tangent|parallel|perpendicular|"
    r"congruent|similar|isosceles|equilateral|rhombus|square|rectangle|parallelogram|trapezoid|"
    r"diameter|radius|chord|midpoint|bisector|median|altitude)\b"
)
TEXT_RULES: tuple[tuple[str, str, str], ...] = (
    # (name, scope, regex); scope "any": cuts any sentence, "statement": only non-asking ones
    (
        "given_opener",
        "any",
        r"^\s*(?:if|given|suppose|assume|assuming|let|since|when|known|it is known)\b",
    ),
    ("figure_reference", "any", r"\b(?:as shown in|in the (?:figure|diagram|picture|graph))\b"),
    ("number_with_unit", "any", r"(?<![\w.])\d+(?:\.\d+)?\s*" + _UNIT + r"(?![A-Za-z])"),
    ("dollar_amount", "any", r"\$\s?\d"),
    ("stated_equality", "any", r"(?:[A-Za-z\\}]\s*=\s*-?[\d\\(]|\d\s*=\s*[A-Za-z\d])"),
    ("conditional_clause", "any", r"\b(?:if|given|suppose|assuming|provided)\b"),
    (
        "geometric_relation",
        "statement",
        r"[∠⊥∥≅∽△⊙]|\\(?:angle|perp|parallel|cong|sim|triangle|odot)\b",
    ),
    ("number_in_statement", "statement", r"\d"),
    ("fact_in_words", "statement", _WORD_FACT),
)
_ASK_WORD = (
    r"(?:find|what|how|which|who|where|when|why|is|are|does|do|can|calculate|compute|determine|"
    r"solve|express|estimate|give|name|identify|choose|select|round|use|write|answer|please|"
    r"leave|enter|provide|state|simplify|evaluate|show|prove)\b"
)
_ASK = re.compile(
    r"(\?|_{2,}|\(\s*_*\s*\)|^\s*(?:hint|note)\s*:|^\s*" + _ASK_WORD + ")", re.IGNORECASE
)
_COMPILED_RULES = tuple((n, s, re.compile(p, re.IGNORECASE)) for n, s, p in TEXT_RULES)
_BOUNDARY = re.compile(r"(?<=[.;?!])\s+|\n+")
# One option line: "A. 3", "A: 3", "A) 3", "(A) 3" (MathVerse writes "A:60°").
_OPTION_LINE = re.compile(r"^[ \t]*(?:\(([A-H])\)|([A-H])[ \t]*[.:：)])")
_CHOICES_HEADER = re.compile(r"^[ \t]*(?:choices|options)[ \t]*[:：]", re.IGNORECASE | re.MULTILINE)


def options_block(text: str) -> int:
    """Where the question's own options start (a "Choices:" line, else a final run of option
    lines labelled A, B, C ... in order); len(text) when it has none. Text removal never cuts
    from there on."""
    header = _CHOICES_HEADER.search(text)
    if header is not None:
        return header.start()
    lines = text.split("\n")
    starts, pos = [], 0
    for line in lines:
        starts.append(pos)
        pos += len(line) + 1
    first = len(lines)
    for i in range(len(lines) - 1, -1, -1):
        if not lines[i].strip() and first == i + 1:
            first = i
            continue
        if _OPTION_LINE.match(lines[i]) is None:
            break
        first = i
    labels = []
    for line in lines[first:]:
        m = _OPTION_LINE.match(line)
        if m is not None:
            labels.append(m.group(1) or m.group(2))
    if len(labels) >= 2 and labels == list("ABCDEFGH"[: len(labels)]) and first > 0:
        return starts[first]
    return len(text)


def sentences(text: str) -> list[tuple[int, int]]:
    """[start, end) spans of the sentences of text (ends at .;?! followed by space, or a newline)."""
    spans, pos = [], 0
    for m in _BOUNDARY.finditer(text):
        if text[pos : m.start()].strip():
            spans.append((pos, m.start()))
        pos = m.end()
    if text[pos:].strip():
        spans.append((pos, len(text)))
    return spans


def tidy(text: str) -> str:
    """Collapse the whitespace and dangling punctuation a cut leaves behind."""
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" +([,.;:?!])", r"\1", text)
    text = re.sub(r"^[\s,;:]+", "", text)
    text = re.sub(r"\n\s*\n+", "\n", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()


def _capitalised(fragment: str) -> str:
    """The fragment with its first word capitalised when it is a lowercase word of two or more
    letters ("find BC" -> "Find BC"); a variable ("x is ...") is left alone."""
    m = re.match(r"(\s*)([a-z])([a-z]+\b)", fragment)
    return fragment if m is None else m.group(1) + m.group(2).upper() + fragment[m.end(1) + 1 :]


def cut_spans(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """text without the [start, end) spans, tidied; a sentence that a cut leaves starting in
    lowercase is capitalised (`_capitalised`)."""
    keep, pos = [], 0
    for start, end in sorted(spans):
        if not 0 <= start <= end <= len(text) or start < pos:
            raise ValueError(f"condition span {(start, end)} is out of range or overlaps")
        keep.append(text[pos:start])
        pos = end
    keep.append(text[pos:])
    out = keep[0]
    for fragment in keep[1:]:
        before = out.rstrip()
        if not before or before[-1] in ".;?!\n" or out.endswith("\n"):
            fragment = _capitalised(fragment)
        out = f"{out} {fragment}"
    return tidy(out)


# an opening clause up to the comma before the ask ("If AB = 12 and AC = 16, find BC.", "As shown
# in the figure, AB = 5, find AC.", "In triangle ABC, AB = AC, find angle B.")
_OPENER = (
    r"(?:if|given|suppose|assume|assuming|since|when|knowing|it is known|as shown in|"
    r"in (?:the )?(?:figure|diagram|picture|graph)|in\b)"
)
_LEAD_CLAUSE = re.compile(
    r"^\s*" + _OPENER + r".*?,\s*(?:then\s+)?(?=" + _ASK_WORD + ")",
    re.IGNORECASE | re.DOTALL,
)
# everything before MathVerse's ", then": "As shown in the figure, <givens>, then <ask> is ()"
_THEN_CLAUSE = re.compile(r"^.*,\s*then\s+(?=\S)", re.IGNORECASE | re.DOTALL)
# a closing one ("What is x if AB = 12?")
_TRAIL_CLAUSE = re.compile(
    r",?\s+(?:if|given(?: that)?|when|assuming|provided(?: that)?)\b[^?]*?(?=\s*[?.]?\s*$)",
    re.IGNORECASE,
)
_ASKS_AFTER_COMMA = re.compile(r",\s*(?:then\s+)?" + _ASK_WORD, re.IGNORECASE)
# what makes a clause a given: a number, an equation, a geometric relation, or a fact in words
_GIVEN = re.compile(
    r"\d|=|[∠⊥∥≅∽△⊙]|\\(?:angle|perp|parallel|cong|sim|triangle|odot)\b|" + _WORD_FACT,
    re.IGNORECASE,
)


def _asking(sentence: str) -> bool:
    s = sentence.strip()
    return bool(_ASK.search(s) or _ASKS_AFTER_COMMA.search(s))


def _given_clause(sentence: str) -> tuple[int, int, str] | None:
    """[start, end) of the clause of an asking sentence that states givens, if any."""
    then = _THEN_CLAUSE.match(sentence)
    if then and _GIVEN.search(then.group()):
        return 0, then.end(), "then_clause"
    lead = _LEAD_CLAUSE.match(sentence)
    if lead and _GIVEN.search(lead.group()):
        return 0, lead.end(), "given_clause"
    trail = _TRAIL_CLAUSE.search(sentence)
    if trail and _GIVEN.search(trail.group()):
        return trail.start(), trail.end(), "given_clause"
    return None


def rule_spans(question: str) -> tuple[list[tuple[int, int]], list[str]]:
    """Condition spans found by the rules, and the names of the rules that fired; the options
    block (`options_block`) is never cut."""
    spans, fired = [], []
    head = question[: options_block(question)]
    for start, end in sentences(head):
        sentence = head[start:end]
        if _asking(sentence):
            clause = _given_clause(sentence)
            if clause is not None:
                spans.append((start + clause[0], start + clause[1]))
                fired.append(clause[2])
            continue
        for name, _scope, rx in _COMPILED_RULES:
            if rx.search(sentence):
                spans.append((start, end))
                fired.append(name)
                break
    return spans, fired


def remove_text(item: Item) -> tuple[Item, bool, str]:
    """The text-removal corruption of one item: (new item, changed, detail)."""
    if item.condition_spans:
        spans, how = list(item.condition_spans), "spans"
    else:
        spans, fired = rule_spans(item.question)
        how = "rules " + ",".join(sorted(set(fired)))
    if not spans:
        return item, False, "no rule matched"
    kept = cut_spans(item.question, spans)
    block = options_block(kept)
    if not re.search(r"[A-Za-z0-9]", kept[:block]):  # nothing but the options is left
        kept = tidy(f"{TEXT_REMOVAL_INSTRUCTION}\n{kept[block:]}")
    removed = " | ".join(tidy(item.question[a:b]) for a, b in sorted(spans))
    new = item.with_(question=kept, condition_spans=())
    return new, kept != item.question, f"{how}; removed: {removed}"


# ---------------------------------------------------------------- applying to a pool


def apply_one(
    item: Item, corruption: Corruption, pool: Sequence[Item] = ()
) -> tuple[Item, CorruptionRecord]:
    """Corrupt one item regardless of ratio (ratio is a property of a pool: use `apply`).

    `random` needs the pool the item belongs to (the item included) to pick its donor.
    """
    name = corruption.name
    if name == "none":
        return item, CorruptionRecord(item.id, name, True, False, "")
    if name == "text_removal":
        new, changed, detail = remove_text(item)
        return new, CorruptionRecord(item.id, name, True, changed, detail)
    if item.image is None:
        return item, CorruptionRecord(item.id, name, True, False, "item has no image")
    if name == "blank":
        new = item.with_(image=blank_image(item.image, corruption.fill))
        return new, CorruptionRecord(item.id, name, True, True, f"fill {tuple(corruption.fill)}")
    pool = list(pool) or [item]
    if item.id not in {p.id for p in pool}:
        pool.append(item)
    donor_id = donor_map(pool, corruption.seed).get(item.id)
    return _random_from(item, donor_id, {p.id: p for p in pool})


def _random_from(
    item: Item, donor_id: str | None, by_id: dict[str, Item]
) -> tuple[Item, CorruptionRecord]:
    if donor_id is None:
        rec = CorruptionRecord(item.id, "random", True, False, "no different image in the pool")
        return item, rec
    donor = by_id[donor_id].image
    assert donor is not None and item.image is not None
    new = item.with_(image=replace_image(item.image, donor))
    return new, CorruptionRecord(item.id, "random", True, True, f"image of {donor_id}")


def apply(items: Sequence[Item], corruption: Corruption) -> list[tuple[Item, CorruptionRecord]]:
    """Corrupt a pool (one split): ratio picks which items; the rest pass through unchanged."""
    chosen = selected_ids([it.id for it in items], corruption.ratio, corruption.seed)
    donors = donor_map(items, corruption.seed) if corruption.name == "random" else {}
    by_id = {it.id: it for it in items}
    out = []
    for it in items:
        if it.id not in chosen:
            rec = CorruptionRecord(it.id, corruption.name, False, False, "not selected by ratio")
            out.append((it, rec))
        elif corruption.name == "random" and it.image is not None:
            out.append(_random_from(it, donors.get(it.id), by_id))
        else:
            out.append(apply_one(it, corruption))
    return out


# Item.meta keys an adapter sets where it knows where an item's needed information lives:
# NEEDS_IMAGE: the image holds facts the answer needs that the text does not state;
# TEXT_ONLY_FACTS: a condition span (cut by text removal) states a fact the image does not show.
NEEDS_IMAGE, TEXT_ONLY_FACTS = "needs_image", "text_only_facts"


def info_removed(item: Item, record: CorruptionRecord) -> bool | None:
    """Whether the corruption removed information the item's answer needs, so that nothing the
    model is shown supports an answer: True or False where the item's adapter says where its
    information lives (synth exactly, MathVerse by version), None where it does not. A
    hallucination is an answer given anyway (metrics.hallucination)."""
    if not record.changed:
        return False
    if record.corruption in ("blank", "random"):
        flag = item.meta.get(NEEDS_IMAGE)
    elif record.corruption == "text_removal":
        flag = item.meta.get(TEXT_ONLY_FACTS)
    else:
        return False
    return flag if isinstance(flag, bool) else None


def coverage(records: Sequence[CorruptionRecord]) -> float:
    """Share of the applied records that changed their item (0.0 when none was applied)."""
    applied = [r for r in records if r.applied]
    return sum(r.changed for r in applied) / len(applied) if applied else 0.0
