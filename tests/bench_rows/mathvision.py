"""MATH-Vision as parquet files without datasets' metadata: decoded_image is a plain binary column
(raw PNG bytes), options a list (empty for free-form questions)."""

from __future__ import annotations

from pathlib import Path

from .images import picture, png_bytes

SPLIT = "testmini"  # the split load_benchmark reads

ROWS = [
    (
        "1",
        "Which number should be written in place of the question mark?\n<image1>",
        [],
        "60",
        "arithmetic",
    ),
    (
        "2",
        "Hans folded a sheet of paper 3 times. Which of the pictures shows the unfolded "
        "sheet?\n<image1>",
        ["A", "B", "C", "D", "E"],
        "C",
        "transformation geometry",
    ),
    (
        "3",
        "The area of the square is 16 cm^2. What is the perimeter of the grey figure?\n<image1>",
        [],
        "20",
        "metric geometry - length",
    ),
    ("4", "How many triangles can be found in the picture?\n<image1>", [], "8", "counting"),
    (
        "5",
        "If the big cube weighs 27 kg, how much does the small cube weigh?\n<image1>",
        ["1 kg", "3 kg", "9 kg", "6 kg", "2 kg"],
        "A",
        "solid geometry",
    ),
    (
        "6",
        "Which of the shapes is the odd one out?\n<image1>",
        ["A", "B", "C", "D", "E"],
        "B",
        "logic",
    ),
]


def build(root: Path) -> Path:
    """parquet without datasets' metadata: decoded_image is a plain binary column (raw PNG bytes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = root / "mathvision" / "data"
    out.mkdir(parents=True)
    table = pa.table(
        {
            "id": [r[0] for r in ROWS],
            "question": [r[1] for r in ROWS],
            "options": pa.array([r[2] for r in ROWS], type=pa.list_(pa.string())),
            "image": [f"images/{r[0]}.jpg" for r in ROWS],
            "decoded_image": pa.array(
                [png_bytes(picture(50 + i)) for i in range(len(ROWS))], type=pa.binary()
            ),
            "answer": [r[3] for r in ROWS],
            "solution": [""] * len(ROWS),
            "level": [1 + i % 5 for i in range(len(ROWS))],
            "subject": [r[4] for r in ROWS],
        }
    )
    pq.write_table(table, out / "testmini-00000-of-00001.parquet")
    pq.write_table(table.slice(0, 2), out / "test-00000-of-00001.parquet")
    return out.parent
