"""Atomic writes: the bytes each caller asks for, and no temp file or half-written target left."""

from __future__ import annotations

import pytest

from hallucue_mlx import atomic


def test_write_json_keeps_the_callers_formatting(tmp_path):
    obj = {"b": 1, "a": [1, 2]}
    p = atomic.write_json(tmp_path / "x.json", obj, indent=2, sort_keys=True)
    assert p.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    atomic.write_json(p, obj, indent=2, end="")
    assert p.read_text() == '{\n  "b": 1,\n  "a": [\n    1,\n    2\n  ]\n}'
    assert [q.name for q in tmp_path.iterdir()] == ["x.json"]


def test_failed_write_leaves_the_previous_file_and_no_temp(tmp_path):
    p = atomic.write_text(tmp_path / "a.safetensors", "old")

    def half(tmp):
        assert tmp.suffix == ".safetensors" and tmp.parent == tmp_path  # MLX needs the suffix
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic.write_with(p, half)
    assert p.read_text() == "old"
    assert [q.name for q in tmp_path.iterdir()] == ["a.safetensors"]
