"""SIGKILL at seeded random points of a real `hallucue-mlx run` (any moment, mid-training,
mid-evaluation, mid-report), rerun after each kill: the finished results.json equals that of an
uninterrupted run with the same seed (its wall-clock `timing` aside). Nothing a kill half-writes
may be trusted by the rerun: checkpoints, metrics logs, evaluation parts, results, report.

HALLUCUE_KILL_SEED picks other kill points (default 0)."""

from __future__ import annotations

import json
import os
import random
import signal
import time

import pytest
from reliability_helpers import Cli, grid_yaml

STEPS = 8
TRAIN_CONDS = ("none", "blank")


def comparable(results_json: dict) -> dict:
    """results.json without its wall-clock `timing`: equal for interrupted+resumed and
    uninterrupted runs with the same config and seed."""
    return {k: v for k, v in results_json.items() if k != "timing"}


def _latest_step(d) -> int:
    try:
        return int(json.loads((d / "checkpoints" / "latest").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_sigkill_at_random_points_then_rerun_gives_identical_results(tmp_path, tiny_dir):
    rng = random.Random(int(os.environ.get("HALLUCUE_KILL_SEED", "0")))
    # evaluations of 12 items decoded 2 at a time: long enough to be hit mid-way
    cfg = grid_yaml(
        tmp_path / "tiny.yaml",
        tiny_dir,
        steps=STEPS,
        n_test=12,
        max_tokens=12,
        batch_size=2,
        max_completion_length=8,
    )
    ref_out, out = tmp_path / "ref", tmp_path / "killed"

    ref = Cli(["run", "--config", str(cfg), "--out", str(ref_out)], tmp_path, "ref")
    assert ref.finish() == 0, ref.stderr()[-3000:]  # one at a time: two cores are shared
    args = ["run", "--config", str(cfg), "--out", str(out)]
    hits: list[str] = []

    def kill(name: str, ready, delay: float, check) -> None:
        cli = Cli(args, tmp_path, name)
        assert cli.wait_for(ready, timeout=240), f"{name}: the run ended first: {cli.stderr()}"
        time.sleep(delay)
        cli.signal(signal.SIGKILL)
        assert cli.finish() == -signal.SIGKILL, f"{name}: {cli.stderr()[-2000:]}"
        assert check(), f"{name}: the kill missed its phase"
        hits.append(name)

    # 1. any moment of the first second of work (the base model's evaluation, usually)
    kill("any-moment", (out / "manifest.json").exists, rng.uniform(0.0, 1.0), lambda: True)

    # 2. mid-training: after a random later checkpoint of a training not finished yet
    pending = [c for c in TRAIN_CONDS if not (out / "train" / c / "done.json").exists()]
    cond = rng.choice(pending)
    tdir = out / "train" / cond
    k = rng.randint(_latest_step(tdir) + 1, STEPS - 2)
    kill(
        f"training-{cond}-after-step-{k}",
        lambda: _latest_step(tdir) >= k,
        rng.uniform(0.0, 0.05),
        lambda: not (tdir / "done.json").exists(),
    )

    # 3. mid-evaluation: once the first condition of an unfinished evaluation is saved
    pending = [
        m
        for m in ("base", *TRAIN_CONDS)
        if not (out / "eval" / m / "synth-test" / "parts" / "none.done.json").exists()
    ]
    model = rng.choice(pending)
    parts = out / "eval" / model / "synth-test" / "parts"
    kill(
        f"evaluation-{model}",
        (parts / "none.done.json").exists,
        rng.uniform(0.0, 0.05),
        lambda: not (parts / "blank.done.json").exists(),
    )

    # 4. mid-report: results.json is written, report.md not yet
    kill(
        "report",
        (out / "results.json").exists,
        rng.uniform(0.0, 0.2),
        lambda: not (out / "report.md").exists(),
    )

    # 5. the rerun finishes
    last = Cli(args, tmp_path, "final")
    assert last.finish() == 0, last.stderr()[-3000:]
    got = json.loads((out / "results.json").read_text())
    want = json.loads((ref_out / "results.json").read_text())
    assert comparable(got) == comparable(want), hits
    assert (out / "report.md").read_text().startswith("#")
    for cond in TRAIN_CONDS:
        steps = [
            json.loads(x)["step"]
            for x in (out / "train" / cond / "metrics.jsonl").read_text().splitlines()
        ]
        assert steps == list(range(1, STEPS + 1)), cond  # no step lost or logged twice
