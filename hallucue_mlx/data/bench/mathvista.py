"""MathVista testmini.

Columns relied on (dataset card of AI4Math/MathVista, README.md dataset_info): pid, question,
image (a path string), decoded_image (an image), choices (a list of option texts, or None),
unit, precision (float), answer (the option text for multi-choice), question_type
('multi_choice'/'free_form'), answer_type ('integer', 'float', 'text', 'list'), metadata
(category, context, grade, img_height, img_width, language, skills, source, split, task), query.
The gold answer of multi-choice rows is turned into the option letter (this project's convention).
"""

from __future__ import annotations

from hallucue_mlx.data.common import (
    Adapter,
    BenchmarkError,
    Row,
    RowContext,
    metadata,
    read_image,
    text,
)
from hallucue_mlx.data.item import LETTERS, Item


def key(row: Row, index: int) -> tuple[str, tuple[str, ...]]:
    return text(row["pid"]), (text(row["question_type"]), text(row.get("answer_type")))


def to_item(row: Row, item_id: str, split: str, ctx: RowContext) -> Item:
    choices = tuple(text(c) for c in (row.get("choices") or []))
    answer = text(row["answer"]).strip()
    multi = text(row["question_type"]) == "multi_choice" and bool(choices)
    if multi:
        stripped = [c.strip() for c in choices]
        if answer not in stripped:
            raise BenchmarkError(
                f"mathvista: row {ctx.index} (id {item_id}): answer {answer!r} is not one of the "
                f"choices {list(choices)}; fix the row or drop it from your copy."
            )
        answer = LETTERS[stripped.index(answer)]
    answer_type = text(row.get("answer_type"))
    precision = row.get("precision")
    meta = metadata(row)
    image_value = row.get("decoded_image") or row.get("image")
    return Item(
        id=item_id,
        benchmark="mathvista",
        split=split,
        question=text(row["question"]).strip(),
        answer=answer,
        image=read_image(image_value, ctx, item_id, "decoded_image"),
        choices=choices if multi else (),
        task=text(meta.get("task")),
        answer_kind="choice"
        if multi
        else ("number" if answer_type in ("integer", "float") else "free"),
        precision=int(precision) if precision is not None and precision == precision else None,
        unit=text(row.get("unit")),
        meta={
            "question_type": text(row["question_type"]),
            "answer_type": answer_type,
            "query": text(row.get("query")),
            "metadata": meta,
        },
    )


ADAPTER = Adapter(
    name="mathvista",
    hub_id="AI4Math/MathVista",
    splits=("testmini", "test"),
    default_split="testmini",
    answer_kinds=("choice", "number", "free"),
    description="MathVista testmini: charts, plots, geometry, puzzles, natural images.",
    required=("pid", "question", "decoded_image", "choices", "answer", "question_type"),
    image_columns=("decoded_image",),
    key=key,
    to_item=to_item,
)
