"""Metrics on small hand-made records whose answers are known by hand."""

from __future__ import annotations

import json
import math

import pytest

from hallucue_mlx.metrics import (
    BOOT_SEED,
    N_BOOT,
    accuracy,
    answered,
    diagnostics,
    excludes_zero,
    first_samples,
    flip_table,
    hallucination,
    item_scores,
    macro_paired_diff,
    mcnemar_p,
    paired_bootstrap_ci,
    summarize,
    table1_cells,
    wilson_ci,
)


def rec(
    id: str,
    corruption: str,
    correct: bool,
    extracted: str | None = "1",
    version: str = "text_dominant",
    task: str = "count",
    **extra: object,
) -> dict:
    r = {
        "id": id,
        "version": version,
        "task": task,
        "corruption": corruption,
        "response": "",
        "extracted": extracted,
        "gold": "1",
        "correct": correct,
        "format_ok": True,
        "response_tokens": 10,
        "truncated": False,
        "grader_error": None,
    }
    r.update(extra)
    return r


def test_wilson_known_values() -> None:
    assert wilson_ci(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_ci(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_ci(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_ci(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_ci(11, 10)


def test_mcnemar_exact() -> None:
    assert mcnemar_p(1, 9) == pytest.approx(0.0215, abs=1e-4)
    assert mcnemar_p(9, 1) == mcnemar_p(1, 9)
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(5, 5) == 1.0
    assert mcnemar_p(0, 5) == pytest.approx(2 / 32)
    # large counts do not overflow
    assert 0 < mcnemar_p(1000, 1200) < 0.001


def test_paired_bootstrap_deterministic_and_sane() -> None:
    a = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0] * 5
    b = [1, 0, 0, 0, 1, 0, 1, 0, 0, 1] * 5
    d1 = paired_bootstrap_ci(a, b, n_boot=500, seed=3)
    assert d1 == paired_bootstrap_ci(a, b, n_boot=500, seed=3)
    assert d1 != paired_bootstrap_ci(a, b, n_boot=500, seed=4)
    mean, lo, hi = d1
    assert mean == pytest.approx(0.4)
    assert lo < mean < hi and lo > 0.1 and hi < 0.7
    # identical conditions: zero difference, degenerate interval
    assert paired_bootstrap_ci(a, a, n_boot=100) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        paired_bootstrap_ci([1, 0], [1])


def test_flip_table_uses_shared_ids_only() -> None:
    a = [
        rec("1", "none", True),
        rec("2", "none", True),
        rec("3", "none", False),
        rec("4", "none", False),
    ]
    a.append(rec("only_a", "none", True))
    b = [rec("1", "blank", True), rec("2", "blank", False), rec("3", "blank", True)]
    b += [rec("4", "blank", False), rec("only_b", "blank", True)]
    assert flip_table(a, b) == {"both_right": 1, "a_only": 1, "b_only": 1, "both_wrong": 1}
    with pytest.raises(ValueError, match="appears twice"):
        flip_table(a + [rec("1", "none", False)], b)


def test_summarize_by_condition() -> None:
    records = [
        rec("1", "none", True, version="text_dominant", task="count", n_choices=4),
        rec("2", "none", True, version="vision_only", task="bar", n_choices=4),
        rec("3", "none", False, version="vision_only", task="bar", n_choices=0, truncated=True),
        rec(
            "4", "none", True, version="vision_only", task="count", n_choices=2, response_tokens=30
        ),
        rec("1", "blank", False, grader_error="RuntimeError: boom"),
        rec("2", "blank", True, format_ok=False, response_tokens=None),
    ]
    s = summarize(records)
    assert set(s) == {"none", "blank"}
    clean = s["none"]
    assert clean["n"] == 4 and clean["accuracy"] == 0.75
    assert clean["ci95"] == pytest.approx(list(wilson_ci(3, 4)))
    assert clean["mean_response_tokens"] == 15.0
    assert clean["truncated_rate"] == 0.25
    assert clean["grader_errors"] == 0
    assert clean["by_version"] == {
        "text_dominant": {"n": 1, "accuracy": 1.0},
        "vision_only": {"n": 3, "accuracy": pytest.approx(2 / 3)},
    }
    assert clean["by_task"]["bar"] == {"n": 2, "accuracy": 0.5}
    # an open answer (n_choices 0) has an unknown answer set: left out and counted, never 0
    assert clean["chance"] == pytest.approx((0.25 + 0.25 + 0.5) / 3)
    assert clean["chance_unknown"] == 1
    blank = s["blank"]
    assert blank["grader_errors"] == 1 and blank["format_rate"] == 0.5
    assert blank["mean_response_tokens"] == 10.0
    assert blank["chance"] is None and blank["chance_unknown"] == 2  # no option counts given
    json.dumps(s)  # plain JSON, no NaN
    with pytest.raises(ValueError, match="'correct'"):
        summarize([{"id": "x", "corruption": "none"}])


def test_hallucination_counts_only_items_left_unanswerable() -> None:
    rs = [
        rec("1", "blank", True, extracted="B", info_removed=True, n_choices=4),
        rec("2", "blank", False, extracted="12", info_removed=True, n_choices=0),
        rec("3", "blank", False, extracted="", info_removed=True, n_choices=0),
        rec("4", "blank", False, extracted=None, info_removed=True, n_choices=4),
        rec("5", "blank", False, extracted="\\text{cannot be determined}", info_removed=True),
        # still answerable, or not known: a confident answer there is no hallucination
        rec("6", "blank", True, extracted="7", info_removed=False, n_choices=0),
        rec("7", "blank", True, extracted="C", info_removed=None, n_choices=4),
    ]
    assert [answered(r) for r in rs] == [True, True, False, False, False, True, True]
    h = hallucination(rs)
    assert h["n"] == 5 and h["answered"] == 2 and h["rate"] == 0.4 and h["abstained"] == 0.6
    assert h["declined"] == 1 and h["declined_rate"] == 0.2  # item 5
    assert h["no_answer_rate"] == pytest.approx(0.4)  # items 3 and 4
    assert h["answered_correct"] == 1 and h["answered_correct_rate"] == 0.5
    # chance over the answered items whose answer set is known: the 4-option one; the open
    # answer (unknown set) is left out and counted
    assert h["chance_rate"] == pytest.approx(1 / 4)
    assert h["chance_n"] == 1 and h["chance_unknown"] == 1
    assert h["known_correct_rate"] == 1.0
    # a model that answers everything on all-answerable items hallucinates on none
    none = hallucination([r for r in rs if r["info_removed"] is not True])
    assert none["n"] == 0 and none["rate"] is None


def test_diagnostics_gains() -> None:
    # 10 items: clean right on 8; blank keeps 2 of those and gets 1 other right by luck;
    # random keeps 4; text removal keeps all 8 (the image holds the conditions).
    clean = [
        rec(str(i), "none", i < 8, version="vision_only" if i < 5 else "text_dominant")
        for i in range(10)
    ]
    blank = [
        rec(
            str(i),
            "blank",
            i in (5, 6, 9),
            version=clean[i]["version"],
            info_removed=clean[i]["version"] == "vision_only",
        )
        for i in range(10)
    ]
    rand = [rec(str(i), "random", i in (0, 1, 5, 6)) for i in range(10)]
    text = [rec(str(i), "text_removal", i < 8) for i in range(10)]
    d = diagnostics(clean + blank + rand + text, n_boot=500, seed=1)
    vg = d["vision_gain"]
    assert vg["n"] == 10 and vg["accuracy_a"] == 0.8 and vg["accuracy_b"] == pytest.approx(0.3)
    assert vg["diff"] == pytest.approx(0.5)
    assert vg["flips"] == {"both_right": 2, "a_only": 6, "b_only": 1, "both_wrong": 1}
    assert vg["mcnemar_p"] == pytest.approx(mcnemar_p(6, 1))
    assert vg["ci95"][0] < 0.5 < vg["ci95"][1]
    assert d["random_image_gain"]["diff"] == pytest.approx(0.4)
    assert d["text_gain"]["diff"] == 0.0 and d["text_gain"]["mcnemar_p"] == 1.0
    assert d["blind_accuracy"]["accuracy"] == pytest.approx(0.3)
    # vision-only items 0-4 all lost; text-dominant items 5-7 kept, 9 gained by luck
    assert d["vision_gain_by_version"]["vision_only"]["diff"] == pytest.approx(1.0)
    assert d["vision_gain_by_version"]["text_dominant"]["diff"] == pytest.approx(0.0)
    assert set(d["hallucination"]) == {"blank", "random", "text_removal"}
    # blank images left the 5 vision-only items unanswerable: all answered, none right
    h = d["hallucination"]["blank"]
    assert h["n"] == 5 and h["answered"] == 5 and h["answered_correct"] == 0
    json.dumps(d)


def test_diagnostics_pairs_on_shared_items_and_missing_conditions() -> None:
    clean = [rec(str(i), "none", True) for i in range(4)]
    blank = [rec(str(i), "blank", False) for i in range(2)]  # only items 0 and 1 were run
    d = diagnostics(clean + blank, n_boot=200)
    assert d["vision_gain"]["n"] == 2 and d["vision_gain"]["diff"] == 1.0
    assert d["random_image_gain"] is None and d["text_gain"] is None
    assert math.isclose(d["blind_accuracy"]["accuracy"], 0.0)


def test_accuracy_samples_and_item_scores() -> None:
    rs = [
        rec("a", "none", True),
        rec("b", "none", False, sample=0),
        rec("a", "none", False, sample=1),
    ]
    assert accuracy(rs) == pytest.approx(1 / 3) and accuracy([]) is None
    assert [r["id"] for r in first_samples(rs)] == ["a", "b"]
    assert item_scores(rs) == {"a": 0.5, "b": 0.0}  # per item, the mean over its samples
    assert excludes_zero([0.01, 0.2]) and excludes_zero([-0.2, -0.01])
    assert not excludes_zero([-0.1, 0.1]) and not excludes_zero(None)


def test_macro_paired_diff_weights_benchmarks_equally() -> None:
    # bench x: a 4/4 right, b 2/4 right; bench y (2 items): a 0/2, b 1/2; one unshared item
    a = {
        "x": [rec(f"x{i}", "none", True) for i in range(4)],
        "y": [rec("y0", "none", False), rec("y1", "none", False), rec("y9", "none", True)],
    }
    b = {
        "x": [rec(f"x{i}", "none", i < 2) for i in range(4)],
        "y": [rec("y0", "none", True), rec("y1", "none", False)],
    }
    d = macro_paired_diff(a, b)
    assert d is not None and d["n"] == 6
    assert d["accuracy_a"] == pytest.approx((1.0 + 0.0) / 2)  # unweighted mean of the benchmarks
    assert d["accuracy_b"] == pytest.approx((0.5 + 0.5) / 2)
    assert d["diff"] == pytest.approx(0.0, abs=1e-12)
    assert d["ci95"][0] <= d["diff"] <= d["ci95"][1]
    # without b: the macro accuracy of a with its bootstrap interval
    alone = macro_paired_diff({"x": a["x"]})
    assert alone is not None and alone["diff"] == 1.0 and alone["ci95"] == [1.0, 1.0]
    assert macro_paired_diff({"x": a["x"]}, {"x": [rec("z", "none", True)]}) is None
    # one benchmark: the plain paired bootstrap, same settings as everywhere
    one = macro_paired_diff({"x": a["x"]}, {"x": b["x"]})
    assert one is not None
    want = paired_bootstrap_ci([1.0] * 4, [1.0, 1.0, 0.0, 0.0], N_BOOT, BOOT_SEED)
    assert (one["diff"], *one["ci95"]) == pytest.approx(want)


def test_table1_cells_accuracy_delta_and_avg() -> None:
    def recs(bench: str, n: int, k: int) -> list[dict]:
        return [rec(f"{bench}{i}", "none", i < k, benchmark=bench) for i in range(n)]

    per = {
        "base": {"x": recs("x", 10, 4), "y": recs("y", 20, 10)},
        "none": {"x": recs("x", 10, 6), "y": recs("y", 20, 10)},
        "blank": {"x": recs("x", 10, 5), "y": []},  # not evaluated on y: no AVG
    }
    cells = table1_cells(per, ["x", "y"])
    assert cells[("base", "x")].accuracy == 0.4 and cells[("base", "x")].delta is None
    assert cells[("base", "x")].ci95 == pytest.approx(wilson_ci(4, 10))
    assert cells[("none", "x")].delta["diff"] == pytest.approx(0.2)
    assert cells[("none", "AVG")].accuracy == pytest.approx((0.6 + 0.5) / 2)
    assert cells[("none", "AVG")].n == 30
    assert cells[("none", "AVG")].delta["diff"] == pytest.approx(0.1)
    assert ("blank", "AVG") not in cells and ("blank", "y") not in cells
    # one benchmark: AVG is that benchmark's cell
    one = table1_cells({m: {"x": v["x"]} for m, v in per.items()}, ["x"])
    assert one[("none", "AVG")] == one[("none", "x")]


# ----------------------------------------------------------------------------- science round 3


def test_item_chance_is_one_over_the_answer_set() -> None:
    from hallucue_mlx.metrics import item_chance

    assert item_chance({"chance": 0.1}) == 0.1  # synth digit: 10 answers
    assert item_chance({"chance": None, "n_choices": 0}) is None  # written: unknown
    assert item_chance({"n_choices": 5}) == pytest.approx(0.2)  # E is a choice too
    assert item_chance({"n_choices": 0}) is None  # old records: open is unknown, not 0
    assert item_chance({}) is None


def test_synth_chance_matches_uniform_guessing_over_its_answer_sets() -> None:
    """The issue's check: uniform guessing over the per-task answer sets (6 counts, 10 digits,
    4 bars, 6 colours), not 0 for the open answers."""
    from hallucue_mlx.data.item import chance
    from hallucue_mlx.data.synth import ANSWER_SET_SIZES, load_synth

    # sum: the warm-up-only task (x + m with m in 1-9, x stated)
    assert ANSWER_SET_SIZES == {"count": 6, "digit": 10, "bars": 4, "color": 6, "sum": 9}
    items = load_synth("test", 16)
    for it in items:
        assert chance(it) == pytest.approx(1 / ANSWER_SET_SIZES[it.task])
    # and the sets are the real ones: every gold answer of a vision-only item is in them
    sets = {
        "count": {str(k) for k in range(1, 7)},
        "digit": {str(d) for d in range(10)},
        "bars": set("ABCD"),
        "color": {"red", "green", "blue", "yellow", "purple", "orange"},
    }
    assert {t: len(v) for t, v in sets.items()} == {
        t: n for t, n in ANSWER_SET_SIZES.items() if t != "sum"
    }
    for it in load_synth("validation", 60):
        if it.version == "vision_only":
            assert it.answer in sets[it.task]


def test_declines_are_their_own_outcome_never_correct() -> None:
    rs = [
        rec("1", "blank", False, extracted="unknown", info_removed=True, chance=0.25),
        rec("2", "blank", False, extracted="Cannot be determined", info_removed=True, chance=0.25),
        rec("3", "blank", True, extracted="B", info_removed=True, chance=0.25),
        rec("4", "blank", False, extracted="C", info_removed=True, chance=0.25),
        rec("5", "blank", False, extracted=None, info_removed=True, chance=0.25, declined=True),
    ]
    h = hallucination(rs)
    assert h["declined"] == 3 and h["answered"] == 2 and h["rate"] == 0.4
    assert h["answered_correct_rate"] == 0.5 and h["chance_rate"] == 0.25
    assert summarize(rs)["blank"]["declined_rate"] == pytest.approx(0.6)


def test_concentration_flags_a_constant_answer() -> None:
    from hallucue_mlx.metrics import concentration

    const = [
        rec(str(i), "blank", False, extracted="3", task="count", chance=1 / 6) for i in range(6)
    ]
    spread = [
        rec(str(i), "blank", False, extracted=str(i), task="digit", chance=0.1) for i in range(10)
    ]
    c = concentration(const + spread)
    assert c["by_task"]["count"]["top_share"] == 1.0 and c["by_task"]["count"]["entropy"] == 0.0
    assert c["by_task"]["digit"]["top_share"] == 0.1
    assert c["by_task"]["digit"]["entropy"] == pytest.approx(1.0)  # uniform over 10 digits
    assert c["constant_tasks"] == ["count"]
    assert c["top_share"] == pytest.approx((6 * 1.0 + 10 * 0.1) / 16)
    h = hallucination([dict(r, info_removed=True) for r in const])
    assert h["concentration"]["constant_tasks"] == ["count"]


def test_chance_verdict_compares_answers_with_per_item_guessing() -> None:
    from hallucue_mlx.metrics import chance_verdict

    chances = [0.25] * 200  # four options each: 50 right expected
    assert chance_verdict([i < 50 for i in range(200)], chances) == "at chance"
    assert chance_verdict([i < 80 for i in range(200)], chances) == "above chance"
    assert chance_verdict([i < 20 for i in range(200)], chances) == "below chance"
    assert chance_verdict([], []) is None
    # mixed answer sets: 100 items at 1/2 and 100 at 1/10 expect 60 right
    mixed = [0.5] * 100 + [0.1] * 100
    assert chance_verdict([i < 60 for i in range(200)], mixed) == "at chance"
    assert chance_verdict([i < 100 for i in range(200)], mixed) == "above chance"
