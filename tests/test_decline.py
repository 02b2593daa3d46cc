"""Declining: offered by the -decline prompts, taught by the warm-up where a fact is truly absent,
graded as its own outcome (never correct), and recognised in a model's own words."""

from __future__ import annotations

import pytest
from PIL import Image

from hallucue_mlx import grading, prompts
from hallucue_mlx.data.item import Item
from hallucue_mlx.grading import compute_score, declines, gold_json, is_correct
from hallucue_mlx.rewards import grade


def _item(answer: str = "B", kind: str = "choice", choices=("3", "4", "5", "Cannot determine")):
    return Item(
        id="q1",
        benchmark="mathverse",
        split="testmini",
        question="What is x?",
        answer=answer,
        image=Image.new("RGB", (8, 8), "white"),
        choices=choices if kind == "choice" else (),
        answer_kind=kind,
    )


@pytest.mark.parametrize(
    "extracted",
    [
        "unknown",
        "Unknown.",
        "\\text{unknown}",
        "cannot be determined",
        "Cannot determine from the image",
        "The answer can't be determined",
        "not enough information",
        "insufficient information",
        "I don't know",
        "N/A",
        "unable to determine",
        "The image is blank",
        "undetermined",
    ],
)
def test_decline_phrases_are_declines(extracted: str) -> None:
    assert declines(extracted)


@pytest.mark.parametrize(
    "extracted", ["3", "B", "none", "0", "red", "x = 5", "not 5", "unknown 5", "E. 12 cm"]
)
def test_answers_are_not_declines(extracted: str) -> None:
    assert not declines(extracted)


def test_a_decline_without_a_box_is_recognised_after_the_reasoning() -> None:
    assert declines(None, "<think>The image is white.</think> I cannot tell the count.")
    assert not declines(None, "<think>I cannot tell yet.</think> The count is 3, I think")
    assert not declines(None, "no answer format here but a number 7")


def test_a_decline_is_never_correct_even_where_an_option_says_so() -> None:
    item = _item(answer="D")  # the gold option reads "Cannot determine"
    assert is_correct("D", item)
    assert not is_correct("Cannot determine", item)
    assert not is_correct("unknown", _item(answer="unknown", kind="free", choices=()))
    g = grade("<think>Nothing is shown.</think> \\boxed{unknown}", _item())
    assert g.declined and not g.correct and g.format_ok and g.grader_error is None
    g = grade("<think>The sides.</think> \\boxed{B}", _item())
    assert g.correct and not g.declined
    # the exported EasyR1 reward scores a decline as a wrong answer with a good format
    out = compute_score(
        [{"response": "<think>x</think> \\boxed{unknown}", "ground_truth": gold_json(_item())}]
    )
    assert out[0]["accuracy"] == 0.0 and out[0]["format"] == 1.0


def test_decline_templates_offer_the_graded_answer() -> None:
    assert prompts.DECLINE_ANSWER == grading.DECLINE_ANSWER
    for name in ("short-decline", "easyr1-decline"):
        assert prompts.offers_decline(name)
        text = prompts.build_prompt(_item(), name)
        assert f"\\boxed{{{grading.DECLINE_ANSWER}}}" in text
        assert text.startswith(prompts.build_prompt(_item(), name.split("-")[0]))
    # the paper's and the shipped model's templates are unchanged
    assert not prompts.offers_decline("easyr1") and not prompts.offers_decline("short")
    assert "unknown" not in prompts.TEMPLATES["easyr1"]


def test_warmup_teaches_declining_only_where_the_fact_is_absent() -> None:
    from hallucue_mlx.warmup import WarmupConfig, check_config, warmup_items

    with pytest.raises(ValueError, match="does not offer"):
        check_config(WarmupConfig(decline_share=0.5, template="short"))
    cfg = WarmupConfig(decline_share=0.5, template="short-decline", batch_size=8)
    declined = {"image": 0, "text": 0}
    for step in range(30):
        for item, target in warmup_items(step, cfg):
            plain = len(set(item.image.getdata())) == 1
            if target.endswith("\\boxed{unknown}"):
                if plain:  # a blank image, and the fact was in the image only
                    assert item.meta["needs_image"]
                    declined["image"] += 1
                else:  # the number to add was cut: the text held it alone
                    assert item.meta["text_only_facts"]
                    assert "number to add" not in item.question
                    declined["text"] += 1
            else:
                assert not (plain and item.meta["needs_image"])  # never a guess from nothing
                assert "\\boxed{unknown}" not in target
    assert declined["image"] > 0 and declined["text"] > 0
    # without decline_share the warm-up never teaches declining
    plain = WarmupConfig(decline_share=0.0, template="short")
    for step in range(5):
        for _item, target in warmup_items(step, plain):
            assert not target.endswith("\\boxed{unknown}")


def test_warmup_targets_check_declining_when_asked():
    from hallucue_mlx.warmup import Targets

    ev = {
        "clean": {
            "accuracy": 0.5,
            "format_rate": 1.0,
            "declined_rate": 0.02,
            "by_version": {"text_dominant": {"accuracy": 0.9}, "vision_only": {"accuracy": 0.5}},
        },
        "blank": {
            "accuracy": 0.2,
            "by_version": {"vision_only": {"accuracy": 0.1, "declined_rate": 0.3}},
        },
    }
    assert Targets().check(ev) == []  # the shipped targets ignore declining
    misses = Targets(min_declined_when_absent=0.5, max_declined_when_present=0.01).check(ev)
    assert len(misses) == 2 and "declined under blank" in misses[0]


def test_warmup_targets_keep_execution_at_the_edge_of_competence():
    """The shipped build is kept where additions are solved sometimes, not always: the headroom
    GRPO needs (a model that always or never solves them gives groups no spread). One addition
    and chains have their own windows; the per-version skills count the items with no addition."""
    from hallucue_mlx.warmup import SHIPPED_TARGETS, _version_summary

    def ev(one_right: int, chain_right: int) -> dict:
        recs = [
            {"version": "text_dominant", "correct": True, "format_ok": True, "trace_chain": 0},
            *(
                {
                    "version": "text_dominant",
                    "correct": i < one_right,
                    "format_ok": True,
                    "trace_chain": 1,
                }
                for i in range(10)
            ),
            *(
                {
                    "version": "text_lite",
                    "correct": i < chain_right,
                    "format_ok": True,
                    "trace_chain": 2,
                }
                for i in range(10)
            ),
            *({"version": "vision_only", "correct": i < 5, "format_ok": True} for i in range(10)),
        ]
        blank = [
            {"version": "vision_only", "correct": False, "format_ok": True, "declined": True}
        ] * 10
        return {"clean": _version_summary(recs), "blank": _version_summary(blank)}

    e = ev(3, 4)["clean"]
    assert (e["addition_accuracy"], e["addition_n"]) == (0.3, 10)
    assert (e["chain_accuracy"], e["chain_n"]) == (0.4, 10)
    # a wrong one-addition answer does not count against reading the stated answer
    assert e["by_version"]["text_dominant"] == {"n": 1, "accuracy": 1.0, "declined_rate": 0.0}
    assert SHIPPED_TARGETS.check(ev(3, 4)) == []
    for right in (0, 10):
        assert any("chain accuracy" in m for m in SHIPPED_TARGETS.check(ev(3, right)))
        assert any("one-addition accuracy" in m for m in SHIPPED_TARGETS.check(ev(right, 4)))


def test_warmup_init_must_be_a_model_folder(tmp_path):
    from hallucue_mlx.warmup import WarmupConfig, check_config

    with pytest.raises(ValueError, match="not a model folder"):
        check_config(WarmupConfig(init=str(tmp_path / "nowhere")))
