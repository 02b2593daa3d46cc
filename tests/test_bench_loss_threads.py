"""scripts/bench_loss_threads.py times the loss phase as one graph and group by group on threads,
and reports that the thread count changes no bit."""

from __future__ import annotations

import json


def test_times_the_three_ways_and_the_threads_change_no_bit(load_script, tiny_dir, capsys):
    b = load_script("bench_loss_threads")
    argv = ["--model", str(tiny_dir), "--prompts", "3", "--group", "2", "--tokens", "4"]
    assert b.main(argv + ["--reps", "1", "--warmup", "0", "--threads", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    (r,) = json.loads(lines[-1]).values()
    assert r["shape"] == "3x2x4" and r["beta"] == 0.01
    for k in ("whole_ms", "groups x1_ms", "groups x2_ms", "groups x1_ratio", "groups x2_ratio"):
        assert r[k] > 0
    assert r["threads_bitwise_same"] is True
    assert r["whole_vs_groups_max_rel_diff"] < 1e-4  # float summation order only
    assert lines[1].split()[:3] == ["model", "shape", "whole"]
