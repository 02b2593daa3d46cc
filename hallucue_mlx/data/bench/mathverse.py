"""MathVerse testmini: 788 problems x 5 modality versions, plus the text-only config.

Columns relied on (dataset card of AI4Math/MathVerse, configs testmini and testmini_text_only, and
lmms-eval's tasks/mathverse/utils.py): sample_index, problem_index, problem_version ('Text Dominant',
'Text Lite', 'Vision Intensive', 'Vision Dominant', 'Vision Only'; text-only rows say 'Text Only'),
question (multi-choice options inline after 'Choices:'), image (an image; an empty string in the
text-only config), answer (a letter for multi-choice), question_type ('multi-choice'/'free-form'),
metadata (split, source, subject, subfield), query_wo, query_cot, question_for_eval.
"""

from __future__ import annotations

import re

from hallucue_mlx.data.common import (
    Adapter,
    Row,
    RowContext,
    is_number,
    metadata,
    parse_options,
    read_image,
    strip_image_tokens,
    text,
)
from hallucue_mlx.data.item import Item

# Vision Only rows have an empty question: the whole problem is in the image.
EMPTY_QUESTION = "Answer the question shown in the image."
# version -> whether the diagram holds conditions the text lacks (None: not known per item)
NEEDS_IMAGE_BY_VERSION = {
    "text_dominant": False,
    "text_lite": None,
    "vision_intensive": True,
    "vision_dominant": True,
    "vision_only": True,
}


# version -> whether the text states conditions the diagram does not show, so that text removal
# (which cuts the givens) removes a needed fact. MathVerse builds its versions from four parts:
# descriptive information (DI, what the diagram shows), implicit properties (IP, readable from the
# diagram), essential conditions (EC: the values and relations the solution needs) and the
# question. Text Dominant is DI + IP + EC + question, Text Lite IP + EC + question, Vision
# Intensive EC + question: in those the essential conditions are stated in the text only (the
# Vision Dominant version is the one whose diagram is annotated with them). Vision Dominant keeps
# IP + question, all readable from its diagram; Vision Only has no text to remove.
TEXT_ONLY_FACTS_BY_VERSION = {
    "text_dominant": True,
    "text_lite": True,
    "vision_intensive": True,
    "vision_dominant": False,
    "vision_only": False,
}


def version_name(problem_version: str) -> str:
    """'Vision Intensive' -> 'vision_intensive' (Item.version names); 'Text Only' -> 'text_only'."""
    return re.sub(r"[^a-z]+", "_", problem_version.strip().lower()).strip("_")


def split_choices(question: str) -> tuple[str, tuple[str, ...]]:
    """MathVerse puts options after 'Choices:'; return (stem, options) or (question, ())."""
    m = re.search(r"\n?\s*Choices?\s*:\s*\n?", question)
    if not m:
        return question, ()
    options = parse_options(question[m.end() :])
    if not options:
        return question, ()
    return question[: m.start()].strip(), options


def key(row: Row, index: int) -> tuple[str, tuple[str, ...]]:
    return text(row["sample_index"]), (
        text(row["question_type"]),
        version_name(text(row["problem_version"])),
    )


def to_item(row: Row, item_id: str, split: str, ctx: RowContext) -> Item:
    multi = text(row["question_type"]).strip() == "multi-choice"
    question = strip_image_tokens(text(row["question"]))
    choices: tuple[str, ...] = ()
    if multi:
        question, choices = split_choices(question)
    answer = text(row["answer"]).strip()
    kind = "choice" if multi else ("number" if is_number(answer) else "free")
    meta = metadata(row)
    return Item(
        id=item_id,
        benchmark="mathverse",
        split=split,
        question=question or EMPTY_QUESTION,
        answer=answer,
        image=read_image(row["image"], ctx, item_id, "image"),
        choices=choices,
        task=text(meta.get("subject")),
        version=version_name(text(row["problem_version"])),
        answer_kind=kind,
        meta={
            # MathVerse's versions say where the conditions are (corrupt.info_removed): all in
            # the text (text dominant), some only in the diagram (vision intensive / dominant /
            # only); text lite drops descriptions the diagram may or may not be needed for
            "needs_image": NEEDS_IMAGE_BY_VERSION.get(version_name(text(row["problem_version"]))),
            "text_only_facts": TEXT_ONLY_FACTS_BY_VERSION.get(
                version_name(text(row["problem_version"]))
            ),
            # the five versions of one problem share its answer: one cluster for intervals
            "cluster": f"mathverse:{text(row['problem_index'])}",
            "problem_index": text(row["problem_index"]),
            "question_type": text(row["question_type"]),
            "query_wo": text(row.get("query_wo")),
            "question_for_eval": text(row.get("question_for_eval")),
            "metadata": meta,
        },
    )


ADAPTER = Adapter(
    name="mathverse",
    hub_id="AI4Math/MathVerse",
    splits=("testmini", "testmini_text_only"),
    default_split="testmini",
    answer_kinds=("choice", "number", "free"),
    description="MathVerse testmini: each problem in 5 versions from text-dominant to vision-only.",
    required=(
        "sample_index",
        "problem_index",
        "problem_version",
        "question",
        "image",
        "answer",
        "question_type",
    ),
    image_columns=("image",),
    key=key,
    to_item=to_item,
    config_for=lambda split: split,  # the hub configs are named like their only split
)
