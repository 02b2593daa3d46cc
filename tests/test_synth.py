"""The procedural benchmark: deterministic, disjoint splits, exact condition spans."""

import hashlib
import re
from collections import defaultdict

import pytest

from hallucue_mlx.corrupt import Corruption, apply, info_removed
from hallucue_mlx.data.synth import (
    COLORS,
    DEFAULT_SIZES,
    SPLITS,
    SYNTH_VERSIONS,
    TASKS,
    TEXT_STATED,
    SynthConfig,
    load_synth,
    make_item,
    owner,
    text_pair,
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


@pytest.mark.slow
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
            # the numbers to add are a span of their own (a fact only the text holds), the
            # asking sentence refers to them
            assert re.fullmatch(r"The numbers? to add (is|are) [\d, and]+\.", cut[-1]), cut
            assert re.search(r"plus (that number|those numbers)\?$", it.question)
            assert it.meta["text_only_facts"]
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


@pytest.fixture(scope="module")
def full_splits():
    """Every split at its default size (sft 20000, train 1000, validation 600, test 600)."""
    return {split: load_synth(split) for split in SPLITS}


@pytest.mark.slow
def test_splits_share_no_text_stated_pair_and_no_image_at_full_size(full_splits):
    pairs, digests = {}, {}
    for split, items in full_splits.items():
        assert len(items) == DEFAULT_SIZES[split]
        pairs[split] = {(i.question, i.answer) for i in items if i.version in TEXT_STATED}
        assert all(owner("text", text_pair(q, a)) == split for q, a in pairs[split])
        digests[split] = {_digest(i) for i in items}
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not pairs[a] & pairs[b], (a, b, sorted(pairs[a] & pairs[b])[:3])
                assert not digests[a] & digests[b], (a, b)


@pytest.mark.slow
def test_every_split_has_every_task_and_version_in_its_weight(full_splits):
    # the redraw keeps (task, version) fixed: partitioning the text pairs must not thin out
    # the text-stated versions of the small splits
    for split, items in full_splits.items():
        strata = defaultdict(int)
        for it in items:
            strata[(it.task, it.version)] += 1
        assert len(strata) == len(TASKS) * len(SYNTH_VERSIONS), split
        for version in SYNTH_VERSIONS:
            share = sum(n for (_, v), n in strata.items() if v == version) / len(items)
            assert 0.19 < share < 0.31, (split, version, share)


def _perfect_vision(item) -> str:
    """Answer from what the image was drawn from plus what the (corrupted) text still says."""
    facts = item.meta["facts"]
    if item.task == "bars":
        heights = facts["heights"]
        return max(heights, key=heights.get)
    if item.task == "color":
        return facts["color"]
    seen = facts["count"] if item.task == "count" else facts["digit"]
    if item.version == "vision_only":
        return str(seen)
    stated = re.search(r"The numbers? to add (?:is|are) ([\d, and]+)\.", item.question)
    if not stated:
        return "unanswerable"
    return str(seen + sum(int(n) for n in re.findall(r"\d+", stated.group(1))))


@pytest.mark.slow
@pytest.mark.parametrize("split", SPLITS)
def test_text_removal_removes_exactly_the_text_only_facts(full_splits, split):
    items = full_splits[split]
    assert [_perfect_vision(it) for it in items] == [it.answer for it in items]
    removed = apply(items, Corruption("text_removal"))
    for (new, rec), it in zip(removed, items):
        answer = _perfect_vision(new)
        # the numbers to add live in the text only: removed, the item is unanswerable (and
        # counted so); every other cut restates the image, which still answers the item
        if it.meta["text_only_facts"]:
            assert answer == "unanswerable" and info_removed(it, rec), (it.id, new.question)
        else:
            assert answer == it.answer and not info_removed(it, rec), (it.id, new.question)
    changed = [rec for _, rec in removed if rec.changed]
    assert len(changed) >= sum(it.version in TEXT_STATED for it in items)


def test_chains_are_scored_step_by_step_from_the_think_text():
    from hallucue_mlx.trace import trace

    items = load_synth("test", 200)
    chains = defaultdict(int)
    for it in items:
        gold = f"<think>{it.meta['think']}</think> \\boxed{{{it.answer}}}"
        t = trace(gold, it)
        chains[t.chain] += 1
        assert t.read is not False and t.computed is not False, (it.id, it.meta["think"])
        if t.chain:
            assert t.computed and t.steps_ok == t.chain
            assert t.chain == len(it.meta["facts"]["addends"])
            # a wrong sum in the last step is a compute error, the reading still right
            last = it.meta["think"].rsplit("= ", 1)
            bad = trace(f"<think>{last[0]}= 99.</think>", it)
            assert bad.read and bad.computed is False and bad.steps_ok == t.chain - 1
    # one to three additions, each drawn often
    assert all(chains[c] > 15 for c in (1, 2, 3)), dict(chains)


def test_a_blank_image_removes_what_vision_items_need():
    items = load_synth("test", 200)
    blanked = apply(items, Corruption("blank"))
    flags = [info_removed(it, rec) for it, (_, rec) in zip(items, blanked)]
    assert flags == [it.version in ("vision_dominant", "vision_only") for it in items]
