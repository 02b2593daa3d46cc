"""The procedural benchmark: deterministic, disjoint splits, exact condition spans."""

import hashlib

import pytest

from hallucue_mlx.data.synth import (
    COLORS,
    SYNTH_VERSIONS,
    TASKS,
    SynthConfig,
    load_synth,
    make_item,
)


def _digest(item):
    return hashlib.sha256(item.image.tobytes() + item.question.encode()).hexdigest()


def test_same_seed_same_items_and_images():
    a, b = load_synth("test", 40, seed=3), load_synth("test", 40, seed=3)
    assert [(i.id, i.question, i.answer, i.choices) for i in a] == [
        (i.id, i.question, i.answer, i.choices) for i in b
    ]
    assert [i.image.tobytes() for i in a] == [i.image.tobytes() for i in b]


def test_other_seed_other_items():
    a, b = load_synth("test", 40, seed=0), load_synth("test", 40, seed=1)
    assert sum(_digest(x) == _digest(y) for x, y in zip(a, b)) < 4


def test_splits_are_disjoint():
    splits = ("sft", "train", "validation", "test")
    seen = {}
    for split in splits:
        for it in load_synth(split, 300):
            assert it.split == split
            assert it.id not in seen
            seen[it.id] = split
    digests = {s: {_digest(i) for i in load_synth(s, 300)} for s in splits}
    for a in splits:
        for b in splits:
            if a < b:
                assert not digests[a] & digests[b], (a, b)


def test_items_cover_every_task_and_version_and_are_well_formed():
    items = load_synth("train", 400)
    assert {i.task for i in items} == set(TASKS)
    assert {i.version for i in items} == set(SYNTH_VERSIONS)
    for it in items:
        assert it.image.size == (112, 112) and it.image.mode == "RGB"
        if it.answer_kind == "choice":
            assert it.answer in "ABCD" and len(it.choices) == 4
        elif it.task == "color":  # a one-word answer: no option letter to look up
            assert it.answer_kind == "free" and it.answer in COLORS and not it.choices
        else:
            assert it.answer.isdigit()


def test_condition_spans_point_at_the_stated_conditions():
    for it in load_synth("test", 300):
        cut = [it.question[a:b] for a, b in it.condition_spans]
        assert all(c and c == c.strip() and c.endswith(".") for c in cut)
        if it.version == "vision_only":
            assert cut == []
        if it.version in ("text_dominant", "text_lite") and it.task in ("count", "digit"):
            # the visual fact (count/digit) is stated inside the first span
            visual = it.meta["think"].split(".")[0]
            number = [t for t in visual.split() if t.isdigit()][0]
            assert number in cut[0]
        if it.task in ("count", "digit") and it.version != "vision_only":
            assert any(c.startswith("Add ") for c in cut)
        # whatever is outside the spans is the question itself
        rest = it.question
        for a, b in sorted(it.condition_spans, reverse=True):
            rest = rest[:a] + rest[b:]
        assert rest.strip().endswith("?")


def test_config_restricts_tasks_and_versions():
    cfg = SynthConfig(
        tasks=("digit",), task_weights=(1.0,), versions=("vision_only",), version_weights=(1.0,)
    )
    items = [make_item("sft", i, 0, cfg) for i in range(50)]
    assert {(i.task, i.version) for i in items} == {("digit", "vision_only")}


def test_bad_split_and_size_are_clear_errors():
    with pytest.raises(ValueError, match="unknown synth split 'dev'"):
        load_synth("dev", 3)
    with pytest.raises(ValueError, match="n must be >= 0"):
        load_synth("test", -1)
