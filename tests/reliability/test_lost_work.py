"""No lost work: `run --force` and `train --force` clear only what the project wrote, only after the
config and data are good, and name what they keep; `train` never overwrites a training silently;
and the report's messages say what a folder is and how to go on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reliability_helpers import grid_yaml, picture, row, write_items
from typer.testing import CliRunner

from hallucue_mlx.cli import app


def _cli(args: list[str]):
    return CliRunner().invoke(app, args, env={"COLUMNS": "200"})


def _user_files(d: Path) -> dict[str, bytes]:
    """A figures/ folder, notes and a CSV of the user's own."""
    (d / "figures").mkdir(parents=True, exist_ok=True)
    (d / "figures" / "mine.png").write_bytes(b"\x89PNG my own figure")
    (d / "notes.txt").write_text("my notes")
    (d / "numbers.csv").write_text("a,b\n1,2\n")
    return {
        k: v
        for k, v in _snapshot(d).items()
        if k in ("figures/mine.png", "notes.txt", "numbers.csv")
    }


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def test_run_force_with_a_data_error_deletes_nothing(tmp_path, tiny_dir, said):
    out = tmp_path / "mine"
    _user_files(out)
    (out / "report.md").write_text("my report draft")
    before = _snapshot(out)
    bad = write_items(tmp_path / "bad", [row(1, question="  ")], {"q1.png": picture()})
    cfg = grid_yaml(tmp_path / "c.yaml", tiny_dir)
    r = _cli(
        ["run", "--config", str(cfg), "--out", str(out), "--force", "--quick"]
        + ["--set", "data.train.name=local", "--set", f"data.train.path={bad}"]
    )
    assert r.exit_code == 1, r.output
    said("run --force, data error", _error_line(r.output), "question is empty", "data.train")
    assert _snapshot(out) == before  # the figures, notes and CSV are all still there


def test_run_force_clears_only_the_runs_files_and_names_the_rest(tmp_path, tiny_dir, capsys):
    from hallucue_mlx.config import load_config
    from hallucue_mlx.grid import GridInterrupted, run_grid

    cfg = load_config(str(grid_yaml(tmp_path / "c.yaml", tiny_dir)), [])
    other = load_config(str(grid_yaml(tmp_path / "d.yaml", tiny_dir, steps=2)), [])
    out = tmp_path / "run"
    try:  # a run folder: its manifest, then stopped before the first task
        run_grid(cfg, out, quiet=True, report=False, stop_after_tasks=0)
    except GridInterrupted:
        pass
    (out / "train" / "none").mkdir(parents=True)
    (out / "train" / "none" / "metrics.jsonl").write_text('{"step": 1}\n')
    (out / "eval" / "base").mkdir(parents=True)
    (out / "report.md").write_text("old report")
    user = _user_files(out)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "keep.txt").parent.mkdir()
    (elsewhere / "keep.txt").write_text("linked, not ours")
    (out / "eval" / "linked").symlink_to(elsewhere)
    capsys.readouterr()
    try:
        run_grid(other, out, force=True, report=False, stop_after_tasks=0)
    except GridInterrupted:
        pass
    said = capsys.readouterr().out
    assert not (out / "train").exists() and not (out / "report.md").exists()
    assert json.loads((out / "manifest.json").read_text())["config"]["train"]["steps"] == 2
    assert {k: v for k, v in _snapshot(out).items() if k in user} == user
    assert (elsewhere / "keep.txt").read_text() == "linked, not ours"
    line = next(ln for ln in said.splitlines() if ln.startswith("--force"))
    for name in ("figures/", "notes.txt", "numbers.csv"):
        assert name in line, line


def test_run_force_refuses_train_and_eval_of_a_folder_without_a_manifest(tmp_path, tiny_dir, said):
    out = tmp_path / "notarun"
    (out / "train").mkdir(parents=True)
    (out / "train" / "mine.txt").write_text("not the project's")
    cfg = grid_yaml(tmp_path / "c.yaml", tiny_dir)
    r = _cli(["run", "--config", str(cfg), "--out", str(out), "--force", "--quick"])
    assert r.exit_code == 1, r.output
    said(
        "run --force, train/ without a manifest",
        _error_line(r.output),
        str(out),
        "no manifest.json",
        "--force clears nothing there",
        "new --out",
    )
    assert (out / "train" / "mine.txt").read_text() == "not the project's"
    # without --force the message does not send the user to --force either
    r = _cli(["run", "--config", str(cfg), "--out", str(out), "--quick"])
    msg = _error_line(r.output)
    assert "--force to start over" not in msg and "move train/ and eval/ away" in msg, msg


# ---------------------------------------------------------------- train into an existing folder


def _training_folder(d: Path) -> dict[str, bytes]:
    (d / "adapter").mkdir(parents=True)
    (d / "adapter" / "adapters.safetensors").write_bytes(b"weights")
    (d / "metrics.jsonl").write_text('{"step": 1}\n')
    (d / "rollouts.jsonl").write_text('{"step": 1}\n')
    (d / "train_config.json").write_text('{"steps": 1}')
    (d / "notes.txt").write_text("mine")
    return _snapshot(d)


def test_train_into_an_existing_training_refuses(tmp_path, said):
    out = tmp_path / "t"
    before = _training_folder(out)
    r = _cli(["train", "--out", str(out), "--model", str(tmp_path / "no-model"), "--steps", "1"])
    assert r.exit_code == 1, r.output
    said(
        "train into an existing training",
        _error_line(r.output),
        str(out),
        "already holds a training",
        "--resume",
        "new --out",
        "--force",
    )
    assert _snapshot(out) == before


def test_train_default_out_refuses_a_second_plain_train(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = _training_folder(Path("runs/train"))
    r = _cli(["train", "--model", str(tmp_path / "no-model"), "--steps", "1"])
    assert r.exit_code == 1 and "runs/train already holds a training" in r.output, r.output
    assert _snapshot(Path("runs/train")) == before


@pytest.mark.slow
def test_train_force_clears_only_what_train_wrote(tmp_path):
    out = tmp_path / "t"
    _training_folder(out)
    r = _cli(["train", "--out", str(out), "--force", "--model", str(tmp_path / "no-model")])
    # the model does not exist: the command fails after clearing, as a real start would go on
    assert "--force cleared what train wrote" in r.output and "notes.txt" in r.output, r.output
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "metrics.jsonl").exists() and not (out / "adapter").exists()


# ---------------------------------------------------------------- messages that must not mislead


def test_report_on_a_file_says_it_is_a_file(tmp_path, said):
    f = tmp_path / "results.json"
    f.write_text("{}")
    r = _cli(["report", str(f)])
    assert r.exit_code == 1
    msg = said("report FILE", _error_line(r.output), str(f), "is a file", str(tmp_path))
    assert "does not exist" not in msg


def test_report_on_torn_records_says_they_are_incomplete(tmp_path, said):
    d = tmp_path / "run" / "eval" / "base" / "synth-test"
    d.mkdir(parents=True)
    (d / "records.jsonl").write_text('{"id": "q1", "corruption": "no')
    r = _cli(["report", str(tmp_path / "run")])
    assert r.exit_code == 1
    msg = said(
        "report on torn records",
        _error_line(r.output),
        "records are incomplete",
        "records.jsonl",
        "unreadable line",
        "hallucue-mlx run --out",
    )
    assert "not a run folder" not in msg


def test_reliability_doc_describes_the_reward_function_key():
    from hallucue_mlx.config import TrainConfig, settings

    assert "reward_function" in [s.name for s in settings(TrainConfig)]
    doc = " ".join((Path(__file__).parents[2] / "docs" / "reliability.md").read_text().split())
    assert "has no `reward_function` field" not in doc and "no run config key for it" not in doc
    assert "`train.reward_function:" in doc and "imported as the config is built" in doc
