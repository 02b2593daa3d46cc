"""Every lab notebook runs end to end (with the labs' small settings), so the labs cannot rot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ALL_LABS = sorted((Path(__file__).resolve().parent.parent / "labs").glob("*.ipynb"))


def _not_run_here(path: Path) -> bool:
    """A lab that needs hardware this project does not have (a Mac): written, never executed."""
    return bool(json.loads(path.read_text())["metadata"].get("hallucue", {}).get("not_run_here"))


LABS = [p for p in ALL_LABS if not _not_run_here(p)]


def test_there_are_at_least_three_labs():
    assert len(LABS) >= 3, [p.name for p in LABS]


def test_the_mac_lab_is_marked_not_run_and_states_its_cost():
    (mac,) = [p for p in ALL_LABS if _not_run_here(p)]
    text = mac.read_text()
    assert mac.name == "lab4_real_model_on_a_mac.ipynb"
    assert "Not run here" in text and "Expected cost (predicted by `plan`)" in text
    assert "make_plan" in text


@pytest.mark.slow
@pytest.mark.parametrize("path", LABS, ids=[p.stem for p in LABS])
def test_lab_executes(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("HALLUCUE_LAB_SMALL", "1")
    monkeypatch.setenv("HALLUCUE_LAB_OUT", str(tmp_path / "out"))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        # a cell may take minutes on a shared 2-core machine (lab 3's small sweep took 10 min there)
        nb,
        timeout=1200,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    shown = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    assert shown, f"{path.name} displayed no figure"
