"""We-Math testmini.

Columns relied on (dataset card of We-Math/We-Math, README.md dataset_info, and lmms-eval's
tasks/wemath/reasoning/utils.py): ID (shared by the sub-questions of one problem), split,
knowledge concept, question, option (one string 'A. ...; B. ...'), answer (a letter),
image_path (an image), key ('1step', '2steps_1', '2steps_multi', ...), question number,
knowledge concept description. Item ids are 'ID:key' because ID alone repeats.
"""

from __future__ import annotations

import re

from hallucue_mlx.data.common import (
    Adapter,
    Row,
    RowContext,
    parse_options,
    read_image,
    text,
)
from hallucue_mlx.data.item import Item


def key(row: Row, index: int) -> tuple[str, tuple[str, ...]]:
    k = text(row.get("key"))
    steps = re.match(r"\d+steps?", k)
    return f"{text(row['ID'])}:{k}" if k else text(row["ID"]), (steps.group(0) if steps else k,)


def to_item(row: Row, item_id: str, split: str, ctx: RowContext) -> Item:
    option = row["option"]
    choices = (
        tuple(text(o) for o in option)
        if isinstance(option, (list, tuple))
        else parse_options(text(option))
    )
    question = text(row["question"]).strip()
    if not choices and text(option).strip():
        question = f"{question}\n{text(option).strip()}"  # unparsable options stay visible
    return Item(
        id=item_id,
        benchmark="wemath",
        split=split,
        question=question,
        answer=text(row["answer"]).strip(),
        image=read_image(row["image_path"], ctx, item_id, "image_path"),
        choices=choices,
        task=text(row.get("knowledge concept")),
        answer_kind="choice",
        meta={
            "key": text(row.get("key")),
            "we_math_id": text(row["ID"]),
            "option": text(option),
            # the sub-questions of one problem share its diagram and givens: one cluster
            "cluster": f"wemath:{text(row['ID'])}",
        },
    )


ADAPTER = Adapter(
    name="wemath",
    hub_id="We-Math/We-Math",
    splits=("testmini",),
    default_split="testmini",
    answer_kinds=("choice",),
    description="We-Math testmini: multi-step problems decomposed by knowledge concept.",
    required=("ID", "question", "option", "answer", "image_path"),
    image_columns=("image_path",),
    key=key,
    to_item=to_item,
)
