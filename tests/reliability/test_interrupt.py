"""Ctrl-C (SIGINT) in a real `hallucue-mlx` process: during training it finishes the step,
writes a checkpoint and exits 130 saying how to resume; during evaluation finished conditions
stay on disk; rerunning the printed command continues without redoing finished work."""

from __future__ import annotations

import json
import shlex
import signal

import pytest
import yaml
from reliability_helpers import Cli, grid_yaml


def _latest_step(d) -> int:
    p = d / "checkpoints" / "latest"
    try:
        return int(json.loads(p.read_text())["step"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_ctrl_c_in_a_grid_during_training_then_evaluation(tmp_path, tiny_dir, said):
    # one process, whose order of work this test follows (several: test_distributed.py)
    cfg = grid_yaml(tmp_path / "tiny.yaml", tiny_dir, steps=12, processes=1)
    out = tmp_path / "run"
    args = ["run", "--config", str(cfg), "--out", str(out)]

    # ---- Ctrl-C during the first training
    cli = Cli(args, tmp_path, "first")
    train_dir = out / "train" / "none"
    assert cli.wait_for(lambda: _latest_step(train_dir) >= 1), cli.stderr()
    cli.signal(signal.SIGINT)
    assert cli.finish() == 130, cli.stderr()
    msg = " ".join(cli.stderr().split())
    said(
        "Ctrl-C during training (`hallucue-mlx run`)",
        msg[msg.index("stopped") :].replace(str(tmp_path), "<tmp>"),
        "stopped (training 'none' stopped at step",
        "(checkpoint kept)",
        "finished cells and checkpoints are kept in",
        f"Continue with: hallucue-mlx run --config {cfg} --out {out}".replace(
            str(tmp_path), "<tmp>"
        ),
    )
    stopped_at = _latest_step(train_dir)
    assert 1 <= stopped_at < 12 and not (train_dir / "done.json").exists()
    assert (train_dir / "checkpoints" / f"step_{stopped_at:06d}" / "adapters.safetensors").is_file()
    # the base model's evaluations finished before the training: kept
    base = out / "eval" / "base" / "synth-test" / "parts" / "blank.done.json"
    base_stamp = base.stat().st_mtime_ns

    # ---- the printed command continues; Ctrl-C again during an evaluation
    again = shlex.split(msg.split("Continue with: ")[1])[1:]
    assert again == args
    cli = Cli(again, tmp_path, "second")
    part = out / "eval" / "none" / "synth-test" / "parts" / "none.done.json"
    assert cli.wait_for(part.exists), cli.stderr()
    cli.signal(signal.SIGINT)
    assert cli.finish() == 130, cli.stderr()
    msg = " ".join(cli.stderr().split())
    said(
        "Ctrl-C during evaluation (`hallucue-mlx run`)",
        msg[msg.index("stopped") :].replace(str(tmp_path), "<tmp>"),
        "stopped (Ctrl-C)",
        "Continue with: hallucue-mlx run",
    )
    assert "Traceback" not in cli.stderr()
    # the training resumed from its checkpoint (not from step 0) and finished
    steps = [json.loads(x)["step"] for x in (train_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13)) and (train_dir / "done.json").is_file()
    part_stamp = part.stat().st_mtime_ns

    # ---- a third run finishes without redoing what was kept
    cli = Cli(again, tmp_path, "third")
    assert cli.finish() == 0, cli.stderr()
    assert (out / "results.json").is_file() and (out / "report.md").is_file()
    assert base.stat().st_mtime_ns == base_stamp and part.stat().st_mtime_ns == part_stamp


@pytest.mark.slow
def test_ctrl_c_in_train_command_checkpoints_and_prints_the_resume_command(
    tmp_path, tiny_dir, said
):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(
        yaml.safe_dump(
            dict(
                model=str(tiny_dir),
                steps=20,
                n_train=8,
                n_eval=0,
                eval_every=0,
                save_every=50,
                prompts_per_step=2,
                num_generations=2,
                max_completion_length=6,
                warmup_steps=0,
                prompt_template="short",
            )
        )
    )
    out = tmp_path / "t"
    args = ["train", "--config", str(cfg), "--out", str(out)]
    cli = Cli(args, tmp_path, "train1")
    metrics = out / "metrics.jsonl"
    assert cli.wait_for(lambda: metrics.is_file() and metrics.read_text().count("\n") >= 1)
    cli.signal(signal.SIGINT)
    assert cli.finish() == 130, cli.stderr()
    msg = " ".join(cli.stderr().split())
    said(
        "Ctrl-C during training (`hallucue-mlx train`)",
        msg[msg.index("Stopped") :].replace(str(tmp_path), "<tmp>"),
        "checkpoint saved. Resume with: hallucue-mlx train --config",
        "--resume",
    )
    # save_every=50, yet the interrupted step was checkpointed
    step = _latest_step(out)
    assert 1 <= step < 20
    again = shlex.split(msg.split("Resume with: ")[1])[1:]
    assert again == [*args, "--resume"]
    cli = Cli(again, tmp_path, "train2")
    assert cli.finish() == 0, cli.stderr()
    steps = [json.loads(x)["step"] for x in metrics.read_text().splitlines()]
    assert steps == list(range(1, 21)) and (out / "adapter" / "adapters.safetensors").is_file()


@pytest.mark.slow
def test_ctrl_c_in_eval_command_keeps_finished_conditions(tmp_path, tiny_dir, said):
    out = tmp_path / "e"
    args = [
        "eval",
        "--model",
        str(tiny_dir),
        "--n",
        "24",
        "--max-tokens",
        "16",
        "--batch-size",
        "2",
        "--template",
        "short",
        "--out",
        str(out),
    ]
    cli = Cli(args, tmp_path, "eval1")
    part = out / "parts" / "none.done.json"
    assert cli.wait_for(part.exists)
    cli.signal(signal.SIGINT)
    assert cli.finish() == 130, cli.stderr()
    msg = " ".join(cli.stderr().split())
    said(
        "Ctrl-C during evaluation (`hallucue-mlx eval`)",
        msg[msg.index("stopped") :].replace(str(tmp_path), "<tmp>"),
        "finished conditions are kept in",
        "Continue with: hallucue-mlx eval --model",
    )
    assert "Traceback" not in cli.stderr()
    stamp = part.stat().st_mtime_ns
    cli = Cli(args, tmp_path, "eval2")
    assert cli.finish() == 0, cli.stderr()
    assert "resuming: none already done" in " ".join(cli.stdout().split())
    assert part.stat().st_mtime_ns == stamp
    assert len((out / "records.jsonl").read_text().splitlines()) == 24 * 4


def test_a_second_ctrl_c_during_training_stops_at_once():
    """During training the first Ctrl-C only asks to stop after the step (above); a second one
    interrupts at once, and leaving training restores the previous handler."""
    import time

    from hallucue_mlx.train import _StopFlag

    before = signal.getsignal(signal.SIGINT)
    with _StopFlag() as flag:
        signal.raise_signal(signal.SIGINT)
        time.sleep(0.01)  # Python runs the handler here, at the latest
        assert flag.requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.01)
    assert signal.getsignal(signal.SIGINT) is before
