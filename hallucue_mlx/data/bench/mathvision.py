"""MATH-Vision (MathVision) testmini and test.

Columns relied on (dataset card of MathLLMs/MathVision, README.md dataset_info): id, question
(may hold '<image1>' placeholders), options (a list, empty for free-form), image (a path string),
decoded_image (an image), answer (a letter when options exist), solution, level (int), subject.
"""

from __future__ import annotations

from hallucue_mlx.data.common import (
    Adapter,
    Row,
    RowContext,
    is_number,
    read_image,
    strip_image_tokens,
    text,
)
from hallucue_mlx.data.item import Item


def _kind(row: Row) -> str:
    if row.get("options"):
        return "choice"
    return "number" if is_number(text(row["answer"])) else "free"


def key(row: Row, index: int) -> tuple[str, tuple[str, ...]]:
    return text(row["id"]), (_kind(row),)


def to_item(row: Row, item_id: str, split: str, ctx: RowContext) -> Item:
    return Item(
        id=item_id,
        benchmark="mathvision",
        split=split,
        question=strip_image_tokens(text(row["question"])),
        answer=text(row["answer"]).strip(),
        image=read_image(row["decoded_image"], ctx, item_id, "decoded_image"),
        choices=tuple(text(o) for o in (row.get("options") or [])),
        task=text(row.get("subject")),
        answer_kind=_kind(row),
        meta={"level": row.get("level"), "subject": text(row.get("subject"))},
    )


ADAPTER = Adapter(
    name="mathvision",
    hub_id="MathLLMs/MathVision",
    splits=("testmini", "test"),
    default_split="testmini",
    answer_kinds=("choice", "number", "free"),
    description="MATH-Vision: competition problems with diagrams (16 subjects, 5 levels).",
    required=("id", "question", "options", "decoded_image", "answer"),
    image_columns=("decoded_image",),
    key=key,
    to_item=to_item,
)
