"""Geometry3K as `datasets.save_to_disk` writes it: a DatasetDict (train/test) whose images
column is List(Image) holding PIL images; problems carry the `<image>` tag."""

from __future__ import annotations

from pathlib import Path

import datasets

from .images import picture

SPLIT = "test"  # the split load_benchmark reads

ROWS = [
    ("<image>Find x.", "3"),
    ("<image>In \\odot P, m \\widehat{SR} = 48. Find m \\angle RPS.", "24"),
    ("<image>Find the area of the parallelogram. Round to the nearest tenth if necessary.", "315"),
    ("<image>If AB = 12 and BC = 5, find AC.", "13"),
    ("<image>Find y.", "2\\sqrt{3}"),
    ("<image>Find the perimeter of the triangle. Round to the nearest hundredth.", "32.7"),
    ("<image>Each pair of polygons is similar. Find C F.", "10.5"),
    ("<image>Find m \\angle 2.", "34"),
]


def build(root: Path) -> Path:
    """save_to_disk DatasetDict (train/test) with images: List(Image) holding PIL images."""
    features = datasets.Features(
        {
            "images": datasets.List(datasets.Image()),
            "problem": datasets.Value("string"),
            "answer": datasets.Value("string"),
            "id": datasets.Value("int64"),
            "choices": datasets.List(datasets.Value("string")),
            "ground_truth": datasets.Value("string"),
        }
    )

    def split(offset: int) -> datasets.Dataset:
        rows = ROWS
        return datasets.Dataset.from_dict(
            {
                "images": [[picture(offset + i)] for i in range(len(rows))],
                "problem": [p for p, _ in rows],
                "answer": [a for _, a in rows],
                "id": [offset + i for i in range(len(rows))],
                "choices": [[a, "1", "2", "4"] for _, a in rows],
                "ground_truth": ["A"] * len(rows),
            },
            features=features,
        )

    out = root / "geometry3k"
    datasets.DatasetDict({"train": split(0), "test": split(100)}).save_to_disk(str(out))
    return out
