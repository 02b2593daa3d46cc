"""Every lab notebook runs end to end (with the labs' small settings), so the labs cannot rot."""

from __future__ import annotations

from pathlib import Path

import pytest

LABS = sorted((Path(__file__).resolve().parent.parent / "labs").glob("*.ipynb"))


def test_there_are_at_least_three_labs():
    assert len(LABS) >= 3, [p.name for p in LABS]


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
