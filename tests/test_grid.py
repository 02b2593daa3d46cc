"""The grid: its cell list, a quick end-to-end run on a tiny random model (results.json schema,
manifest, folder layout), resume after interruption giving identical results, and refusing a run
folder made with another config."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hallucue_mlx.config import load_config  # noqa: E402
from hallucue_mlx.grid import (  # noqa: E402
    BASE,
    GridError,
    GridInterrupted,
    cells,
    plan,
    run_grid,
)

CONDS = ["none", "blank", "random", "text_removal"]


def comparable(results_json: dict) -> dict:
    """results.json without its wall-clock `timing`: equal for interrupted+resumed and
    uninterrupted runs with the same config and seed."""
    return {k: v for k, v in results_json.items() if k != "timing"}


# ---------------------------------------------------------------- the cell list (no model)


def test_default_cells_cross_every_model_condition_and_split():
    cfg = load_config(None)
    cs = cells(cfg)
    assert len(cs) == 5 * 2 * 4 == len(set(cs))
    assert {c.train for c in cs} == {BASE, *CONDS}
    assert {c.eval for c in cs} == set(CONDS)
    assert {(c.benchmark, c.split) for c in cs} == {("synth", "test"), ("synth", "train")}
    # the paper's eight settings: trained corrupted or not x evaluated corrupted or not x split
    settings = {(c.train != "none", c.eval != "none", c.split) for c in cs if c.train != BASE}
    assert len(settings) == 8
    assert cs[0].train == BASE and cs[0].eval == "none" and cs[0].split == "test"


def test_custom_conditions_and_benchmarks():
    cfg = load_config(
        "paper-qwen25vl-3b",
        [
            "grid.train_conditions=[blank, random]",
            "grid.eval_conditions=[none, blank]",
            "grid.include_base=false",
        ],
    )
    cs = cells(cfg)
    assert {c.train for c in cs} == {"blank", "random"}
    assert {c.eval for c in cs} == {"none", "blank"}
    tests = {c.benchmark for c in cs if c.split == "test"}
    assert tests == {"mathverse", "mathvista", "mathvision", "wemath"}
    assert {c.benchmark for c in cs if c.split == "train"} == {"geometry3k"}
    assert len(cs) == 2 * (4 + 1) * 2


def test_plan_trains_each_model_before_evaluating_it():
    cfg = load_config(None, ["grid.train_conditions=[none, blank]"])
    names = [t.name for t in plan(cfg)]
    assert names == [
        "eval base on synth-test",
        "eval base on synth-train",
        "train none",
        "eval none on synth-test",
        "eval none on synth-train",
        "train blank",
        "eval blank on synth-test",
        "eval blank on synth-train",
    ]


# ---------------------------------------------------------------- end to end on a tiny model


def _overrides(tiny_dir, *extra):
    return [
        f"model.id={tiny_dir}",
        "train.max_completion_length=6",
        "eval.max_tokens=6",
        "train.eval_every=1",  # exercises the periodic held-out evaluation too
        "train.n_eval=2",
        *extra,
    ]


def _cfg(tiny_dir, *extra):
    return load_config(None, _overrides(tiny_dir, *extra))


@pytest.fixture(scope="module")
def reference(tiny_dir, tmp_path_factory):
    """An uninterrupted quick grid: (run folder, results.json content)."""
    out = tmp_path_factory.mktemp("ref")
    path = run_grid(_cfg(tiny_dir), out, quick=True, quiet=True, report=False)
    return out, json.loads(path.read_text())


@pytest.mark.slow
def test_quick_grid_writes_results_manifest_and_layout(tiny_dir, reference):
    out, res = reference
    for key in ("model", "benchmarks", "train_conditions", "eval_conditions", "cells", "timing"):
        assert key in res
    assert res["model"] == str(tiny_dir) and res["benchmarks"] == ["synth"]
    assert res["train_conditions"] == CONDS and res["eval_conditions"] == CONDS
    cfg = _cfg(tiny_dir)
    assert len(res["cells"]) == len(cells(cfg)) == 40
    for c in res["cells"]:
        assert c["train"] in (BASE, *CONDS) and c["eval"] in CONDS
        assert c["benchmark"] == "synth" and c["split"] in ("test", "train")
        assert c["n"] == (8 if c["split"] == "test" else 4)
        lo, hi = c["ci95"]
        assert 0 <= lo <= c["accuracy"] <= hi <= 1
        assert 0 <= c["format_rate"] <= 1 and c["mean_response_tokens"] >= 0
        # the number agrees with the records it was computed from
        recs = [
            json.loads(x)
            for x in (out / "eval" / c["train"] / f"synth-{c['split']}" / "records.jsonl")
            .read_text()
            .splitlines()
        ]
        mine = [r for r in recs if r["corruption"] == c["eval"]]
        assert len(mine) == c["n"]
        assert c["accuracy"] == sum(r["correct"] for r in mine) / len(mine)
    assert res["timing"]["total_s"] > 0 and set(res["timing"]["train_s"]) == set(CONDS)
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("config", "config_hash", "versions", "platform", "device", "git", "seeds"):
        assert key in manifest
    assert manifest["quick"] is True and manifest["versions"]["mlx"]
    assert set(manifest["subsets"]) == {"train", "synth-test", "synth-train"}
    assert len(manifest["subsets"]["synth-test"]["content_hash"]) == 64
    for cond in CONDS:
        d = out / "train" / cond
        assert (d / "adapter" / "adapters.safetensors").is_file()
        steps = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        assert [s["step"] for s in steps if "event" not in s] == [1, 2]
        assert res["training"][cond]["steps"] == 2


def _stamps(*folders) -> dict:
    """Modification time of every file under the folders: a rerun that writes nothing keeps them."""
    return {p: p.stat().st_mtime_ns for d in folders for p in d.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_rerun_keeps_everything_and_gives_the_same_results(tiny_dir, reference):
    out, res = reference
    before = _stamps(out / "train", out / "eval")
    path = run_grid(_cfg(tiny_dir), out, quick=True, quiet=True, report=False)
    assert _stamps(out / "train", out / "eval") == before  # nothing retrained or re-evaluated
    again = json.loads(path.read_text())
    assert comparable(again) == comparable(res)
    assert again["timing"]["sessions"] == res["timing"]["sessions"] + 1


@pytest.mark.slow
def test_interrupted_run_resumes_to_identical_results(tiny_dir, reference, tmp_path):
    """Stopped mid-training, then again mid-evaluation with a half-written evaluation folder:
    the finished rerun equals the uninterrupted reference."""
    _, res = reference
    cfg = _cfg(tiny_dir)
    with pytest.raises(GridInterrupted, match="blank"):
        run_grid(cfg, tmp_path, quick=True, quiet=True, report=False, stop_training_at=("blank", 1))
    d = tmp_path / "train" / "blank"
    assert (d / "checkpoints" / "latest").is_file() and not (d / "done.json").exists()
    assert not (tmp_path / "results.json").exists()

    def first_step() -> str:  # carries step_time: a redone step would differ
        lines = (d / "metrics.jsonl").read_text().splitlines()
        return next(ln for ln in lines if '"event"' not in ln)

    before = first_step()
    with pytest.raises(GridInterrupted):
        run_grid(cfg, tmp_path, quick=True, quiet=True, report=False, stop_after_tasks=10)
    # the training continued from its checkpoint: step 1 was not redone
    assert first_step() == before
    assert (d / "done.json").is_file()
    # as if killed between an evaluation condition's part and the combined records file
    ev = tmp_path / "eval" / "blank" / "synth-test"
    (ev / "records.jsonl").unlink()
    (ev / "parts" / "random.done.json").unlink()
    path = run_grid(cfg, tmp_path, quick=True, quiet=True, report=False)
    assert comparable(json.loads(path.read_text())) == comparable(res)


@pytest.mark.slow
def test_a_changed_config_is_refused_with_a_clear_message(tiny_dir, reference, tmp_path):
    out, _ = reference
    with pytest.raises(GridError, match=r"train\.learning_rate.*--force"):
        run_grid(
            _cfg(tiny_dir, "train.learning_rate=1e-3"), out, quick=True, quiet=True, report=False
        )
    with pytest.raises(GridError, match="--quick run"):
        run_grid(_cfg(tiny_dir, "train.steps=1"), out, quiet=True, report=False)
    # results without a manifest cannot be checked
    (tmp_path / "eval").mkdir()
    with pytest.raises(GridError, match="no manifest.json"):
        run_grid(_cfg(tiny_dir), tmp_path, quick=True, quiet=True, report=False)


@pytest.mark.slow
def test_force_starts_over_and_keeps_foreign_files(tiny_dir, tmp_path):
    cfg = _cfg(
        tiny_dir, "grid.train_conditions=[blank]", "grid.eval_conditions=[none]", "train.steps=1"
    )
    run_grid(cfg, tmp_path, quick=True, quiet=True, report=False)
    (tmp_path / "notes.txt").write_text("mine")
    other = _cfg(tiny_dir, "grid.train_conditions=[none]", "grid.eval_conditions=[none]")
    with pytest.raises(GridError):
        run_grid(other, tmp_path, quick=True, quiet=True, report=False)
    path = run_grid(other, tmp_path, quick=True, quiet=True, report=False, force=True)
    res = json.loads(path.read_text())
    assert res["train_conditions"] == ["none"] and not (tmp_path / "train" / "blank").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_a_training_time_budget_ends_trainings_as_finished(tiny_dir, tmp_path):
    cfg = _cfg(
        tiny_dir,
        "grid.train_conditions=[random]",
        "grid.eval_conditions=[none]",
        "grid.include_base=false",
        "train.steps=50",
        "train.max_minutes=0.00001",  # up after the first step
        "train.eval_every=0",
        "data.eval.synth.n=4",
        "data.train_slice_n=2",
    )
    path = run_grid(cfg, tmp_path, quiet=True, report=False)
    res = json.loads(path.read_text())
    assert res["training"]["random"]["steps"] == 1
    assert json.loads((tmp_path / "train" / "random" / "done.json").read_text())["time_up"]
    train_dir = tmp_path / "train" / "random"
    before = _stamps(train_dir)
    run_grid(cfg, tmp_path, quiet=True, report=False)  # kept, not retrained
    assert _stamps(train_dir) == before  # no file of the finished training was written again


@pytest.mark.slow
def test_grid_on_local_copies_of_real_benchmarks(tiny_dir, tmp_path):
    """The paper config's data path: Geometry3K training items, MathVerse and MathVista test
    subsets, all read from local copies (as `data prepare` writes them) by the real adapters."""
    from bench_rows import geometry3k, mathverse, mathvista

    geo, verse, vista = (
        geometry3k.build(tmp_path),
        mathverse.build(tmp_path),
        mathvista.build(tmp_path),
    )
    cfg = load_config(
        "paper-qwen25vl-3b",
        [
            f"model.id={tiny_dir}",
            f"data.train.path={geo}",
            f"data.eval=[{{name: mathverse, split: testmini, n: 5, path: {verse}}}, "
            f"{{name: mathvista, split: testmini, n: 4, path: {vista}}}]",
            "grid.train_conditions=[blank]",
            "grid.eval_conditions=[none, text_removal]",
            "train.max_completion_length=4",
            "eval.max_tokens=4",
            "train.grad_checkpoint=false",
        ],
    )
    path = run_grid(cfg, tmp_path / "run", quick=True, quiet=True, report=False)
    res = json.loads(path.read_text())
    assert res["benchmarks"] == ["mathverse", "mathvista"]
    got = {(c["train"], c["benchmark"], c["split"], c["n"]) for c in res["cells"]}
    assert got == {
        (m, b, s, n)
        for m in ("base", "blank")
        for b, s, n in (
            ("mathverse", "test", 5),
            ("mathvista", "test", 4),
            ("geometry3k", "train", 4),
        )
    }
    with pytest.raises(Exception, match=r"data\.eval\.mathverse\.path"):
        run_grid(
            load_config(
                "paper-qwen25vl-3b",
                [f"data.train.path={geo}", "data.eval.mathverse.path=/nonexistent"],
            ),
            tmp_path / "bad",
            quick=True,
            quiet=True,
        )


def test_the_periodic_evaluation_reads_validation_never_test(tmp_path):
    from hallucue_mlx.grid import validation_items

    cfg = load_config(None, ["train.eval_every=10", "train.n_eval=12"])
    items = validation_items(cfg)
    assert len(items) == 12 and {it.split for it in items} == {"validation"}
    # a local copy of the training data has no validation split: no periodic evaluation
    local = load_config(None, ["train.eval_every=10", f"data.train.path={tmp_path}"])
    assert validation_items(local) == []
    assert validation_items(load_config(None, ["train.eval_every=0"])) == []
