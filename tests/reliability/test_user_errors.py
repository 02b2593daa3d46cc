"""User and environment errors end in one line naming the thing and the fix, never a traceback:
a matrix of hostile command lines through the CLI (typer's runner, in-process, so it is fast)."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
from reliability_helpers import picture, row, write_items
from typer.testing import CliRunner

from hallucue_mlx.cli import app


def invoke(*args: str):
    res = CliRunner().invoke(app, [str(a) for a in args])
    text = res.output + (res.stderr if res.stderr_bytes is not None else "")
    return res, text


def one_line_error(res, text: str, *parts: str) -> str:
    """Exit code non-zero, no traceback, the message names each part; returns the message."""
    assert res.exit_code != 0, text
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in text, text
    flat = " ".join(line.strip(" │╭╮╰╯─") for line in text.splitlines()).strip()
    for p in parts:
        assert p in flat, f"{p!r} not in {flat!r}"
    return flat


# ---------------------------------------------------------------- train: every setting before the model

TRAIN_CONFIGS = {
    "missing": (None, ["not found"]),
    "directory": ("dir", ["not found"]),
    "garbage": (b"\x00\xff: : [\n", ["not a text file"]),
    "invalid": ("lora_rank: 0\n", ["lora_rank", ">= 1"]),
    "not a mapping": ("- 1\n- 2\n", ["must be a mapping"]),
    "bad yaml": ("a: [1, 2\n", ["not valid YAML"]),
}


@pytest.mark.parametrize("case", list(TRAIN_CONFIGS))
def test_train_config_file_errors(tmp_path: Path, case: str, said) -> None:
    content, parts = TRAIN_CONFIGS[case]
    path = tmp_path / "cfg.yaml"
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    out = tmp_path / "out"
    res, text = invoke("train", "--config", path, "--out", out, "--steps", "1")
    msg = one_line_error(res, text, *parts)
    said(f"train --config {case}", msg, "cfg.yaml" if case != "invalid" else "lora_rank")
    assert not out.exists(), "nothing may be written before the settings are checked"


TRAIN_OPTIONS = {
    "unknown corruption": (["--corruption", "bogus"], ["bogus", "blank"]),
    "corruption by --set": (["--set", "corruption=bogus"], ["corruption", "blank"]),
    "top_p above 1": (["--top-p", "7"], ["top_p", "(0, 1]"]),
    "top_p zero": (["--set", "top_p=0"], ["top_p", "(0, 1]"]),
    "lora rank 0": (["--set", "lora_rank=0"], ["lora_rank", ">= 1"]),
    "lora alpha negative": (["--set", "lora_alpha=-1"], ["lora_alpha", "> 0"]),
    "lora dropout 2": (["--set", "lora_dropout=2"], ["lora_dropout", "[0, 0.99]"]),
    "lora layers 0": (["--set", "lora_layers=0"], ["lora_layers", "-1"]),
    "lora layers -5": (["--set", "lora_layers=-5"], ["lora_layers", "-1"]),
    "dtype": (["--dtype", "int3"], ["int3", "float32"]),
    "template": (["--set", "prompt_template=nope"], ["prompt_template", "nope"]),
    "seed negative": (["--set", "seed=-1"], ["seed", "[0, 2147483647]"]),
    "seed huge": (["--set", f"seed={2**70}"], ["seed", "[0, 2147483647]"]),
    "unknown key": (["--set", "nosuchkey=1"], ["nosuchkey"]),
}


@pytest.mark.parametrize("case", list(TRAIN_OPTIONS))
def test_train_options_checked_before_anything_is_written(
    tmp_path: Path, tiny_dir: Path, case: str, said
) -> None:
    args, parts = TRAIN_OPTIONS[case]
    out = tmp_path / "out"
    res, text = invoke("train", *args, "--model", tiny_dir, "--out", out, "--steps", "1")
    said(f"train {case}", one_line_error(res, text, *parts))
    assert not (out / "train_config.json").exists(), "written before the settings were checked"


# ---------------------------------------------------------------- run: settings of a run config


def test_run_huge_seed_is_a_setting_error(tmp_path: Path, tiny_dir: Path, said) -> None:
    from reliability_helpers import grid_yaml

    cfg = grid_yaml(tmp_path / "run.yaml", tiny_dir)
    out = tmp_path / "run"
    res, text = invoke("run", "--config", cfg, "--set", f"seed={2**70}", "--out", out)
    said("run huge seed", one_line_error(res, text, "seed", "[0, 2147483647]"))
    assert not out.exists()


# ---------------------------------------------------------------- damaged models


def _model_copy(tiny_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(tiny_dir, dst)
    return dst


def _weights(model: Path) -> Path:
    return sorted(model.glob("*.safetensors"))[0]


@pytest.mark.parametrize("damage", ["truncated", "empty", "config list", "config binary"])
def test_damaged_model_files(tmp_path: Path, tiny_dir: Path, damage: str, said) -> None:
    model = _model_copy(tiny_dir, tmp_path)
    if damage == "truncated":
        w = _weights(model)
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
        parts = [w.name, "damaged", "cut short", "download or convert"]
    elif damage == "empty":
        w = _weights(model)
        w.write_bytes(b"")
        parts = [w.name, "damaged", "empty"]
    elif damage == "config list":
        (model / "config.json").write_text("[1, 2]")
        parts = ["config.json", "must be a JSON object"]
    else:
        (model / "config.json").write_bytes(b"\xff\xfe\x00garbage")
        parts = ["config.json", "cannot read"]
    out = tmp_path / "eval"
    res, text = invoke("eval", "--model", model, "--n", "2", "--out", out)
    said(f"model {damage}", one_line_error(res, text, *parts))


# ---------------------------------------------------------------- data and report shapes


@pytest.mark.parametrize("choices", [5, {"A": "x"}, [["a"], ["b"]]])
def test_non_list_choices(tmp_path: Path, choices, said) -> None:
    data = write_items(tmp_path / "d", [row(0, choices=choices)], {"q0.png": picture()})
    res, text = invoke(
        "corrupt", "-b", "local", "--data", data, "--n", "1", "--out", tmp_path / "g.png"
    )
    said("choices shape", one_line_error(res, text, "q0", "choices must be a list"))


@pytest.mark.parametrize("lines", [["[1, 2]"], ["5", '"text"'], ["null"]])
def test_report_records_that_are_not_objects(tmp_path: Path, lines: list[str], said) -> None:
    cell = tmp_path / "run" / "eval" / "m" / "synth-test" / "records.jsonl"
    cell.parent.mkdir(parents=True)
    cell.write_text("\n".join(lines) + "\n")
    res, text = invoke("report", tmp_path / "run")
    assert "Traceback" not in text and not (
        res.exception and not isinstance(res.exception, SystemExit)
    ), repr(res.exception)
    if res.exit_code == 0:
        report = (tmp_path / "run" / "report.md").read_text()
        assert "not JSON objects" in report
    else:
        said("report non-object lines", one_line_error(res, text, str(tmp_path / "run")))


# ---------------------------------------------------------------- corrupt and data prepare options

OPTIONS = {
    "corrupt --n 0": (["corrupt", "--n", "0"], ["--n", "0", ">= 1"]),
    "corrupt --n -3": (["corrupt", "--n", "-3"], ["--n", ">= 1"]),
    "corrupt --out DIR": (["corrupt", "--out", "{dir}"], ["--out", "is a folder"]),
    "prepare --n -2": (
        ["data", "prepare", "synth", "--n", "-2", "--out", "{new}"],
        ["--n", ">= 1"],
    ),
    "prepare --n 0": (["data", "prepare", "synth", "--n", "0", "--out", "{new}"], ["--n", ">= 1"]),
    "prepare --out FILE": (
        ["data", "prepare", "synth", "--n", "2", "--out", "{file}"],
        ["--out", "is a file", "folder"],
    ),
}


@pytest.mark.parametrize("case", list(OPTIONS))
def test_option_errors(tmp_path: Path, case: str, said) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("mine")
    args, parts = OPTIONS[case]
    places = {"dir": tmp_path / "dir", "file": tmp_path / "file", "new": tmp_path / "new"}
    args = [a.format(**places) for a in args]
    res, text = invoke(*args)
    said(case, one_line_error(res, text, *parts))
    assert (tmp_path / "file").read_text() == "mine"
    assert list((tmp_path / "dir").iterdir()) == []
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------- a full disk, a read-only folder


def _failing_write(code: int, path_arg: int = 0):
    """A write that fails as the file system would, naming the file it was given."""
    import os

    def write(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(args[path_arg]))

    return write


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_prepare_on_a_full_or_read_only_disk(tmp_path: Path, monkeypatch, code: int, said) -> None:
    from hallucue_mlx import atomic

    monkeypatch.setattr(atomic, "write_with", _failing_write(code))
    out = tmp_path / "subset"
    res, text = invoke("data", "prepare", "synth", "--n", "2", "--out", out)
    want = "is full" if code == errno.ENOSPC else "cannot be written"
    msg = one_line_error(res, text, "items.jsonl", want, "--out", "Continue with: hallucue-mlx")
    said(f"prepare errno {errno.errorcode[code]}", msg)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_gallery_on_a_full_or_read_only_disk(tmp_path: Path, monkeypatch, code: int, said) -> None:
    from PIL import Image

    monkeypatch.setattr(Image.Image, "save", _failing_write(code, path_arg=1))
    out = tmp_path / "g.png"
    res, text = invoke("corrupt", "--n", "1", "--out", out)
    want = "is full" if code == errno.ENOSPC else "cannot be written"
    msg = one_line_error(res, text, "g.png", want, "--out", "Continue with: hallucue-mlx")
    said(f"corrupt errno {errno.errorcode[code]}", msg)


def test_read_only_folder(tmp_path: Path, said) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; the errno cases above cover it")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        res, text = invoke("data", "prepare", "synth", "--n", "2", "--out", ro / "subset")
        said("read-only folder", one_line_error(res, text, "cannot be written", "--out"))
    finally:
        ro.chmod(0o700)


def test_damaged_header_count_matches(tmp_path: Path) -> None:
    """The cheap safetensors check accepts a whole file and names a bad header."""
    from hallucue_mlx.models.load import _safetensors_problem

    p = tmp_path / "w.safetensors"
    header = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    p.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 8)
    assert _safetensors_problem(p) is None
    p.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    assert "cut short" in _safetensors_problem(p)
    p.write_bytes((10**9).to_bytes(8, "little") + b"{}")
    assert "header" in _safetensors_problem(p)


def test_run_with_an_extreme_aspect_image(tmp_path: Path, tiny_dir: Path, said) -> None:
    """As `eval` does: the item and its image's shape named, not a traceback."""
    import yaml
    from PIL import Image
    from reliability_helpers import grid_yaml

    data = write_items(tmp_path / "d", [row(0)], {"q0.png": Image.new("RGB", (1500, 5))})
    cfg_path = grid_yaml(tmp_path / "run.yaml", tiny_dir)
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["data"]["eval"] = [{"name": "local", "path": str(data), "n": 1}]
    cfg["grid"]["train_conditions"] = []
    cfg_path.write_text(yaml.safe_dump(cfg))
    res, text = invoke("run", "--config", cfg_path, "--out", tmp_path / "run")
    said("run extreme aspect", one_line_error(res, text, "item q0", "1500x5", "Pad or crop"))
