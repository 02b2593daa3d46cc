"""The prompt shows an item's options exactly once, whether or not its text names a point "A."."""

from __future__ import annotations

from PIL import Image

from hallucue_mlx.corrupt import Corruption, apply
from hallucue_mlx.data.item import Item
from hallucue_mlx.prompts import lists_options, problem_text

GIVEN = "AB is tangent to circle O at point A."


def _item(question: str, spans=()) -> Item:
    return Item(
        id="geo-1",
        benchmark="geometry3k",
        split="test",
        question=question,
        answer="B",
        image=Image.new("RGB", (64, 64), "white"),
        choices=("30", "45", "60", "90"),
        condition_spans=spans,
    )


def test_a_sentence_ending_in_point_a_keeps_the_options_in_every_condition():
    item = _item(f"{GIVEN} What is angle B?", spans=((0, len(GIVEN)),))
    assert not lists_options(item.question)
    clean = problem_text(item)
    assert clean.endswith("Choices:\nA. 30\nB. 45\nC. 60\nD. 90")
    removed, changed = next(iter(apply([item], Corruption("text_removal", 1.0, 0))))
    assert GIVEN not in removed.question
    assert problem_text(removed).endswith("Choices:\nA. 30\nB. 45\nC. 60\nD. 90")


def test_options_already_listed_are_not_repeated():
    for listing in ("A. 30\nB. 45", "A: 30\nB: 45", "(A) 30\n(B) 45", "  A) 30\n  B) 45"):
        item = _item(f"What is angle B?\nChoices:\n{listing}")
        assert lists_options(item.question), listing
        assert problem_text(item).count("30") == 1
    # one labelled line is not a listing
    assert not lists_options("Point A. lies on the circle.\nA. 30")
