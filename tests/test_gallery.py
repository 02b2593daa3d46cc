"""The gallery renders every corruption side by side and is byte-identical for the same seed."""

from __future__ import annotations

import hashlib

from bench_rows import mathvista
from PIL import Image
from typer.testing import CliRunner

from hallucue_mlx.cli import app
from hallucue_mlx.corrupt import CORRUPTIONS
from hallucue_mlx.data.bench import load_benchmark
from hallucue_mlx.gallery import CELL_W, LABEL_W, gallery_for, wrap, write_gallery


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_synth_gallery_is_byte_identical_for_the_same_seed(tmp_path):
    a = gallery_for("synth", tmp_path / "a.png", n=4, seed=2)
    b = gallery_for("synth", tmp_path / "b.png", n=4, seed=2)
    c = gallery_for("synth", tmp_path / "c.png", n=4, seed=3)
    assert _sha(a) == _sha(b) != _sha(c)
    img = Image.open(a)
    assert img.width == LABEL_W + len(CORRUPTIONS) * CELL_W + 12
    assert "tIME" not in img.info and not img.text


def test_fixture_benchmark_gallery_renders_each_corruption(tmp_path):
    path = mathvista.build(tmp_path)
    items = load_benchmark("mathvista", "testmini", path=str(path), n=3)
    out = write_gallery(items, tmp_path / "g.png", seed=0)
    img = Image.open(out).convert("RGB")
    # centre of the first row's image box: the picture's background under 'none', white under blank
    y = 34 + 90
    assert img.getpixel((LABEL_W + 123, y)) == (250, 250, 245)
    assert img.getpixel((LABEL_W + CELL_W + 123, y)) == (255, 255, 255)
    assert img.getpixel((LABEL_W + 2 * CELL_W + 123, y)) == (250, 250, 245)  # another picture
    assert img.height > 3 * 200


def test_wrap_respects_width():
    from hallucue_mlx.gallery import _font

    font = _font(13)
    lines = wrap("word " * 80 + "x" * 200, font, 200)
    assert all(font.getlength(line) <= 200 for line in lines) and len(lines) > 5


def test_cli_corrupt_writes_png_and_reports_bad_benchmark(tmp_path):
    runner = CliRunner()
    out = tmp_path / "g.png"
    res = runner.invoke(app, ["corrupt", "--benchmark", "synth", "--n", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert Image.open(out).format == "PNG"
    res = runner.invoke(app, ["corrupt", "--benchmark", "nope", "--out", str(out)])
    assert res.exit_code == 1 and "unknown benchmark" in res.output


def test_cli_data_list_and_prepare(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["data", "list"])
    assert res.exit_code == 0 and all(n in res.output for n in ("mathverse", "wemath", "local"))
    res = runner.invoke(
        app,
        ["data", "prepare", "synth", "--n", "3", "--split", "test", "--out", str(tmp_path / "s")],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s" / "manifest.json").exists()
    assert len(load_benchmark("local", "test", path=str(tmp_path / "s"))) == 3
