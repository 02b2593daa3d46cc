"""scripts/headroom.py and metrics.headroom: greedy accuracy, sampled pass@1, pass@G and the
share of items with reward spread, per task, per version and overall."""

from __future__ import annotations

import json

import pytest

from hallucue_mlx.metrics import headroom


def _rec(i: int, sample: int, correct: bool, reward: float | None = None, task: str = "count"):
    r = {
        "id": f"synth-validation-{i:04d}",
        "benchmark": "synth",
        "task": task,
        "version": "vision_only" if i % 2 else "text_dominant",
        "corruption": "none",
        "sample": sample,
        "correct": correct,
    }
    if reward is not None:
        r["reward"] = reward
    return r


def test_headroom_by_hand() -> None:
    # item 0: 4 of 4 right; item 1: 1 of 4; item 2: none right but the format reward varies;
    # item 3 (another task): none right, same reward every time
    sampled = (
        [_rec(0, s, True, 1.0) for s in range(4)]
        + [_rec(1, s, s == 2, 1.0 if s == 2 else 0.1) for s in range(4)]
        + [_rec(2, s, False, 0.1 * (s % 2)) for s in range(4)]
        + [_rec(3, s, False, 0.0, task="digit") for s in range(4)]
    )
    greedy = [
        _rec(0, 0, True),
        _rec(1, 0, False),
        _rec(2, 0, False),
        _rec(3, 0, True, task="digit"),
    ]
    h = headroom(sampled, greedy)
    o = h["overall"]
    assert o["n"] == 4 and o["samples"] == 4
    assert o["greedy"] == pytest.approx(0.5)
    assert o["pass1"] == pytest.approx((1 + 0.25 + 0 + 0) / 4)
    assert o["pass_at_g"] == pytest.approx(0.5)
    assert o["spread"] == pytest.approx(0.25)  # only item 1 is some right, some wrong
    assert o["reward_spread"] == pytest.approx(0.5)  # items 1 and 2
    assert set(h["by_task"]) == {"count", "digit"}
    assert h["by_task"]["digit"] == {
        "n": 1,
        "samples": 4,
        "greedy": 1.0,
        "pass1": 0.0,
        "pass_at_g": 0.0,
        "spread": 0.0,
        "reward_spread": 0.0,
    }
    assert h["by_version"]["vision_only"]["n"] == 2  # items 1 and 3
    # without greedy records or rewards: those entries are None
    bare = headroom([{k: v for k, v in r.items() if k != "reward"} for r in sampled])
    assert bare["overall"]["greedy"] is None and bare["overall"]["reward_spread"] is None


def test_script_on_the_tiny_model(tiny_dir, tmp_path, capsys, load_script) -> None:
    out = tmp_path / "headroom.json"
    argv = ["--model", str(tiny_dir), "--n", "4", "--out", str(out), "--seed", "1"]
    for kv in ("num_generations=2", "max_completion_length=6", "prompts_per_step=4"):
        argv += ["--set", f"train.{kv}"]
    assert load_script("headroom").main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads(printed.strip().splitlines()[-1])
    assert result == json.loads(out.read_text())
    assert result["split"] == "validation" and result["benchmark"] == "synth"
    assert (result["n"], result["G"], result["temperature"]) == (4, 2, 1.0)
    o = result["overall"]
    assert o["n"] == 4 and o["samples"] == 2
    for key in ("greedy", "pass1", "pass_at_g", "spread", "reward_spread"):
        assert 0.0 <= o[key] <= 1.0
    assert sum(row["n"] for row in result["by_task"].values()) == 4
    assert "pass@G" in printed and "mixed" in printed
