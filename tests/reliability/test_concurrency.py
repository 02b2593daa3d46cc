"""One writer per folder: `run`, `train` and `eval` hold their output folder's lock; a second
command on the same folder refuses, naming the holder's pid; a lock left by a dead process is
taken over with a note."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from reliability_helpers import grid_yaml
from typer.testing import CliRunner

from hallucue_mlx.cli import app

LOCK = ".hallucue.lock"


def _cli(args: list[str]):
    return CliRunner().invoke(app, args, env={"COLUMNS": "200"})


@pytest.fixture
def holder(tmp_path):
    """Another process holding tmp_path/busy's lock, as `hallucue-mlx run` would."""
    out = tmp_path / "busy"
    code = textwrap.dedent(f"""
        import sys, time
        from hallucue_mlx.runfolder import folder_lock
        with folder_lock({str(out)!r}, "hallucue-mlx run --out busy"):
            print("ready", flush=True)
            time.sleep(120)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    yield out, p.pid
    p.kill()
    p.wait()


def _error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def test_a_second_writer_is_refused_naming_the_holder(holder, tmp_path, tiny_dir, said):
    out, pid = holder
    cfg = grid_yaml(tmp_path / "c.yaml", tiny_dir)
    commands = {
        "run": ["run", "--config", str(cfg), "--out", str(out), "--quick"],
        "train": ["train", "--out", str(out), "--model", str(tiny_dir), "--steps", "1"],
        "eval": ["eval", "--model", str(tiny_dir), "--out", str(out), "--n", "1"],
    }
    for name, args in commands.items():
        r = _cli(args)
        assert r.exit_code == 1, (name, r.output)
        said(
            f"{name} into a folder another process writes",
            _error_line(r.output),
            str(out),
            f"in use by process {pid}",
            "hallucue-mlx run --out busy",
            "another --out",
        )
    assert sorted(p.name for p in out.iterdir()) == [LOCK]  # nothing written beside the lock


@pytest.mark.slow
def test_a_stale_lock_is_taken_over_with_a_note(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "stale"
    out.mkdir()
    (out / LOCK).write_text(f'{{"pid": {dead.pid}, "command": "hallucue-mlx train --out stale"}}')
    r = _cli(["train", "--out", str(out), "--model", str(tmp_path / "no-model"), "--steps", "1"])
    assert f"took over the lock of {out} left by process {dead.pid}" in r.output, r.output
    assert "no longer running" in r.output
    assert not (out / LOCK).exists()  # released when the command ended


def test_the_lock_is_released_and_taken_again(tmp_path):
    from hallucue_mlx.runfolder import FolderBusy, folder_lock

    out = tmp_path / "again"
    with folder_lock(out, "first") as path:
        assert path.is_file() and '"command": "first"' in path.read_text()
    assert out.exists() is False  # the lock made the folder, and left it empty: removed
    out.mkdir()
    with folder_lock(out, "second"):
        with pytest.raises(FolderBusy, match="in use by process"):
            # a second descriptor in the same process conflicts like a second process would
            with folder_lock(out, "third"):
                pass
    assert not (out / LOCK).exists() and out.is_dir()


def test_a_lock_on_a_file_path_says_so(tmp_path):
    from hallucue_mlx.runfolder import FolderBusy, folder_lock

    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(FolderBusy, match="is a file, not a folder"):
        with folder_lock(Path(f), "x"):
            pass
