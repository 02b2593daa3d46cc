"""The command line: every command is listed with a one-line description and has its own help."""

import pytest
from typer.testing import CliRunner

from hallucue_mlx.cli import app

COMMANDS = [
    "doctor",
    "plan",
    "run",
    "sweep",
    "train",
    "eval",
    "corrupt",
    "report",
    "import",
    "data",
    "model",
    "export",
]


def test_top_level_help_lists_every_command_with_a_description():
    # rich reads the width from COLUMNS (terminal_width alone left it at 80 columns, so a wrapped
    # description line could be taken for a command's line)
    out = CliRunner().invoke(app, ["--help"], terminal_width=200, env={"COLUMNS": "200"})
    assert out.exit_code == 0
    for name in COMMANDS:
        # the command's own row: its name first (another command's help may contain the word)
        line = next(
            (ln for ln in out.output.splitlines() if ln.strip(" │").startswith(f"{name} ")), None
        )
        assert line is not None, f"{name} missing from --help"
        assert len(line.split(name, 1)[1].strip(" │")) > 10, f"{name} has no description"


@pytest.mark.parametrize(
    "argv",
    [[c] for c in COMMANDS if c not in ("data", "model", "export")]
    + [["data", "list"], ["data", "prepare"], ["model", "path"], ["model", "build-tiny"]]
    + [["export", "easyr1"]],
)
def test_each_command_has_help(argv):
    out = CliRunner().invoke(app, [*argv, "--help"], terminal_width=200)
    assert out.exit_code == 0, out.output
    assert "Usage:" in out.output


def test_model_path_points_at_the_shipped_model():
    out = CliRunner().invoke(app, ["model", "path"])
    assert out.exit_code == 0
    from pathlib import Path

    assert (Path(out.output.strip()) / "config.json").is_file()
