"""The random-reward control: rewards.random_reward (a seeded coin for the accuracy part, the real
format check), the grid key grid.random_reward_control that adds the model random_reward (clean
GRPO's recipe with that reward), and its rows in results.json, the run report and a seed sweep's
report."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fake_run import make_fake_run  # noqa: E402

import hallucue_mlx.rewards as rewards  # noqa: E402
from hallucue_mlx import runfolder  # noqa: E402
from hallucue_mlx.config import (  # noqa: E402
    RANDOM_REWARD_FUNCTION,
    ConfigError,
    config_hash,
    load_config,
    train_config_for,
)
from hallucue_mlx.data.synth import load_synth  # noqa: E402
from hallucue_mlx.distributed import World  # noqa: E402
from hallucue_mlx.grid import BASE, cells, models, owners, plan, rank_tasks, run_grid  # noqa: E402
from hallucue_mlx.plan import run_units  # noqa: E402
from hallucue_mlx.report import load_run, write_report  # noqa: E402
from hallucue_mlx.report.labels import model_label  # noqa: E402
from hallucue_mlx.report.sweep import write_sweep_report  # noqa: E402

CONTROL = runfolder.RANDOM_REWARD
LABEL = "GRPO, random reward"
ON = "grid.random_reward_control=true"


# ---------------------------------------------------------------- the reward


@pytest.fixture(scope="module")
def items():
    """Synth items with number answers: graded in this process (no grading worker to start)."""
    return [it for it in load_synth("test", n=200, seed=0) if it.answer_kind == "number"][:40]


def _response(answer: str, formatted: bool = True) -> str:
    return f"<think>I look.</think> \\boxed{{{answer}}}" if formatted else f"the answer is {answer}"


def _coin(r: rewards.Reward) -> int:
    """The coin behind a random reward: total = 0.9 * coin + 0.1 * format."""
    coin = (r.total - 0.1 * r.format) / 0.9
    assert coin == pytest.approx(round(coin))
    return round(coin)


def test_the_coin_is_fair_and_ignores_correctness(items):
    rewards.reset_random_reward(0)
    coins: dict[bool, list[int]] = {True: [], False: []}
    for _ in range(25):
        for it in items:
            for answer in (it.answer, str(int(it.answer) + 1)):  # right, then wrong
                r = rewards.random_reward(_response(answer), it)
                assert r.grade.correct == (answer == it.answer)
                assert r.accuracy == float(r.grade.correct)  # the true accuracy, for the logs
                coins[r.grade.correct].append(_coin(r))
    for correct, got in coins.items():
        assert len(got) == 1000
        assert 0.45 < sum(got) / len(got) < 0.55, (correct, sum(got))
    # independent of correctness: the coin agrees with it about half the time
    agree = sum(c == 1 for c in coins[True]) + sum(c == 0 for c in coins[False])
    assert 0.45 < agree / 2000 < 0.55


def test_the_coins_are_seeded_and_repeat_after_a_reset(items):
    def draw(seed: int) -> list[int]:
        rewards.reset_random_reward(seed)
        # the same response to the same item many times: the call counter changes the coin
        return [
            _coin(rewards.random_reward(_response("3"), it)) for it in items[:4] for _ in range(30)
        ]

    first = draw(7)
    assert draw(7) == first  # the same run draws the same coins
    assert draw(8) != first  # another seed, other coins
    per_item = [first[k : k + 30] for k in range(0, len(first), 30)]
    assert all(0 < sum(c) < 30 for c in per_item)  # repeats of one response still vary


def test_the_format_part_is_the_real_check(items):
    rewards.reset_random_reward(0)
    it = items[0]
    totals = {True: set(), False: set()}
    for k in range(60):
        for formatted in (True, False):
            r = rewards.random_reward(_response(it.answer, formatted) + " " * (k % 3), it)
            assert r.format == float(formatted) == float(r.grade.format_ok)
            totals[formatted].add(round(r.total, 6))
    assert totals[True] == {0.1, 1.0} and totals[False] == {0.0, 0.9}


def test_it_is_selected_by_the_reward_function_key(items):
    assert rewards.load_reward_function(RANDOM_REWARD_FUNCTION) is rewards.random_reward
    cfg = load_config(None, [f"train.reward_function={RANDOM_REWARD_FUNCTION}"])
    assert cfg.train.reward_function == RANDOM_REWARD_FUNCTION
    rewards.reset_random_reward(1)
    got = rewards.score(
        _response("5"), items[0], rewards.RewardConfig(function=RANDOM_REWARD_FUNCTION)
    )
    rewards.reset_random_reward(1)
    assert got == rewards.random_reward(_response("5"), items[0])


# ---------------------------------------------------------------- the config and the grid


def test_the_key_is_documented_checked_and_off_by_default():
    cfg = load_config(None)
    assert cfg.grid.random_reward_control is False
    from hallucue_mlx.config import describe, dump_yaml

    assert "random reward" in describe()["grid.random_reward_control"]
    assert "random_reward_control: false" in dump_yaml(cfg)
    with pytest.raises(ConfigError, match="grid.random_reward_control"):
        load_config(None, ["grid.random_reward_control=3"])
    # off: the hash of folders made before the key existed; on: another recipe
    assert config_hash(load_config(None, ["grid.random_reward_control=false"])) == config_hash(cfg)
    assert config_hash(load_config(None, [ON])) != config_hash(cfg)


def test_the_control_alone_is_something_to_run():
    nothing = ["grid.train_conditions=[]", "grid.include_base=false"]
    with pytest.raises(ConfigError, match="nothing to run"):
        load_config(None, nothing)
    cfg = load_config(None, [*nothing, ON])
    assert models(cfg) == [CONTROL]
    with pytest.raises(ConfigError, match="random_reward_control"):
        load_config(None, ["grid.train_conditions=[]", ON, "model.adapter=some/adapter"])


def test_the_control_trains_like_clean_grpo_with_the_random_reward():
    cfg = load_config(None, [ON, "train.reward_function=user_reward:reward_spaces"])
    clean, control = train_config_for(cfg, "none"), train_config_for(cfg, CONTROL)
    assert control.reward_function == RANDOM_REWARD_FUNCTION
    assert control.corruption == "none" and control.corruption_ratio == 1.0
    assert replace(control, reward_function=clean.reward_function) == clean
    # grid.ratio does not reach it: a ratio sweep shares it like clean GRPO
    half = load_config(None, [ON, "grid.ratio=0.5"])
    assert train_config_for(half, CONTROL) == train_config_for(load_config(None, [ON]), CONTROL)


def test_models_cells_and_plan_include_it_only_when_enabled():
    off = load_config(None)
    on = load_config(None, [ON])
    assert CONTROL not in models(off) and {c.train for c in cells(off)} == set(models(off))
    assert models(on) == [*models(off), CONTROL]  # after the corruption models
    extra = [c for c in cells(on) if c.train == CONTROL]
    assert len(extra) == 2 * 4 and {c.eval for c in extra} == set(on.grid.eval_conditions)
    assert [t.name for t in plan(on)][-3:] == [
        f"train {CONTROL}",
        f"eval {CONTROL} on synth-test",
        f"eval {CONTROL} on synth-train",
    ]
    # `plan` counts its training (and its periodic clean evaluation)
    u_off, u_on = run_units(off), run_units(on)
    assert u_on["trainings"] == u_off["trainings"] + 1 and u_on["models"] == u_off["models"] + 1
    assert u_on["steps"] == u_off["steps"] + on.train.steps
    ratios = load_config(None, [ON, "grid.ratios=[0.5,1.0]"])
    assert run_units(ratios)["trainings"] == 1 + 2 * 3 + 1  # shared across ratios


def test_several_processes_deal_it_like_any_model():
    cfg = load_config(None, [ON, "grid.train_conditions=[none,blank]"])
    own = owners(cfg, 2)
    assert set(own) == {BASE, "none", "blank", CONTROL}
    shares = [rank_tasks(cfg, World(r, 2), "cells") for r in range(2)]
    assert sorted(t.name for s in shares for t in s) == sorted(t.name for t in plan(cfg))
    assert [t for t in shares[own[CONTROL]] if t.model == CONTROL]
    data = [t.name for t in rank_tasks(cfg, World(1, 2), "data")]
    assert data == ["train none", "train blank", f"train {CONTROL}"]


def test_the_label_and_the_filter_mark():
    assert model_label(CONTROL) == LABEL
    assert model_label(CONTROL, filtered=True) == LABEL + "†"


# ---------------------------------------------------------------- the report


@pytest.fixture(scope="module")
def fake_control_run(tmp_path_factory) -> tuple[Path, str]:
    run = make_fake_run(
        tmp_path_factory.mktemp("control") / "run", n_test={"synth": 200}, control=True
    )
    return run, write_report(run).read_text()


def test_the_report_names_the_control_and_compares_it(fake_control_run):
    run, md = fake_control_run
    data = load_run(run)
    assert data.train_conditions[-1] == CONTROL and data.controls == [CONTROL]
    assert CONTROL not in data.corruption_trained
    assert f"- Control: {LABEL} (`{CONTROL}`)" in md
    train_line = next(ln for ln in md.splitlines() if ln.startswith("- Train conditions:"))
    assert CONTROL not in train_line
    # paired against base like every model
    assert f"{LABEL}'s clean test accuracy on synth (49.0% vs 48.0% for base) is within" in md
    # clean GRPO (58%) above the control (49%): the reward signal's doing
    assert "Clean GRPO scored above its random-reward control (GRPO, random reward)" in md
    # corruption findings leave it out
    assert f"{LABEL} kept" not in md and f"{LABEL} scored" not in md
    rows = list(csv.DictReader(open(run / "tables" / "table1.csv")))
    assert any(r["train_condition"] == CONTROL for r in rows)


def test_a_seed_sweep_with_the_control(tmp_path):
    for seed in (0, 1):
        make_fake_run(tmp_path / f"seed={seed}", n_test={"synth": 100}, control=True)
    sweep = {"kind": "sweep", "key": "seed", "values": [0, 1], "runs": ["seed=0", "seed=1"]}
    (tmp_path / runfolder.SWEEP).write_text(json.dumps(sweep))
    md = write_sweep_report(tmp_path).read_text()
    seeds = {r["train_condition"]: r for r in csv.DictReader(open(tmp_path / "tables/seeds.csv"))}
    assert seeds[CONTROL]["label"] == LABEL and seeds[CONTROL]["delta_vs_base"] != ""
    versus = list(csv.DictReader(open(tmp_path / "tables/seeds_vs_clean.csv")))
    mine = [r for r in versus if r["train_condition"] == CONTROL]
    assert [r["eval"] for r in mine] == ["none"]  # clean inputs only: it has no corruption
    assert float(mine[0]["delta"]) == pytest.approx(-0.09, abs=1e-6)  # 49% vs clean GRPO's 58%
    assert f"| {LABEL} |" in md and "— (no corruption)" in md


# ---------------------------------------------------------------- end to end


@pytest.mark.slow
def test_a_tiny_grid_with_the_control(tiny_dir, tmp_path):
    cfg = load_config(
        None,
        [
            f"model.id={tiny_dir}",
            "train.max_completion_length=6",
            "eval.max_tokens=6",
            "grid.train_conditions=[none]",
            "grid.eval_conditions=[none,blank]",
            ON,
        ],
    )
    out = tmp_path / "run"
    path = run_grid(cfg, out, quick=True, quiet=True)
    res = json.loads(path.read_text())
    assert res["models"] == [BASE, "none", CONTROL]
    # the default recipe drops zero-spread groups: the control's label carries the mark too
    assert res["labels"][CONTROL] == LABEL + "†" and res["train_conditions"] == ["none"]
    rows = [c for c in res["cells"] if c["train"] == CONTROL]
    assert {(c["eval"], c["split"]) for c in rows} == {
        (e, s) for e in ("none", "blank") for s in ("test", "train")
    }
    assert res["training"][CONTROL]["steps"] == 2
    tcfg = json.loads((out / "train" / CONTROL / "train_config.json").read_text())
    assert tcfg["reward_function"] == RANDOM_REWARD_FUNCTION and tcfg["corruption"] == "none"
    clean = json.loads((out / "train" / "none" / "train_config.json").read_text())
    assert {k for k in tcfg if tcfg[k] != clean[k]} == {"reward_function"}
    md = (out / "report.md").read_text()
    assert LABEL in md and "random-reward control" in md
    # a rerun keeps the finished control (resumes like any model)
    done = out / "train" / CONTROL / runfolder.DONE
    stamp = done.stat().st_mtime_ns
    again = json.loads(run_grid(cfg, out, quick=True, quiet=True, report=False).read_text())
    assert done.stat().st_mtime_ns == stamp
    assert {k: v for k, v in again.items() if k != "timing"} == {
        k: v for k, v in res.items() if k != "timing"
    }
