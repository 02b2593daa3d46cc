"""Text removal counts where it removes a fact only the text holds: synth items whose number to
add is a sentence of its own, MathVerse's text-dominant, text-lite and vision-intensive versions;
the items that are one question share a cluster."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from hallucue_mlx.corrupt import Corruption, apply, info_removed
from hallucue_mlx.data.synth import SynthConfig, load_synth
from hallucue_mlx.metrics import hallucination


def test_synth_text_only_facts_are_counted_under_text_removal():
    items = load_synth("test", 80, config=SynthConfig(text_only_facts=True))
    flags = {}
    for item, rec in apply(items, Corruption("text_removal")):
        orig = next(it for it in items if it.id == item.id)
        flags[orig.id] = info_removed(orig, rec)
        text_only = orig.task in ("count", "digit") and orig.version != "vision_only"
        assert flags[orig.id] is text_only, (orig.id, orig.question, item.question)
        if text_only:
            assert "to add" not in item.question
            assert re.search(r"plus (that number|those numbers)\?$", item.question)
    assert 0 < sum(flags.values()) < len(items)
    # records marked so enter the hallucination metric: an answer there is a hallucination
    recs = [
        {
            "id": i,
            "corruption": "text_removal",
            "correct": False,
            "extracted": "7",
            "info_removed": f,
            "task": "count",
            "chance": 1 / 6,
        }
        for i, f in flags.items()
    ]
    h = hallucination(recs)
    assert h["n"] == sum(flags.values()) and h["rate"] == 1.0
    # the shipped synth splits state the numbers to add in the text only: counted there too
    shipped = load_synth("test", 40)
    assert any(
        info_removed(it, rec)
        for it, (_, rec) in zip(shipped, apply(shipped, Corruption("text_removal")))
    )
    # with the numbers in the asking sentence, text removal removes nothing an item needs
    kept = load_synth("test", 40, config=SynthConfig(text_only_facts=False))
    for item, (_, rec) in zip(kept, apply(kept, Corruption("text_removal"))):
        assert info_removed(item, rec) is False


def test_mathverse_text_removal_is_counted_by_version(tmp_path):
    from hallucue_mlx.data.bench import load_benchmark

    sys.path.insert(0, str(Path(__file__).parent))
    import bench_rows

    build, split = bench_rows.BUILDERS["mathverse"]
    items = load_benchmark("mathverse", split, path=str(build(tmp_path / "mv")))
    by_id = {it.id: it for it in items}
    seen = {}
    for item, rec in apply(items, Corruption("text_removal")):
        orig = by_id[item.id]
        got = info_removed(orig, rec)
        if not rec.changed:
            assert got is False
            continue
        seen.setdefault(orig.version, set()).add(got)
        want = orig.version in ("text_dominant", "text_lite", "vision_intensive")
        assert got is want, (orig.version, orig.question, item.question)
    assert seen.get("text_dominant") == {True}
    # the five versions of one problem are one cluster
    from hallucue_mlx.data.item import cluster

    clusters = {}
    for it in items:
        clusters.setdefault(cluster(it), set()).add(it.version)
    assert any(len(v) == 5 for v in clusters.values())
