"""scripts/bench_vector_silu.py times both SiLUs on one model and reports how close they are."""

from __future__ import annotations

import json


def test_times_both_silus_and_finds_them_close(load_script, tiny_dir, capsys):
    b = load_script("bench_vector_silu")
    argv = ["--model", str(tiny_dir), "--prompts", "1", "--group", "2", "--tokens", "4"]
    assert b.main(argv + ["--reps", "1", "--warmup", "0", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    (r,) = json.loads(lines[-1]).values()
    assert r["shape"] == "1x2x4" and r["greedy_rows"] == 2
    for k in ("exact_rollout_ms", "vector_rollout_ms", "exact_loss_ms", "vector_loss_ms"):
        assert r[k] > 0
    assert r["step_ratio"] > 0 and r["loss_diff"] < 1e-4 and r["max_grad_rel_diff"] < 1e-3
    assert lines[1].split()[:2] == ["model", "shape"]
