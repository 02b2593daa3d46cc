"""MathVista testmini as `datasets.save_to_disk` writes it: decoded_image is an Image feature
(PIL), choices a list or None, answer_type/precision/unit as in the release."""

from __future__ import annotations

from pathlib import Path

import datasets

from .images import picture

SPLIT = "testmini"  # the split load_benchmark reads

ROWS = [
    (
        "1",
        "When a spring does work on an object, we cannot find the work by simply multiplying "
        "the spring force by the object's displacement. Is this statement true?",
        ["Yes", "No"],
        "No",
        "multi_choice",
        "text",
        None,
        "",
        "textbook question answering",
    ),
    (
        "2",
        "What is the total volume of the measuring cup?",
        None,
        "1000",
        "free_form",
        "integer",
        None,
        "g",
        "figure question answering",
    ),
    (
        "3",
        "What is the age gap between these two people in image?",
        None,
        "4",
        "free_form",
        "integer",
        None,
        "years",
        "visual question answering",
    ),
    (
        "4",
        "As shown in the figure, AB is the diameter of circle O, angle ABC = 40°. Then angle "
        "BAC is ()",
        ["40°", "50°", "60°", "70°"],
        "50°",
        "multi_choice",
        "text",
        None,
        "",
        "geometry problem solving",
    ),
    (
        "5",
        "Move the ruler to measure the length of the nail to the nearest inch. The nail is "
        "about (_) inches long.",
        None,
        "2",
        "free_form",
        "integer",
        None,
        "",
        "figure question answering",
    ),
    (
        "6",
        "What is the value of the largest bar?",
        None,
        "9",
        "free_form",
        "integer",
        None,
        "",
        "figure question answering",
    ),
    (
        "7",
        "The derivative of f(x) at x=2 is ____ that at x=5",
        ["larger than", "equal to", "smaller than"],
        "equal to",
        "multi_choice",
        "text",
        None,
        "",
        "math word problem",
    ),
    (
        "8",
        "What is the average of the values in the table? Round to one decimal place.",
        None,
        "3.5",
        "free_form",
        "float",
        1.0,
        "",
        "math word problem",
    ),
]


def build(root: Path) -> Path:
    """save_to_disk Dataset (testmini) with decoded_image: Image (PIL) and choices: list or None."""
    cols = (
        "pid",
        "question",
        "choices",
        "answer",
        "question_type",
        "answer_type",
        "precision",
        "unit",
        "task",
    )
    rows = [dict(zip(cols, r)) for r in ROWS]
    features = datasets.Features(
        {
            "pid": datasets.Value("string"),
            "question": datasets.Value("string"),
            "image": datasets.Value("string"),
            "decoded_image": datasets.Image(),
            "choices": datasets.List(datasets.Value("string")),
            "unit": datasets.Value("string"),
            "precision": datasets.Value("float64"),
            "answer": datasets.Value("string"),
            "question_type": datasets.Value("string"),
            "answer_type": datasets.Value("string"),
            "metadata": {
                "category": datasets.Value("string"),
                "task": datasets.Value("string"),
                "img_height": datasets.Value("int64"),
                "img_width": datasets.Value("int64"),
            },
            "query": datasets.Value("string"),
        }
    )
    data = {
        "pid": [r["pid"] for r in rows],
        "question": [r["question"] for r in rows],
        "image": [f"images/{r['pid']}.jpg" for r in rows],
        "decoded_image": [picture(30 + i) for i in range(len(rows))],
        "choices": [r["choices"] for r in rows],
        "unit": [r["unit"] for r in rows],
        "precision": [r["precision"] for r in rows],
        "answer": [r["answer"] for r in rows],
        "question_type": [r["question_type"] for r in rows],
        "answer_type": [r["answer_type"] for r in rows],
        "metadata": [
            {"category": "math-targeted-vqa", "task": r["task"], "img_height": 64, "img_width": 96}
            for r in rows
        ],
        "query": ["Hint: ... Question: " + r["question"] for r in rows],
    }
    out = root / "mathvista"
    datasets.Dataset.from_dict(data, features=features).save_to_disk(str(out))
    return out
