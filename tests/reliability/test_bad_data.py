"""Bad rows fail fast at load time, before any compute is spent, with a message that names the
file and line (or row and id) and the fix: empty questions, golds the grader cannot read,
non-UTF-8 text, duplicate ids, broken JSON lines, missing fields."""

from __future__ import annotations

import json

import pytest
from reliability_helpers import picture, row, write_items

from hallucue_mlx.data.bench import BenchmarkError, load_benchmark
from hallucue_mlx.rewards import check_golds


def _load(tmp_path, rows, name="d", with_images=True):
    """Load as every entry point does: the items, then the grader's check of their golds."""
    images = {f"{r['id']}.png": picture() for r in rows} if with_images else {}
    d = write_items(tmp_path / name, rows, images)

    def load():
        items = load_benchmark("local", path=str(d))
        check_golds(items, str(d))
        return items

    return d, load


def _error(load) -> str:
    with pytest.raises(BenchmarkError) as e:
        load()
    return str(e.value)


@pytest.mark.parametrize("question", ["", "   \n\t "])
def test_empty_or_whitespace_question(tmp_path, said, question):
    _, load = _load(tmp_path, [row(1), row(2, question=question)])
    msg = _error(load)
    said(
        f"question {question!r} (local JSONL)",
        msg,
        "id q2",
        "the question is empty",
        "Answer the question shown in the image.",
    )


def test_empty_question_in_a_datasets_copy(tmp_path, said):
    """Geometry3K's problem is only the '<image>' placeholder: nothing is left to ask."""
    import datasets

    ds = datasets.Dataset.from_dict(
        {
            "images": [[picture()], [picture()]],
            "problem": ["<image>Find x.", "<image>"],
            "answer": ["3", "4"],
        },
        features=datasets.Features(
            {
                "images": datasets.List(datasets.Image()),
                "problem": datasets.Value("string"),
                "answer": datasets.Value("string"),
            }
        ),
    )
    path = tmp_path / "geo"
    datasets.DatasetDict({"test": ds}).save_to_disk(str(path))
    with pytest.raises(BenchmarkError) as e:
        load_benchmark("geometry3k", "test", path=str(path))
    said("empty question (datasets copy of geometry3k)", str(e.value), "row 1 (id 1)", "empty")


@pytest.mark.parametrize(
    "case, fields, parts",
    [
        (
            "number gold that is not a number",
            {"answer": "three", "answer_kind": "number"},
            ["'three'", "not a number", "answer_kind to 'free'"],
        ),
        (
            "choice gold outside the options",
            {"answer": "E", "choices": ["3", "4", "5"]},
            ["'E'", "option letter (A-C)", "write the letter"],
        ),
        (
            "choice gold that names no option",
            {"answer": "seven", "choices": ["3", "4"]},
            ["'seven'", "neither an option letter"],
        ),
        ("empty gold", {"answer": "  "}, ["gold answer is empty"]),
    ],
)
def test_gold_answer_that_cannot_be_graded(tmp_path, said, case, fields, parts):
    _, load = _load(tmp_path, [row(1), row(2, **fields)])
    said(f"{case} (local JSONL)", _error(load), "id q2", *parts)


@pytest.mark.parametrize(
    "gold, kind, choices, boxed, part",
    [
        ("Z", "choice", ["3", "4.5", "5", "12 cm"], "B", "neither an option letter"),
        ("five", "number", [], "5", "not a number"),
    ],
)
def test_bad_gold_of_an_item_built_in_code_is_a_grader_error(gold, kind, choices, boxed, part):
    """Items built in code skip the loader's check: grading them records the reason, not a crash."""
    from hallucue_mlx.data.item import Item
    from hallucue_mlx.rewards import grade

    item = Item("g1", "local", "", "Which one?", gold, None, choices=choices, answer_kind=kind)
    g = grade(f"<think>some reasoning</think> \\boxed{{{boxed}}}", item)
    assert g.correct is False and g.grader_error is not None and part in g.grader_error


def test_gradeable_golds_pass(tmp_path):
    """The check is not too strict: LaTeX numbers, option texts, free text all load."""
    rows = [
        row(1, answer="2\\sqrt{3}", answer_kind="number"),
        row(2, answer="4", choices=["3", "4", "5"]),  # the option's text, not its letter
        row(3, answer="B", choices="A. 3; B. 4"),
        row(4, answer="an isosceles triangle", answer_kind="free"),
        row(5, answer="12%"),
    ]
    _, load = _load(tmp_path, rows)
    assert [it.id for it in load()] == ["q1", "q2", "q3", "q4", "q5"]


def test_non_utf8_text_names_file_and_line(tmp_path, said):
    d, load = _load(tmp_path, [row(1), row(2)])
    lines = (d / "items.jsonl").read_bytes().splitlines(keepends=True)
    latin1 = json.dumps(row(3, question="Combien de côtés?"), ensure_ascii=False).encode("latin-1")
    (d / "items.jsonl").write_bytes(b"".join(lines) + latin1 + b"\n")
    picture().save(d / "images" / "q3.png")
    msg = said(
        "non-UTF-8 text (local JSONL, Latin-1 line)",
        _error(load),
        "items.jsonl line 3 is not UTF-8",
        "iconv",
    )
    assert "0xf4" in msg  # the Latin-1 byte of 'ô'


def test_non_utf8_first_line_is_still_named(tmp_path, said):
    """The format sniffing reads the first line too; it must not crash before the check."""
    d, _ = _load(tmp_path, [row(1)])
    (d / "items.jsonl").write_bytes(
        '{"id": "q1", "question": "côté?", "answer": "3"}\n'.encode("cp1252")
    )
    msg = _error(lambda: load_benchmark("local", path=str(d / "items.jsonl")))
    said("non-UTF-8 first line (items.jsonl passed as a file)", msg, "line 1 is not UTF-8")


def test_non_utf8_json_in_a_datasets_copy(tmp_path, said):
    """The `datasets` adapters read json/jsonl copies through the same decoder."""
    d = tmp_path / "vista"
    d.mkdir()
    good = {
        "pid": "1",
        "question": "What is x?",
        "decoded_image": None,
        "choices": None,
        "answer": "2",
        "question_type": "free_form",
        "answer_type": "integer",
    }
    bad = dict(good, pid="2", question="Qu'est-ce que x?")
    text = (
        json.dumps(good) + "\n" + json.dumps(bad, ensure_ascii=False).replace("'", "\u2019") + "\n"
    )
    (d / "testmini.jsonl").write_bytes(text.encode("cp1252"))
    msg = _error(lambda: load_benchmark("mathvista", "testmini", path=str(d)))
    said("non-UTF-8 text (datasets json copy of mathvista)", msg, "testmini.jsonl line 2", "UTF-8")


def test_duplicate_ids_name_both_lines(tmp_path, said):
    rows = [row(1), row(2), row(1, question="How many corners?")]
    _, load = _load(tmp_path, rows, with_images=False)
    said(
        "duplicate item ids (local JSONL)",
        _error(load),
        "lines 1 and 3 have the same id 'q1'",
        "Rename one of them",
    )


def test_broken_json_line(tmp_path, said):
    d, load = _load(tmp_path, [row(1)])
    with (d / "items.jsonl").open("a") as f:
        f.write('{"id": "q2", "question": "How many?", "answer": \n')
    said(
        "a line that is not JSON (local JSONL)",
        _error(load),
        "line 2 is not valid JSON",
        "fix or remove that line",
    )


def test_line_missing_a_required_field(tmp_path, said):
    rows = [row(1), {"id": "q2", "question": "How many sides?", "image": None}]
    _, load = _load(tmp_path, rows, with_images=False)
    said("a line without 'answer' (local JSONL)", _error(load), "line 2 has no 'answer'")


def test_line_that_is_not_an_object(tmp_path, said):
    d, load = _load(tmp_path, [row(1)])
    with (d / "items.jsonl").open("a") as f:
        f.write('["q2", "How many?", "3"]\n')
    said("a line that is a JSON list (local JSONL)", _error(load), "line 2 is a JSON list")


def test_condition_span_outside_the_question(tmp_path, said):
    _, load = _load(tmp_path, [row(1, condition_spans=[[0, 500]])])
    said("condition span past the question's end", _error(load), "id q1", "[0, 500]")


def test_bad_rows_fail_before_any_model_work(tmp_path):
    """Fail fast: load_benchmark raises before an item is returned, so nothing is half done."""
    rows = [row(i) for i in range(20)] + [row(20, answer="")]
    _, load = _load(tmp_path, rows)
    with pytest.raises(BenchmarkError, match="id q20"):
        load()
