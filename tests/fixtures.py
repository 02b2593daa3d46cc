"""Tiny copies of the real benchmarks, built at test time with their real column names and storage
types (images as PIL via the Image feature, as raw bytes, as {'bytes','path'} structs, as paths;
choices as lists or as one string). Question texts imitate each benchmark's style."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
from PIL import Image, ImageDraw


def picture(i: int, size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A distinct small diagram per index."""
    img = Image.new("RGB", size, (250, 250, 245))
    d = ImageDraw.Draw(img)
    w, h = size
    d.polygon(
        [(8 + i * 3 % 20, h - 8), (w - 10, h - 8 - i % 7), (w // 2, 8 + i % 11)],
        outline=(20, 20, 20),
        width=2,
    )
    d.text((4, 4), str(i), fill=(200, 30, 30))
    return img


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


GEOMETRY3K_PROBLEMS = [
    ("<image>Find x.", "3"),
    ("<image>In \\odot P, m \\widehat{SR} = 48. Find m \\angle RPS.", "24"),
    ("<image>Find the area of the parallelogram. Round to the nearest tenth if necessary.", "315"),
    ("<image>If AB = 12 and BC = 5, find AC.", "13"),
    ("<image>Find y.", "2\\sqrt{3}"),
    ("<image>Find the perimeter of the triangle. Round to the nearest hundredth.", "32.7"),
    ("<image>Each pair of polygons is similar. Find C F.", "10.5"),
    ("<image>Find m \\angle 2.", "34"),
]


def geometry3k(root: Path) -> Path:
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
        rows = GEOMETRY3K_PROBLEMS
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


MATHVERSE_PROBLEMS = [
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


def mathverse(root: Path) -> Path:
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
    for p, prob in enumerate(MATHVERSE_PROBLEMS, start=1):
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


MATHVISTA_ROWS = [
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


def mathvista(root: Path) -> Path:
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
    rows = [dict(zip(cols, r)) for r in MATHVISTA_ROWS]
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


MATHVISION_ROWS = [
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


def mathvision(root: Path) -> Path:
    """parquet without datasets' metadata: decoded_image is a plain binary column (raw PNG bytes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = root / "mathvision" / "data"
    out.mkdir(parents=True)
    table = pa.table(
        {
            "id": [r[0] for r in MATHVISION_ROWS],
            "question": [r[1] for r in MATHVISION_ROWS],
            "options": pa.array([r[2] for r in MATHVISION_ROWS], type=pa.list_(pa.string())),
            "image": [f"images/{r[0]}.jpg" for r in MATHVISION_ROWS],
            "decoded_image": pa.array(
                [png_bytes(picture(50 + i)) for i in range(len(MATHVISION_ROWS))], type=pa.binary()
            ),
            "answer": [r[3] for r in MATHVISION_ROWS],
            "solution": [""] * len(MATHVISION_ROWS),
            "level": [1 + i % 5 for i in range(len(MATHVISION_ROWS))],
            "subject": [r[4] for r in MATHVISION_ROWS],
        }
    )
    pq.write_table(table, out / "testmini-00000-of-00001.parquet")
    pq.write_table(table.slice(0, 2), out / "test-00000-of-00001.parquet")
    return out.parent


WEMATH_ROWS = [
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


def wemath(root: Path) -> Path:
    """JSON lines with image_path as a relative path string next to an image folder; option is one
    string 'A. ...; B. ...'."""
    out = root / "wemath"
    (out / "images").mkdir(parents=True)
    with (out / "testmini.jsonl").open("w") as f:
        for i, (id_, key, q, opt, ans, concept) in enumerate(WEMATH_ROWS):
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


def local(root: Path) -> Path:
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


BUILDERS = {
    "geometry3k": (geometry3k, "test"),
    "mathverse": (mathverse, "testmini"),
    "mathvista": (mathvista, "testmini"),
    "mathvision": (mathvision, "testmini"),
    "wemath": (wemath, "testmini"),
    "local": (local, ""),
}


def reward_spaces(response: str, item) -> float:
    """A learnable user reward (train.reward_function): the share of spaces in the response."""
    return response.count(" ") / max(len(response), 1)
