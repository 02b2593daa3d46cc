"""MathVerse testmini as parquet files written by `datasets.to_parquet`: every problem in five
versions (image as a {'bytes','path'} struct), plus the text-only file whose image is an empty
string."""

from __future__ import annotations

from pathlib import Path

import datasets

from .images import picture

SPLIT = "testmini"  # the split load_benchmark reads

ROWS = [
    {
        "question_type": "multi-choice",
        "answer": "B",
        "versions": {
            "Text Dominant": "As shown in the figure, in triangle ABC, AB = AC, angle A = 40°, "
            "then the degree of angle ABC is ()\nChoices:\nA:60°\nB:70°\nC:80°\nD:90°",
            "Text Lite": "As shown in the figure, AB = AC, angle A = 40°, then the degree of "
            "angle ABC is ()\nChoices:\nA:60°\nB:70°\nC:80°\nD:90°",
            "Vision Intensive": "As shown in the figure, AB = AC, then the degree of angle ABC "
            "is ()\nChoices:\nA:60°\nB:70°\nC:80°\nD:90°",
            "Vision Dominant": "Find the degree of angle ABC.\nChoices:\nA:60°\nB:70°\nC:80°\nD:90°",
            "Vision Only": "",
        },
    },
    {
        "question_type": "free-form",
        "answer": "12",
        "versions": {
            "Text Dominant": "The rectangle has a length of 4 cm and a width of 3 cm. "
            "What is its area in square centimeters?",
            "Text Lite": "The length is 4 cm and the width is 3 cm. What is the area?",
            "Vision Intensive": "The length is 4 cm. What is the area of the rectangle?",
            "Vision Dominant": "What is the area of the rectangle?",
            "Vision Only": "",
        },
    },
]


def build(root: Path) -> Path:
    """testmini.parquet (image: Image feature, stored as a {'bytes','path'} struct) and
    testmini_text_only.parquet (image: an empty string), written by datasets.to_parquet."""
    out = root / "mathverse"
    out.mkdir(parents=True)
    rows: dict[str, list] = {
        k: []
        for k in (
            "sample_index",
            "problem_index",
            "problem_version",
            "question",
            "image",
            "answer",
            "question_type",
            "metadata",
            "query_wo",
            "query_cot",
            "question_for_eval",
        )
    }
    k = 0
    for p, prob in enumerate(ROWS, start=1):
        for version, question in prob["versions"].items():
            k += 1
            rows["sample_index"].append(str(k))
            rows["problem_index"].append(str(p))
            rows["problem_version"].append(version)
            rows["question"].append(question)
            rows["image"].append(picture(10 + k))
            rows["answer"].append(prob["answer"])
            rows["question_type"].append(prob["question_type"])
            rows["metadata"].append(
                {
                    "split": "testmini",
                    "source": "GeoQA",
                    "subject": "Plane Geometry",
                    "subfield": "Angle",
                }
            )
            rows["query_wo"].append("Please directly answer the question. " + question)
            rows["query_cot"].append("Please first think. " + question)
            rows["question_for_eval"].append(question)
    features = datasets.Features(
        {
            **{c: datasets.Value("string") for c in rows if c not in ("image", "metadata")},
            "image": datasets.Image(),
            "metadata": {
                c: datasets.Value("string") for c in ("split", "source", "subject", "subfield")
            },
        }
    )
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(out / "testmini.parquet"))
    text_rows = {
        c: [v for v, ver in zip(rows[c], rows["problem_version"]) if ver == "Text Dominant"]
        for c in rows
    }
    text_rows["image"] = [""] * len(text_rows["image"])
    text_rows["problem_version"] = ["Text Only"] * len(text_rows["image"])
    features_text = features.copy()
    features_text["image"] = datasets.Value("string")
    datasets.Dataset.from_dict(text_rows, features=features_text).to_parquet(
        str(out / "testmini_text_only.parquet")
    )
    return out
