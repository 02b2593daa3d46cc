"""The local format: items.jsonl (choices as a list, a string or empty) next to images/."""

from __future__ import annotations

import json
from pathlib import Path

from .images import picture

# the split load_benchmark reads ("" for the local format, which has none)
SPLIT = ""


def build(root: Path) -> Path:
    """The local format: items.jsonl (choices as a list or a string) + images/."""
    out = root / "local"
    (out / "images").mkdir(parents=True)
    rows = [
        {
            "id": "q1",
            "question": "The triangle has sides 3 cm and 4 cm. What is the hypotenuse?",
            "answer": "5",
            "image": "images/q1.png",
        },
        {
            "id": "q2",
            "question": "Which shape is red?",
            "answer": "B",
            "choices": ["circle", "square", "star"],
            "image": "images/q2.png",
            "version": "vision_only",
        },
        {
            "id": "q3",
            "question": "How many dots are there?",
            "answer": "7",
            "choices": "",
            "image": "images/q3.png",
            "answer_kind": "number",
        },
        {
            "id": "q4",
            "question": "Given x = 2, what is x + 3?",
            "answer": "A",
            "choices": "A. 5; B. 6; C. 7",
            "image": None,
        },
    ]
    for i, r in enumerate(rows):
        if r["image"]:
            picture(90 + i).save(out / r["image"])
    (out / "items.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return out
