"""Answer extraction, strict grading, format and weighted reward."""

from __future__ import annotations

import sys
import types
from concurrent.futures import ThreadPoolExecutor

import pytest

from hallucue_mlx import rewards
from hallucue_mlx.data.item import Item
from hallucue_mlx.rewards import (
    Grade,
    Reward,
    RewardConfig,
    extract_answer,
    format_ok,
    grade,
    grader_error_count,
    load_reward_function,
    reset_grader_error_count,
    score,
)

ABCD = ("3", "4.5", "\\frac{1}{2}", "12 cm")
SHAPES = ("triangle", "square", "circle", "hexagon")


def make_item(
    answer: str,
    kind: str = "free",
    choices: tuple[str, ...] = (),
    precision: int | None = None,
    unit: str = "",
) -> Item:
    return Item(
        id=f"t-{answer}",
        benchmark="test",
        split="test",
        question="q",
        answer=answer,
        image=None,
        choices=choices,
        answer_kind=kind,
        precision=precision,
        unit=unit,
    )


def boxed(ans: str) -> str:
    return f"<think>some reasoning</think> \\boxed{{{ans}}}"


# (response, gold, kind, choices, precision, unit, expected correct)
CASES = [
    # fractions vs decimals
    (boxed("\\frac{3}{4}"), "0.75", "number", (), None, "", True),
    (boxed("\\dfrac{3}{4}"), "0.75", "number", (), None, "", True),
    (boxed("3/4"), "0.75", "number", (), None, "", True),
    (boxed("0.75"), "\\frac{3}{4}", "number", (), None, "", True),
    (boxed("0.76"), "\\frac{3}{4}", "number", (), None, "", False),
    (boxed("-\\frac{1}{2}"), "-0.5", "number", (), None, "", True),
    (boxed("\\frac{1}{2}"), "-0.5", "number", (), None, "", False),
    (boxed("\\frac{\\sqrt{3}}{2}"), "0.866", "number", (), 3, "", True),
    # precision (MathVista: number of decimals)
    (boxed("1.454"), "1.45", "number", (), 2, "", True),
    (boxed("1.46"), "1.45", "number", (), 2, "", False),
    (boxed("1.4"), "1.45", "number", (), 2, "", False),
    (boxed("3.1"), "3.14", "number", (), 1, "", True),
    (boxed("2.0"), "2", "number", (), None, "", True),
    (boxed("2.5"), "2", "number", (), None, "", False),
    (boxed("1,000"), "1000", "number", (), None, "", True),
    (boxed("x = 5"), "5", "number", (), None, "", True),
    (boxed("AB \\approx 3.2"), "3.2", "number", (), 1, "", True),
    # units
    (boxed("5 cm"), "5", "number", (), None, "cm", True),
    (boxed("5cm"), "5", "number", (), None, "", True),
    (boxed("5 \\text{ cm}^2"), "5", "number", (), None, "", True),
    (boxed("30^\\circ"), "30", "number", (), None, "", True),
    (boxed("30°"), "30", "number", (), None, "", True),
    (boxed("\\$12"), "12", "number", (), None, "", True),
    (boxed("12 m/s"), "12", "number", (), None, "", True),
    (boxed("6 cm"), "5", "number", (), None, "cm", False),
    # percentages
    (boxed("25\\%"), "25", "number", (), None, "", True),
    (boxed("25%"), "0.25", "number", (), None, "", True),
    (boxed("0.25"), "25%", "number", (), None, "", True),
    (boxed("25"), "25%", "number", (), None, "", True),
    (boxed("0.25"), "25", "number", (), None, "", False),
    (boxed("30%"), "25", "number", (), None, "", False),
    # LaTeX vs plain
    (boxed("\\sqrt{3}"), "1.732", "number", (), 3, "", True),
    (boxed("1.7321"), "\\sqrt{3}", "free", (), None, "", True),
    (boxed("1.7"), "\\sqrt{3}", "free", (), None, "", False),
    (boxed("2\\sqrt{3}"), "\\sqrt{12}", "free", (), None, "", True),
    (boxed("\\pi/2"), "\\frac{\\pi}{2}", "free", (), None, "", True),
    (boxed("1+x^2"), "x^2+1", "free", (), None, "", True),
    (boxed("x^2-1"), "x^2+1", "free", (), None, "", False),
    (boxed("Yes"), "yes", "free", (), None, "", True),
    (boxed("No"), "yes", "free", (), None, "", False),
    # word golds are text, not algebra: math-verify would verify an anagram as a symbol product
    (boxed("wolley"), "yellow", "free", (), None, "", False),
    (boxed("\\text{Yellow}"), "yellow", "free", (), None, "", True),
    (boxed("red"), "yellow", "free", (), None, "", False),
    (boxed("x y"), "y x", "free", (), None, "", True),
    # numbers: several answers are wrong
    (boxed("5 or 6"), "5", "number", (), None, "", False),
    (boxed("5, 6"), "5", "number", (), None, "", False),
    (boxed("5 and 6"), "5", "number", (), None, "", False),
    (boxed("five"), "5", "number", (), None, "", False),
    # letters
    (boxed("B"), "B", "choice", ABCD, None, "", True),
    (boxed("(B)"), "B", "choice", ABCD, None, "", True),
    (boxed("B."), "B", "choice", ABCD, None, "", True),
    (boxed("b"), "B", "choice", ABCD, None, "", True),
    (boxed("option B"), "B", "choice", ABCD, None, "", True),
    (boxed("\\text{Option (B)}"), "B", "choice", ABCD, None, "", True),
    (boxed("The answer is C"), "B", "choice", ABCD, None, "", False),
    (boxed("B. 4.5"), "B", "choice", ABCD, None, "", True),
    (boxed("(D) 12 cm"), "B", "choice", ABCD, None, "", False),
    (boxed("\\textbf{A}"), "A", "choice", ABCD, None, "", True),
    (boxed("E"), "A", "choice", ABCD, None, "", False),  # no option E
    # option text mapped to its letter
    (boxed("4.5"), "B", "choice", ABCD, None, "", True),
    (boxed("0.5"), "C", "choice", ABCD, None, "", True),
    (boxed("\\frac{1}{2}"), "C", "choice", ABCD, None, "", True),
    (boxed("12 cm"), "D", "choice", ABCD, None, "", True),
    (boxed("3"), "B", "choice", ABCD, None, "", False),
    (boxed("Circle"), "C", "choice", SHAPES, None, "", True),
    (boxed("\\text{hexagon}"), "C", "choice", SHAPES, None, "", False),
    (boxed("pentagon"), "C", "choice", SHAPES, None, "", False),
    # several options are wrong even when one of them is right
    (boxed("A or B"), "B", "choice", ABCD, None, "", False),
    (boxed("A, B"), "B", "choice", ABCD, None, "", False),
    (boxed("(A) and (B)"), "B", "choice", ABCD, None, "", False),
    (boxed("B/C"), "B", "choice", ABCD, None, "", False),
    # options only in the image (MathVerse vision-only): letters still graded
    (boxed("C"), "C", "choice", (), None, "", True),
    (boxed("A or C"), "C", "choice", (), None, "", False),
    # empty and missing answers
    (boxed(""), "5", "number", (), None, "", False),
    (boxed("  "), "B", "choice", ABCD, None, "", False),
    ("<think>it is 5</think> The answer is 5.", "5", "number", (), None, "", False),
    ("", "A", "choice", ABCD, None, "", False),
    # nested braces and the last box
    (boxed("\\frac{\\frac{1}{2}}{2}"), "0.25", "number", (), None, "", True),
    ("\\boxed{3} is wrong, so \\boxed{4}", "4", "number", (), None, "", True),
    ("\\boxed{4} then on reflection \\boxed{3}", "4", "number", (), None, "", False),
    ("\\fbox{7}", "7", "number", (), None, "", True),
    ("\\boxed{\\{1, 2\\}}", "\\{1,2\\}", "free", (), None, "", True),
    # <answer> tags
    ("<answer>3</answer>", "3", "free", (), None, "", True),
    ("<think>\\boxed{2}</think><answer> 3 </answer>", "3", "number", (), None, "", True),
    ("<answer>\\boxed{B}</answer>", "B", "choice", ABCD, None, "", True),
    ("<answer>A</answer> <answer>B</answer>", "B", "choice", ABCD, None, "", True),
    ("<answer></answer>", "3", "free", (), None, "", False),
]


def test_table_has_enough_cases() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize("response,gold,kind,choices,precision,unit,expected", CASES)
def test_grade_table(
    response: str,
    gold: str,
    kind: str,
    choices: tuple[str, ...],
    precision: int | None,
    unit: str,
    expected: bool,
) -> None:
    g = grade(response, make_item(gold, kind, choices, precision, unit))
    assert g.grader_error is None
    assert g.correct is expected, g


@pytest.mark.parametrize(
    "response,expected",
    [
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("a \\boxed{1} b \\boxed{ 2 } c", "2"),
        ("\\boxed{3", None),  # unclosed: truncated output
        ("\\boxed{1} then \\boxed{2", "1"),
        ("\\fbox{x}", "x"),
        ("\\boxed {5}", "5"),
        ("<answer>\n 7 \n</answer>", "7"),
        ("<answer>see \\boxed{8}</answer>", "8"),
        ("\\boxed{}", ""),
        ("no answer here", None),
    ],
)
def test_extract_answer(response: str, expected: str | None) -> None:
    assert extract_answer(response) == expected


@pytest.mark.parametrize(
    "response,ok",
    [
        ("<think>x</think> \\boxed{1}", True),
        ("  <think>\nmulti\nline\n</think>\nso \\boxed{1}.\n", True),
        ("<think>x</think> the answer is 1", False),
        ("\\boxed{1} <think>x</think>", False),
        ("<think>x \\boxed{1}", False),
        ("text first <think>x</think> \\boxed{1}", False),
    ],
)
def test_format(response: str, ok: bool) -> None:
    assert format_ok(response) is ok
    assert grade(response, make_item("1", "number")).format_ok is ok


def test_reward_weights() -> None:
    item = make_item("5", "number")
    right_fmt = score(boxed("5"), item)
    assert right_fmt.total == pytest.approx(1.0)
    assert (right_fmt.accuracy, right_fmt.format) == (1.0, 1.0)
    assert score("\\boxed{5}", item).total == pytest.approx(0.9)
    assert score(boxed("6"), item).total == pytest.approx(0.1)
    assert score("5", item).total == 0.0
    cfg = RewardConfig(accuracy_weight=1.0, format_weight=0.5)
    assert score(boxed("5"), item, cfg).total == pytest.approx(1.5)


def test_reward_config_validation() -> None:
    with pytest.raises(ValueError, match="accuracy_weight"):
        RewardConfig(accuracy_weight=-1.0)
    with pytest.raises(ValueError, match="pkg.module:function"):
        RewardConfig(function="no_colon")


def test_user_reward_function(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = types.ModuleType("my_rewards_for_test")
    mod.length = lambda response, item: float(len(response))  # type: ignore[attr-defined]
    mod.full = lambda response, item: Reward(  # type: ignore[attr-defined]
        0.5, 0.0, 0.0, Grade(None, False, False, None)
    )
    monkeypatch.setitem(sys.modules, "my_rewards_for_test", mod)
    item = make_item("5", "number")
    r = score(boxed("5"), item, RewardConfig(function="my_rewards_for_test:length"))
    assert r.total == float(len(boxed("5")))
    assert r.grade.correct and r.accuracy == 1.0  # the grade is still logged
    assert score("x", item, RewardConfig(function="my_rewards_for_test:full")).total == 0.5
    with pytest.raises(ValueError, match="no callable"):
        load_reward_function("my_rewards_for_test:missing")
    with pytest.raises(ValueError, match="cannot import"):
        load_reward_function("no_such_module_hallucue:fn")


def test_grading_from_threads_equals_serial() -> None:
    pairs = [
        (r, make_item(g, k, c, p, u))
        for r, g, k, c, p, u, _ in CASES
        if k == "free" or "sqrt" in r or "frac" in r  # the math-verify paths
    ] * 3
    serial = [grade(r, it) for r, it in pairs]
    with ThreadPoolExecutor(max_workers=6) as pool:
        threaded = list(pool.map(lambda p: grade(*p), pairs))
    assert threaded == serial
    assert all(g.grader_error is None for g in threaded)


def test_grader_errors_are_counted_not_zeroed(monkeypatch: pytest.MonkeyPatch) -> None:
    # grading that needs math-verify runs in the worker process: break it there
    def broken(kind: str, args: object, timeout_s: float) -> tuple[str, str]:
        return "error", "RuntimeError: sympy exploded"

    monkeypatch.setattr(rewards._WORKER, "call", broken)
    reset_grader_error_count()
    item = make_item("x^2+1")
    g = grade(boxed("1+x^2"), item)
    assert g.correct is False
    assert g.grader_error is not None and "sympy exploded" in g.grader_error
    r = score(boxed("1+x^2"), item)
    assert r.grade.grader_error is not None and r.accuracy == 0.0
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda _: grade(boxed("1+x^2"), item), range(3)))
    assert grader_error_count() == 5
    # Paths that do not need math-verify still grade.
    assert grade(boxed("5"), make_item("5", "number")).grader_error is None
    reset_grader_error_count()
    assert grader_error_count() == 0


def test_timeout_is_a_grader_error() -> None:
    # a power tower whose evaluation never ends: the worker is killed at the limit
    g = rewards.grade(boxed("10^{10^{10^{10}}}"), make_item("5", "number"), timeout_s=0.3)
    assert g.correct is False and g.grader_error is not None and "timeout" in g.grader_error
