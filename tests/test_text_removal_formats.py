"""Text removal and option parsing on questions written in each real benchmark's public format
(MathVerse, Geometry3K, MathVista, MathVision, We-Math): one policy, the asking sentence kept,
its givens cut (in numbers, relations or words), the first word capitalised after a cut, the
options never touched and never dropped."""

from __future__ import annotations

import pytest

from hallucue_mlx.corrupt import remove_text, rule_spans
from hallucue_mlx.data.common import parse_options
from hallucue_mlx.data.item import Item
from hallucue_mlx.prompts import listed_options, lists_options, problem_text

MV_CHOICES = "\nChoices:\nA:60°\nB:70°\nC:80°\nD:90°"

CASES = [
    # MathVerse: "As shown in the figure, <givens>, then <ask> is ()", options inline after Choices:
    (
        "mathverse",
        "As shown in the figure, in triangle ABC, AB = AC, angle A = 40°, then the degree of "
        "angle ABC is ()" + MV_CHOICES,
        "The degree of angle ABC is ()" + MV_CHOICES,
    ),
    (
        "mathverse",
        "As shown in the figure, AB is the diameter of circle O, point C is on circle O, then "
        "the degree of angle ACB is ()",
        "The degree of angle ACB is ()",
    ),
    (
        "mathverse",
        "As shown in the figure, the radius of circle O is 5.0, chord AB = 8.0, then the "
        "distance from O to AB is ()",
        "The distance from O to AB is ()",
    ),
    # givens in words only, then a cut opening clause: "rhombus. find" must not survive
    (
        "mathverse",
        "Quadrilateral ABCD is a rhombus. If AB = 5, find the perimeter of ABCD.",
        "Find the perimeter of ABCD.",
    ),
    (
        "mathverse",
        "In the figure, AB is the diameter of circle O and point C lies on the circle. "
        "What is the measure of angle ACB?",
        "What is the measure of angle ACB?",
    ),
    ("mathverse", "Find the degree of angle ABC." + MV_CHOICES, None),  # vision dominant
    # Geometry3K: short problems with LaTeX
    (
        "geometry3k",
        "In \\odot P, m \\widehat {SR} = 33, find m \\angle STR.",
        "Find m \\angle STR.",
    ),
    ("geometry3k", "The triangle is isosceles. Find x.", "Find x."),
    ("geometry3k", "Find x. Round to the nearest tenth.", None),
    ("geometry3k", "Find the area of the figure. Round to the nearest tenth if necessary.", None),
    # MathVista: natural images and charts; blanks "(_)"; units in parentheses
    ("mathvista", "Is the number of red cars less than the number of blue buses?", None),
    (
        "mathvista",
        "Move the ruler to measure the length of the nail to the nearest inch. The nail is "
        "about (_) inches long.",
        None,
    ),
    ("mathvista", "What is the age gap between these two people in image? (Unit: years)", None),
    (
        "mathvista",
        "Subtract all red things. Subtract all tiny balls. How many objects are left?",
        None,
    ),
    (
        "mathvista",
        "As shown in the figure, AB is the diameter of ⊙O, point C is on ⊙O, if ∠ABC = 50.0, "
        "then the degree of ∠BAC is ()",
        "The degree of ∠BAC is ()",
    ),
    # MathVision: competition problems
    (
        "mathvision",
        "Each of the five squares has side 1 cm. What is the perimeter of the shape?",
        "What is the perimeter of the shape?",
    ),
    ("mathvision", "Which of the following pictures shows the same cube?", None),
    # We-Math: blanks "____", "( )"
    (
        "wemath",
        "As shown in the figure, the side length of square ABCD is 4, then the area of the "
        "shaded part is ____.",
        "The area of the shaded part is ____.",
    ),
    # options left in the question text are never cut (no empty "Choices:")
    (
        "local",
        "If AB = 3 cm, which segment is longer?\nChoices:\nA. 3 cm\nB. 4 cm",
        "Which segment is longer?\nChoices:\nA. 3 cm\nB. 4 cm",
    ),
    ("local", "Which is larger?\nA. 3 cm\nB. 4 cm\nC. 5 cm", None),
]


@pytest.mark.parametrize(("bench", "question", "expected"), CASES)
def test_text_removal_on_each_benchmarks_phrasing(bench, question, expected):
    item = Item(id="q", benchmark=bench, split="t", question=question, answer="1", image=None)
    new, changed, detail = remove_text(item)
    if expected is None:
        assert not changed and rule_spans(question) == ([], []), detail
        assert new.question == question
    else:
        assert changed and new.question == expected, (new.question, detail)
        assert "Choices:\n" not in new.question or new.question.split("Choices:\n")[1].strip()


def test_every_benchmark_has_cases_of_both_kinds():
    kinds = {}
    for bench, _, expected in CASES:
        kinds.setdefault(bench, set()).add(expected is None)
    for bench in ("mathverse", "geometry3k", "mathvista", "mathvision"):
        assert kinds[bench] == {True, False}, bench
    assert False in kinds["wemath"]


@pytest.mark.parametrize(
    ("text", "options"),
    [
        ("A:60°\nB:70°\nC:80°\nD:90°", ("60°", "70°", "80°", "90°")),
        ("A. 3; B. 4; C. 5", ("3", "4", "5")),
        ("(A) 3 (B) 4 (C) 5 (D) 6 (E) 7", ("3", "4", "5", "6", "7")),
        # a letter inside an option's text is not a label
        (
            "A:the point C. on AB\nB:the point D\nC:neither",
            ("the point C. on AB", "the point D", "neither"),
        ),
        ("A. a line through B. and C.; B. 4; C. 5", ("a line through B. and C.", "4", "5")),
        # an option text wrapped onto a second line stays one option
        ("A: the longest side\nof the triangle\nB: 4", ("the longest side of the triangle", "4")),
        ("B. 4\nC. 5", ()),  # not starting at A
        ("Point A. lies on the circle.", ()),
    ],
)
def test_parse_options(text, options):
    assert parse_options(text) == options


def _choice_item(question: str, choices: tuple[str, ...]) -> Item:
    return Item(
        id="c",
        benchmark="local",
        split="t",
        question=question,
        answer="A",
        image=None,
        choices=choices,
        answer_kind="choice",
    )


def test_statement_lines_labelled_like_options_keep_the_real_options():
    q = "A. The triangle is isosceles.\nB. Its base is 5.\nWhich statements are true?"
    assert not lists_options(q)
    text = problem_text(_choice_item(q, ("only A", "only B", "both", "neither")))
    assert text.startswith(q)
    assert text.endswith("Choices:\nA. only A\nB. only B\nC. both\nD. neither")


def test_a_partial_option_list_never_drops_a_choice():
    q = "Which is largest?\nA. 1\nB. 2\nC. 3\nD. 4"
    assert listed_options(q)[1] == ("1", "2", "3", "4")
    text = problem_text(_choice_item(q, ("1", "2", "3", "4", "5")))
    assert text == "Which is largest?\nChoices:\nA. 1\nB. 2\nC. 3\nD. 4\nE. 5"
    # the same list as the item's: shown once, as written
    assert problem_text(_choice_item(q, ("1", "2", "3", "4"))) == q
    # text removal keeps the list, and the prompt still shows every option once
    new, changed, _ = remove_text(
        _choice_item("If x = 3, " + q[0].lower() + q[1:], ("1", "2", "3", "4", "5"))
    )
    assert changed and problem_text(new).count("E. 5") == 1 and problem_text(new).count("A. 1") == 1
