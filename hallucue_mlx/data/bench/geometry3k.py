"""Geometry3K as converted by hiyouga (the paper's RL training set, via EasyR1).

Columns relied on (dataset card of hiyouga/geometry3k, README.md dataset_info): images (a list of
images), problem (text with an '<image>' placeholder), answer (the value, e.g. '3' or
'2\\sqrt{3}'); newer revisions add id, choices and ground_truth (the choice letter), kept in meta.
EasyR1 trains on `answer` as free-form, so items are graded as numbers/expressions, not letters.
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


def key(row: Row, index: int) -> tuple[str, tuple[str, ...]]:
    raw = row.get("id")
    kind = "number" if is_number(text(row["answer"])) else "free"
    return (str(raw) if raw is not None else str(index)), (kind,)


def to_item(row: Row, item_id: str, split: str, ctx: RowContext) -> Item:
    answer = text(row["answer"]).strip()
    return Item(
        id=item_id,
        benchmark="geometry3k",
        split=split,
        question=strip_image_tokens(text(row["problem"])),
        answer=answer,
        image=read_image(row["images"], ctx, item_id, "images"),
        task="geometry",
        answer_kind="number" if is_number(answer) else "free",
        meta={
            "choices": list(row.get("choices") or []),
            "ground_truth": text(row.get("ground_truth")),
            "problem": text(row["problem"]),
        },
    )


ADAPTER = Adapter(
    name="geometry3k",
    hub_id="hiyouga/geometry3k",
    splits=("train", "validation", "test"),
    default_split="test",
    answer_kinds=("number", "free"),
    description="Geometry3K (InterGPS), the paper's GRPO training set: diagram + short problem.",
    required=("images", "problem", "answer"),
    image_columns=("images",),
    key=key,
    to_item=to_item,
)
