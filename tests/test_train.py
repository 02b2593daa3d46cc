"""The training loop: resume gives the same adapter as an uninterrupted run, non-finite updates are
skipped then abort, metrics.jsonl has TRL's names, config parsing, the CLI command."""

from __future__ import annotations

import json
import os

import mlx.core as mx
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import hallucue_mlx.rewards as rewards  # noqa: E402
from hallucue_mlx.config import ConfigError, TrainConfig, apply_overrides, build  # noqa: E402
from hallucue_mlx.runfolder import latest_checkpoint  # noqa: E402
from hallucue_mlx.train import (  # noqa: E402
    load_items,
    make_optimizer,
    step_indices,
    trace_metrics,
    train,
    updated_groups,
)


def _fake_score(response, item, cfg=None):
    """A reward with spread inside every group (a random tiny model never answers right)."""
    acc = float(sum(response.encode()) % 3 == 0)
    fmt = float(len(response) % 2 == 0)
    return rewards.Reward(
        0.9 * acc + 0.1 * fmt, acc, fmt, rewards.Grade(None, bool(acc), bool(fmt))
    )


def _cfg(**kw):
    base = dict(
        steps=4,
        n_train=8,
        prompts_per_step=2,
        num_generations=3,
        max_completion_length=8,
        eval_every=0,
        save_every=2,
        num_iterations=2,
        beta=0.01,
        learning_rate=1e-2,
        warmup_steps=1,
        prompt_template="short",
        corruption="blank",
        corruption_ratio=0.5,
    )
    base.update(kw)
    return build(TrainConfig, base, "train")


def _adapter(path):
    return {k: np.array(v) for k, v in mx.load(str(path / "adapters.safetensors")).items()}


def _step_lines(path):
    drop = {"rollout_time", "update_time", "step_time", "rollout_tokens_per_s", "peak_memory_gb"}
    lines = [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in d.items() if k not in drop} for d in lines if "event" not in d]


@pytest.mark.slow
def test_resume_gives_the_same_adapter(tiny_dir, tmp_path):
    cfg = _cfg()
    straight = train(cfg, tiny_dir, tmp_path / "a", quiet=True, reward_fn=_fake_score)
    assert straight.steps_done == 4 and straight.adapter_dir is not None
    first = train(cfg, tiny_dir, tmp_path / "b", quiet=True, stop_after=2, reward_fn=_fake_score)
    assert first.interrupted and first.steps_done == 2 and first.adapter_dir is None
    assert latest_checkpoint(tmp_path / "b").name == "step_000002"
    resumed = train(cfg, tiny_dir, tmp_path / "b", resume=True, quiet=True, reward_fn=_fake_score)
    assert resumed.steps_done == 4
    a, b = _adapter(tmp_path / "a" / "adapter"), _adapter(tmp_path / "b" / "adapter")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert max(np.abs(v).max() for k, v in a.items() if k.endswith("lora_b")) > 0  # it trained
    la, lb = _step_lines(tmp_path / "a"), _step_lines(tmp_path / "b")
    assert [d["step"] for d in lb] == [1, 2, 3, 4]
    assert la == lb
    rec = la[0]
    for name in (
        "reward",
        "reward_std",
        "frac_reward_zero_std",
        "kl",
        "entropy",
        "accuracy",
        "format",
        "clip_ratio/low_mean",
        "clip_ratio/high_mean",
        "clip_ratio/region_mean",
        "completions/mean_length",
        "completions/max_length",
        "completions/clipped_ratio",
        "reward/accuracy/mean",
        "reward/format/mean",
        "grad_norm",
        "learning_rate",
    ):
        assert name in rec, name
    assert rec["kl"] == 0.0  # step 0: policy = reference
    assert 0 < rec["corrupted_fraction"] < 1 or rec["corrupted_fraction"] in (0.0, 0.5, 1.0)
    rollouts = (tmp_path / "a" / "rollouts.jsonl").read_text().splitlines()
    assert len(rollouts) == 4 * 2 * 3


def test_max_minutes_ends_the_run_with_an_adapter(tiny_dir, tmp_path):
    cfg = _cfg(max_minutes=1e-6, num_iterations=1)
    res = train(cfg, tiny_dir, tmp_path / "t", quiet=True, reward_fn=_fake_score)
    assert res.time_up and res.steps_done == 1 and res.adapter_dir is not None
    assert latest_checkpoint(tmp_path / "t").name == "step_000001"


def test_data_order_is_a_seeded_permutation_per_epoch():
    seen = [i for s in range(4) for i in step_indices(s, 2, 8, seed=3)]
    assert sorted(seen) == list(range(8))  # one epoch covers every item once
    assert seen != list(range(8))
    assert step_indices(5, 2, 8, 3) == step_indices(5, 2, 8, 3)


def test_config_parsing():
    sets = ["beta=0.05", "lora_targets=q_proj,v_proj", "epsilon_high=none", "grad_checkpoint=true"]
    cfg = build(TrainConfig, apply_overrides({}, [*sets, "steps=7"], defaults={}), "train")
    assert cfg.num_generations == 5 and cfg.temperature == 0.7  # the paper's settings
    assert (
        cfg.beta == 0.05 and cfg.lora_targets == ["q_proj", "v_proj"] and cfg.epsilon_high is None
    )
    assert cfg.grad_checkpoint is True and cfg.steps == 7
    assert TrainConfig().beta == 0.01  # the paper's value is the default
    with pytest.raises(ConfigError, match="unknown key 'train.betta'"):
        build(TrainConfig, {"betta": 1}, "train")
    with pytest.raises(ConfigError, match="loss_type"):
        build(TrainConfig, {"loss_type": "ppo"}, "train")


def test_cli_train(tiny_dir, tmp_path):
    from typer.testing import CliRunner

    from hallucue_mlx.cli import app

    out = tmp_path / "cli"
    args = [
        "train",
        "--model",
        str(tiny_dir),
        "--out",
        str(out),
        "--steps",
        "1",
        "--corruption",
        "blank",
        "--ratio",
        "1.0",
        "--set",
        "n_train=4",
        "--set",
        "prompts_per_step=2",
        "--set",
        "num_generations=2",
        "--set",
        "max_completion_length=6",
        "--set",
        "eval_every=0",
        "--set",
        "prompt_template=short",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (out / "adapter" / "adapters.safetensors").is_file()
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["corruption"] == "blank" and cfg["steps"] == 1 and cfg["num_generations"] == 2


@pytest.mark.slow
def test_reward_curve_rises_on_a_learnable_reward(tiny_dir, tmp_path):
    """End to end, through the reward_function key: rewarding spaces in the text, 80 GRPO steps
    lift the mean reward several-fold."""
    cfg = _cfg(
        steps=80,
        n_train=64,
        num_generations=8,
        max_completion_length=16,
        temperature=1.0,
        beta=0.0,
        learning_rate=6e-3,  # bias-corrected AdamW: the early steps are lr, not 3-6x lr
        warmup_steps=2,
        num_iterations=1,
        save_every=1000,
        corruption="none",
        reward_function="user_reward:reward_spaces",
    )
    train(cfg, tiny_dir, tmp_path / "toy", quiet=True)
    r = [d["reward"] for d in _step_lines(tmp_path / "toy")]
    assert np.mean(r[-5:]) > 2 * np.mean(r[:5]) and np.mean(r[-5:]) > 0.15


def test_a_bad_reward_function_fails_before_the_model_loads(tmp_path):
    with pytest.raises(ValueError, match="no_such_module"):
        train(_cfg(reward_function="no_such_module:fn"), "no-such-model-dir", tmp_path / "x")
    with pytest.raises(ValueError, match="has no callable 'nope'"):
        build(TrainConfig, {"reward_function": "user_reward:nope"}, "train")


def test_updated_groups_drop_only_groups_without_reward_spread():
    rewards = [1, 1, 1, 0, 1, 0, 0.1, 0.1, 0.1]  # groups of 3: equal, spread, equal
    assert updated_groups(rewards, 3, drop_zero_std=False) == [0, 1, 2]
    assert updated_groups(rewards, 3, drop_zero_std=True) == [1]
    # nothing to learn from anywhere: keep every group (the KL term still applies)
    assert updated_groups([0.0] * 6, 3, drop_zero_std=True) == [0, 1]


def test_dropping_zero_std_groups_updates_on_the_rest(tiny_dir, tmp_path):
    cfg = _cfg(steps=3, prompts_per_step=3, drop_zero_std_groups=True, corruption="none")
    train(cfg, tiny_dir, tmp_path / "d", quiet=True, reward_fn=_fake_score)
    lines = _step_lines(tmp_path / "d")
    assert len(lines) == 3
    for d in lines:
        spread = round(3 * (1 - d["frac_reward_zero_std"]))
        assert d["groups_updated"] == (spread or 3)


def test_first_update_moves_each_weight_by_the_learning_rate():
    """AdamW with bias correction (as PyTorch/TRL): the first step is lr * sign(grad), not the
    ~3x larger step of MLX's uncorrected default that derailed GRPO on a peaked model."""
    cfg = build(
        TrainConfig, dict(learning_rate=1e-3, warmup_steps=0, weight_decay=0.0, steps=10), "train"
    )
    opt = make_optimizer(cfg)
    w = {"w": mx.zeros((64,))}
    g = {"w": mx.random.normal((64,), key=mx.random.key(0)) * 1e-4}
    new = opt.apply_gradients(g, w)
    step = np.abs(np.array(new["w"]))
    assert np.allclose(step, 1e-3, rtol=1e-2), step[:4]  # eps 1e-8 shaves a little


def test_evaluation_is_passed_in_and_logged_under_the_condition_names(tiny_dir, tmp_path):
    from hallucue_mlx.data.synth import load_synth

    seen = []

    def fake_eval(model, processor, items, conditions):
        seen.append((len(items), list(conditions)))
        return {c: {"accuracy": 0.5, "format": 1.0, "reward": 0.55} for c in conditions}

    cfg = _cfg(steps=2, eval_every=1, n_eval=2, num_iterations=1, corruption="blank")
    held = load_synth("test", n=3, seed=0)
    res = train(
        cfg,
        tiny_dir,
        tmp_path / "e",
        quiet=True,
        reward_fn=_fake_score,
        evaluate_fn=fake_eval,
        eval_items=held,
    )
    assert seen == [(2, ["none", "blank"])] * 3  # steps 0, 1 and 2, on the first n_eval items
    assert [e["step"] for e in res.evals] == [0, 1, 2]
    assert res.evals[0]["eval/none/accuracy"] == 0.5 and res.evals[0]["eval/blank/reward"] == 0.55
    logged = [json.loads(x) for x in (tmp_path / "e" / "metrics.jsonl").read_text().splitlines()]
    assert [d for d in logged if "event" in d] == res.evals


def test_rollout_trace_metrics_are_logged_per_step(tmp_path):
    """A short training of the embedded model on synth: each step's line carries how its
    completions (all of them, before the group filter) read the image and computed, as shares in
    [0, 1] that the rollouts log gives again, and TRL's frac_reward_zero_std."""
    from hallucue_mlx.trace import trace

    cfg = _cfg(
        model="hallucue-tiny",
        steps=2,
        prompts_per_step=4,
        num_generations=2,
        max_completion_length=48,
        num_iterations=1,
        corruption="none",
        prompt_template="auto",
    )
    train(cfg, None, tmp_path / "t", quiet=True)
    lines = _step_lines(tmp_path / "t")
    items = {it.id: it for it in load_items("synth", "train", 8, cfg.seed)}
    rollouts = [json.loads(x) for x in (tmp_path / "t" / "rollouts.jsonl").read_text().splitlines()]
    for key in ("trace/read_accuracy", "trace/compute_accuracy", "frac_reward_zero_std"):
        values = [d[key] for d in lines if key in d]
        assert values and all(0 <= v <= 1 for v in values), key
    for d in lines:
        traces = [trace(r["text"], items[r["item_id"]]) for r in rollouts if r["step"] == d["step"]]
        assert len(traces) == 8
        reads = [t.read for t in traces if t.read is not None]
        if reads:
            assert d["trace/read_accuracy"] == pytest.approx(sum(reads) / len(reads))
        else:
            assert "trace/read_accuracy" not in d


def test_trace_metrics_leave_out_what_nothing_had():
    from hallucue_mlx.data.synth import load_synth
    from hallucue_mlx.rollout import Episode

    item = next(it for it in load_synth("test", n=50, seed=0) if it.task == "digit")
    digit = item.meta["facts"]["digit"]

    def episode(text, group=0):
        return Episode(item.id, group, [], [], [], text, False)

    right, wrong = (
        f"<think>The digit is {digit}.</think>",
        f"<think>The digit is {digit + 1}.</think>",
    )
    got = trace_metrics([episode(right), episode(wrong), episode("no think")], [item])
    assert got["trace/read_accuracy"] == 0.5
    if item.meta["facts"].get("addends"):  # a chain: every completion is scored for it
        assert got["trace/compute_accuracy"] == 0.0
    real = item.with_(benchmark="mathvista", meta={})
    assert trace_metrics([episode(right)], [real]) == {}  # no facts: no key
    assert trace_metrics([episode(right)], []) == {}
