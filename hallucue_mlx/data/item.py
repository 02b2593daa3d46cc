"""The one record a benchmark item travels in, from loading to corruption, prompt and grading."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from PIL import Image

# Modality versions as in MathVerse: where the conditions needed to answer are stated.
# text_dominant: in the text (and the image); vision_only: in the image alone.
VERSIONS = ("text_dominant", "text_lite", "vision_intensive", "vision_dominant", "vision_only")

ANSWER_KINDS = ("choice", "number", "free")


@dataclass(frozen=True)
class Item:
    """One benchmark question.

    `condition_spans` are [start, end) character offsets into `question` of the text that states
    the conditions (givens and problem description), so text removal can cut exactly those.
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

    def with_(self, **changes: Any) -> Item:
        """A copy with some fields replaced (items are immutable)."""
        return replace(self, **changes)

    @property
    def is_choice(self) -> bool:
        return self.answer_kind == "choice"
