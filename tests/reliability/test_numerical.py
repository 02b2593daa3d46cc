"""A NaN or infinite loss or gradient skips that update (logged in metrics.jsonl and on the
console), and max_bad_steps of them in a row stop the run with the last good checkpoint intact,
from which a rerun resumes."""

from __future__ import annotations

import importlib
import json

import mlx.core as mx
import pytest
from reliability_helpers import train_tiny

from hallucue_mlx.config import TrainConfig, build
from hallucue_mlx.data.synth import load_synth
from hallucue_mlx.models.load import load_model
from hallucue_mlx.runfolder import latest_checkpoint
from hallucue_mlx.train import TrainingDiverged

# the module (on the package, hallucue_mlx.train is the API function train)
train_mod = importlib.import_module("hallucue_mlx.train")


def _inject_nan(monkeypatch, bad_calls: set[int] | None = None, from_call: int | None = None):
    """policy_loss returns NaN (so its gradient is NaN too) on the chosen 1-based calls."""
    real = train_mod.policy_loss
    calls = [0]

    def loss(*args, **kwargs):
        calls[0] += 1
        value, metrics = real(*args, **kwargs)
        n = calls[0]
        if (bad_calls and n in bad_calls) or (from_call is not None and n >= from_call):
            value = value * mx.array(float("nan"))
        return value, metrics

    monkeypatch.setattr(train_mod, "policy_loss", loss)


def _weights(ckpt) -> dict:
    return {k: v for k, v in mx.load(str(ckpt / "adapters.safetensors")).items()}


def _finite(w: dict) -> bool:
    return all(bool(mx.isfinite(v).all().item()) for v in w.values())


def _steps(out) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_nan_update_is_skipped_and_logged(tmp_path, tiny_dir, monkeypatch):
    _inject_nan(monkeypatch, bad_calls={2})
    out = tmp_path / "run"
    result = train_tiny(tiny_dir, out, steps=3, keep_checkpoints=5)
    assert result.steps_done == 3 and result.adapter_dir is not None
    logged = _steps(out)
    assert [r["skipped_updates"] for r in logged] == [0, 1, 0]
    assert logged[1]["warning"] == "1 non-finite update(s) skipped"
    ck = out / "checkpoints"
    one, two = _weights(ck / "step_000001"), _weights(ck / "step_000002")
    # had the NaN update been applied, every LoRA weight would be NaN now
    assert _finite(two) and all(bool(mx.array_equal(one[k], two[k]).item()) for k in one)
    assert _finite(_weights(result.adapter_dir))


def test_too_many_bad_updates_in_a_row_stop_with_the_checkpoint_intact(
    tmp_path, tiny_dir, monkeypatch, said
):
    _inject_nan(monkeypatch, from_call=2)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as e:
        train_tiny(tiny_dir, out, steps=5, max_bad_steps=2)
    last = latest_checkpoint(out)
    said(
        "NaN loss in max_bad_steps=2 updates in a row",
        str(e.value).replace(str(tmp_path), "<tmp>"),
        "2 non-finite updates in a row at step 3",
        str(last).replace(str(tmp_path), "<tmp>"),
        "Lower learning_rate",
    )
    logged = _steps(out)  # the stopping step is not logged
    assert [r["skipped_updates"] for r in logged] == [0, 1] and "warning" in logged[1]
    # the last checkpoint (step 2: its update was skipped) holds finite weights
    assert last is not None and last.name == "step_000002" and _finite(_weights(last))
    assert not (out / "adapter").exists()
    # with the fault gone, a rerun resumes from that checkpoint and finishes
    monkeypatch.undo()
    result = train_mod.train(
        build(TrainConfig, json.loads((out / "train_config.json").read_text()), "train"),
        out_dir=out,
        resume=True,
        quiet=True,
        model_and_processor=load_model(str(tiny_dir)),
        items=load_synth("train", n=4),
    )
    assert result.steps_done == 5 and _finite(_weights(result.adapter_dir))
    assert [r["step"] for r in _steps(out)] == [1, 2, 3, 4, 5]


def test_the_skip_is_shown_on_the_console(tmp_path, tiny_dir, monkeypatch, capsys):
    _inject_nan(monkeypatch, bad_calls={1})
    train_tiny(tiny_dir, tmp_path / "run", steps=1, quiet=False)
    err = " ".join(capsys.readouterr().err.split())
    assert "step 1: 1 non-finite update(s) skipped" in err and "stops at 5" in err


NAN_REWARD = "def reward(response, item):\n    return float('nan')\n"


def test_nan_rewards_skip_every_update_then_stop(tmp_path, tiny_dir, monkeypatch):
    """A reward function returning NaN poisons the advantages, so the loss: each update is skipped
    and logged, and max_bad_steps of them in a row stop the run."""
    (tmp_path / "hallucue_test_nan_reward.py").write_text(NAN_REWARD)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="3 non-finite updates in a row at step 3"):
        train_tiny(
            tiny_dir,
            out,
            steps=5,
            max_bad_steps=3,
            reward_function="hallucue_test_nan_reward:reward",
        )
    logged = _steps(out)
    assert [r["skipped_updates"] for r in logged] == [1, 1]
    assert all(r["warning"] == "1 non-finite update(s) skipped" for r in logged)
