"""Corruptions: deterministic, size-keeping, never the own image, exact span cuts, exact ratios."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hallucue_mlx.corrupt import (
    TEXT_REMOVAL_INSTRUCTION,
    Corruption,
    apply,
    apply_one,
    coverage,
    cut_spans,
    donor_map,
    image_digest,
    resize_array,
    rule_spans,
    selected_ids,
)
from hallucue_mlx.data.item import Item


def _img(i: int, size=(40, 30)) -> Image.Image:
    arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    arr[..., 0] = (i * 37) % 256
    arr[: size[1] // 2, :, 1] = (i * 91) % 256
    return Image.fromarray(arr)


def _items(n: int, sizes=None) -> list[Item]:
    out = []
    for i in range(n):
        size = sizes[i % len(sizes)] if sizes else (40, 30)
        q = f"There are {i + 2} dots. Add 3 to the number of dots. What is the result?"
        spans = ((0, q.index(".") + 1), (q.index("Add"), q.index("dots. W") + 5))
        out.append(
            Item(
                id=f"it{i:03d}",
                benchmark="t",
                split="test",
                question=q,
                answer=str(i + 5),
                image=_img(i, size),
                condition_spans=spans,
                answer_kind="number",
            )
        )
    return out


def _pixels(img: Image.Image) -> bytes:
    return img.convert("RGB").tobytes()


@pytest.mark.parametrize("name", ["none", "blank", "random", "text_removal"])
def test_each_corruption_is_deterministic_and_keeps_image_size(name):
    items = _items(9, sizes=[(40, 30), (64, 64), (17, 50)])
    a = apply(items, Corruption(name, seed=5))
    b = apply(items, Corruption(name, seed=5))
    for (ia, ra), (ib, rb), orig in zip(a, b, items):
        assert ra == rb
        assert ia.question == ib.question
        assert _pixels(ia.image) == _pixels(ib.image)
        assert ia.image.size == orig.image.size


def test_blank_is_one_colour_of_the_fill():
    item = _items(1)[0]
    new, rec = apply_one(item, Corruption("blank", fill=(10, 20, 30)))
    arr = np.asarray(new.image)
    assert rec.changed and arr.shape == (30, 40, 3)
    assert (arr == np.array([10, 20, 30], dtype=np.uint8)).all()
    white = np.asarray(apply_one(item, Corruption("blank"))[0].image)
    assert (white == 255).all()


def test_random_never_returns_own_image_and_is_resized_donor():
    items = _items(12, sizes=[(40, 30), (20, 20)])
    for seed in range(5):
        out = apply(items, Corruption("random", seed=seed))
        donors = donor_map(items, seed)
        assert sorted(donors.values()) == sorted(it.id for it in items)  # a permutation
        for (new, rec), orig in zip(out, items):
            assert rec.changed and donors[orig.id] != orig.id
            assert _pixels(new.image) != _pixels(orig.image)
            assert new.image.size == orig.image.size
            donor = next(it for it in items if it.id == donors[orig.id])
            if donor.image.size == orig.image.size:  # same size: exact copy of the donor pixels
                assert _pixels(new.image) == _pixels(donor.image)


def test_random_avoids_identical_looking_images():
    # Two groups of identical pictures: a plain derangement could hand an item its twin's image.
    items = [it.with_(image=_img(i % 2)) for i, it in enumerate(_items(10))]
    for seed in range(10):
        for (new, rec), orig in zip(apply(items, Corruption("random", seed=seed)), items):
            assert rec.changed
            assert image_digest(new.image) != image_digest(orig.image)


def test_random_with_only_one_distinct_image_is_flagged_unchanged():
    items = [it.with_(image=_img(0)) for it in _items(4)]
    out = apply(items, Corruption("random"))
    assert all(not r.changed for _, r in out)
    assert coverage([r for _, r in out]) == 0.0


def test_random_differs_between_seeds_and_is_stable_across_processes():
    items = _items(20)
    assert donor_map(items, 0) != donor_map(items, 1)
    code = (
        "import sys; sys.path.insert(0, 'tests'); from test_corrupt import _items; "
        "from hallucue_mlx.corrupt import donor_map, selected_ids; "
        "its = _items(20); print(sorted(donor_map(its, 7).items()), "
        "sorted(selected_ids([i.id for i in its], 0.35, 7)))"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
            env={"PYTHONHASHSEED": str(h), "HF_HUB_OFFLINE": "1", "PATH": ""},
        ).stdout
        for h in (1, 2)
    }
    assert len(runs) == 1


def test_text_removal_cuts_exactly_the_condition_spans():
    for item in _items(5):
        new, rec = apply_one(item, Corruption("text_removal"))
        outside = "".join(
            ch
            for k, ch in enumerate(item.question)
            if not any(a <= k < b for a, b in item.condition_spans)
        )
        assert rec.changed
        assert new.question == cut_spans(item.question, item.condition_spans)
        assert "".join(new.question.split()) == "".join(outside.split())
        assert new.question == "What is the result?"
        assert new.condition_spans == () and new.image is item.image and new.answer == item.answer


def test_text_removal_all_conditions_gives_template_and_unmatched_is_flagged():
    item = _items(1)[0]
    whole = item.with_(condition_spans=((0, len(item.question)),))
    assert apply_one(whole, Corruption("text_removal"))[0].question == TEXT_REMOVAL_INSTRUCTION
    bare = item.with_(question="Find x.", condition_spans=())
    new, rec = apply_one(bare, Corruption("text_removal"))
    assert not rec.changed and rec.detail == "no rule matched" and new.question == "Find x."


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("As shown in the figure, AB = 5, BC = 3. Find AC.", "Find AC."),
        # the asking sentence stays, its givens go
        ("If AB = 12 and BC = 5, find AC.", "Find AC."),
        ("Given that AB = 5, BC = 3, and AC = 4, find the area.", "Find the area."),
        ("If x = 2, then what is y?", "What is y?"),
        ("What is x if AB = 12?", "What is x?"),
        ("The rectangle is 4 cm long. What is its area?", "What is its area?"),
        ("In \\odot P, m \\widehat{SR} = 48. Find m \\angle RPS.", "Find m \\angle RPS."),
        # no given: unchanged, and not counted as changed
        ("What is the value of the largest bar?", None),
        ("What is the value of y in the figure?", None),
        ("As shown in the figure, find x.", None),
        ("Find x. Round to the nearest tenth.", None),
    ],
)
def test_text_removal_rules(question, expected):
    item = Item(id="r", benchmark="x", split="t", question=question, answer="1", image=None)
    new, rec = apply_one(item, Corruption("text_removal"))
    if expected is None:
        assert not rec.changed and rule_spans(question) == ([], [])
    else:
        assert rec.changed and new.question == expected


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.7, 1.0])
def test_ratio_picks_the_expected_share(ratio):
    items = _items(20)
    out = apply(items, Corruption("blank", ratio=ratio, seed=3))
    applied = [r for _, r in out if r.applied]
    assert len(applied) == int(ratio * 20 + 0.5)
    for (new, rec), orig in zip(out, items):
        assert (new is orig) == (not rec.applied)


def test_ratio_sets_are_nested_and_seeded():
    ids = [f"x{i}" for i in range(50)]
    small, big = selected_ids(ids, 0.2, 1), selected_ids(ids, 0.6, 1)
    assert small < big and len(small) == 10 and len(big) == 30
    assert selected_ids(ids, 0.2, 2) != small
    assert selected_ids(list(reversed(ids)), 0.2, 1) == small  # order of the pool does not matter


def test_resize_array_matches_shape_and_constant_images():
    import mlx.core as mx

    const = mx.full((7, 9, 3), 77, dtype=mx.uint8)
    out = resize_array(const, (20, 13))
    assert out.shape == (13, 20, 3) and bool(mx.all(out == 77))


def test_invalid_corruption_arguments_raise():
    with pytest.raises(ValueError, match="unknown corruption"):
        Corruption("noise")
    with pytest.raises(ValueError, match="ratio"):
        Corruption("blank", ratio=1.5)


def test_info_removed_says_which_items_a_corruption_left_unanswerable():
    from hallucue_mlx.corrupt import info_removed
    from hallucue_mlx.data.synth import load_synth

    items = load_synth("test", n=200, seed=0)
    for name in ("none", "blank", "random", "text_removal"):
        for item, crec in apply(items, Corruption(name, 1.0, 0)):
            orig = next(it for it in items if it.id == item.id)
            got = info_removed(orig, crec)
            if name == "none" or not crec.changed:
                assert got is False
            elif name in ("blank", "random"):
                # the visual fact is stated in the text of text-dominant and text-lite items
                assert got == (orig.version in ("vision_dominant", "vision_only")), orig.id
            else:
                # what text removal cuts restates the image (test_synth's perfect-vision
                # oracle), except the numbers to add, which only the text holds
                assert got == orig.meta["text_only_facts"], (orig.id, orig.question)


def test_text_removal_keeps_every_asking_sentence_on_every_adapter(tmp_path):
    """One policy on the real-format copies of every benchmark: an asking sentence is never cut
    whole (only a conditional clause stating a given inside it), declarative givens are cut, and
    an item with no given stays unchanged."""
    import sys

    from hallucue_mlx.corrupt import _asking, _given_clause, remove_text, sentences
    from hallucue_mlx.data.bench import load_benchmark

    sys.path.insert(0, str(Path(__file__).parent))
    import bench_rows

    n_changed = n = 0
    for name, (build, split) in bench_rows.BUILDERS.items():
        for item in load_benchmark(name, split or None, path=str(build(tmp_path / name))):
            if item.condition_spans:
                continue
            new, changed, _ = remove_text(item)
            n += 1
            n_changed += changed
            asks = [item.question[a:b].strip() for a, b in sentences(item.question)]
            asks = [s for s in asks if _asking(s)]
            for s in asks:
                clause = _given_clause(s)
                kept = s if clause is None else s[: clause[0]] + s[clause[1] :]
                core = " ".join(kept.split()).strip(" ,")[1:]  # the first letter may be capitalised
                assert core in " ".join(new.question.split()), (name, item.id, s, new.question)
            if not changed:
                assert new.question == item.question
    assert 0 < n_changed < n  # some fixture questions state givens, some do not
