"""We-Math testmini as JSON lines: image_path is a path relative to the folder, option is one
string 'A. ...; B. ...'."""

from __future__ import annotations

import json
from pathlib import Path

from .images import picture

SPLIT = "testmini"  # the split load_benchmark reads

ROWS = [
    (
        "1",
        "1steps_1",
        "As shown in the figure, the side length of the square is 4 cm. What is its perimeter?",
        "A. 8 cm; B. 12 cm; C. 16 cm; D. 20 cm; E. No correct answer",
        "C",
        "Perimeter of squares",
    ),
    (
        "2",
        "2steps_1",
        "What is the radius of the circle shown in the figure?",
        "A. 1; B. 2; C. 3; D. 4; E. No correct answer",
        "B",
        "Understanding of circles",
    ),
    (
        "2",
        "2steps_2",
        "If the radius of the circle is 2, what is its area? (Use π = 3.14)",
        "A. 6.28; B. 12.56; C. 3.14; D. 25.12; E. No correct answer",
        "B",
        "Area of circles",
    ),
    (
        "2",
        "2steps_multi",
        "What is the area of the circle in the figure? (Use π = 3.14)",
        "A. 6.28; B. 12.56; C. 3.14; D. 25.12; E. No correct answer",
        "B",
        "Area of circles",
    ),
    (
        "3",
        "1steps_1",
        "Which of the following shapes is a parallelogram?",
        "A. ①; B. ②; C. ③; D. ④; E. No correct answer",
        "A",
        "Parallelograms",
    ),
]


def build(root: Path) -> Path:
    """JSON lines with image_path as a relative path string next to an image folder; option is one
    string 'A. ...; B. ...'."""
    out = root / "wemath"
    (out / "images").mkdir(parents=True)
    with (out / "testmini.jsonl").open("w") as f:
        for i, (id_, key, q, opt, ans, concept) in enumerate(ROWS):
            picture(70 + i).save(out / "images" / f"{i}.png")
            f.write(
                json.dumps(
                    {
                        "ID": id_,
                        "split": "testmini",
                        "knowledge concept": concept,
                        "question": q,
                        "option": opt,
                        "answer": ans,
                        "image_path": f"images/{i}.png",
                        "key": key,
                        "question number": i + 1,
                        "knowledge concept description": concept,
                    }
                )
                + "\n"
            )
    return out
