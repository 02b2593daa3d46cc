"""Model and adapter paths that cannot work fail at load time, saying why and what to pass."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from hallucue_mlx.cli import app
from hallucue_mlx.models.load import ModelLoadError, load_model


def _error(*args, **kwargs) -> str:
    with pytest.raises(ModelLoadError) as e:
        load_model(*args, **kwargs)
    return str(e.value)


def test_model_path_that_does_not_exist(tmp_path, said):
    said(
        "model path that does not exist",
        _error(str(tmp_path / "no" / "such-model")),
        "not found",
        "config.json",
        "Hugging Face id",
    )
    # written as a relative path ('./...'): a path, never looked up on the hub
    said(
        "relative model path that does not exist ('./...')",
        _error("./no/such/model_dir"),
        "not found: give a local directory containing config.json",
    )


def test_relative_model_path_that_looks_like_a_hub_id(said, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    said(
        "relative model path that does not exist (looks like a hub id, offline)",
        _error("models/mine"),
        "'models/mine'",
        "not in the local Hugging Face cache",
        "no local directory",
        str(tmp_path / "models" / "mine"),
    )


def test_folder_without_config(tmp_path, said):
    (tmp_path / "weights").mkdir()
    said(
        "model folder without config.json", _error(str(tmp_path / "weights")), "has no config.json"
    )


def test_unsupported_architecture(tmp_path, tiny_dir, said):
    d = tmp_path / "llama"
    shutil.copytree(tiny_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "llama"
    (d / "config.json").write_text(json.dumps(cfg))
    said(
        "unsupported architecture (model_type llama)",
        _error(str(d)),
        "model_type 'llama' is not supported",
        "qwen2_5_vl",
    )


def test_adapter_from_another_model_is_refused(tmp_path, tiny, tiny_dir, build_tiny, said):
    """An adapter trained on a model of another width must not be attached silently."""
    from hallucue_mlx.models.lora import LoraConfig, apply_lora, save_adapter

    other = build_tiny(tmp_path / "wider", text_hidden=96, text_heads=4)
    model, _ = load_model(str(other))
    apply_lora(model, LoraConfig(rank=4))
    adapter = save_adapter(model, tmp_path / "adapter")
    msg = _error(str(tiny_dir), adapter=str(adapter))
    said(
        "adapter trained on another model",
        msg,
        "does not fit base model",
        "tensors do not match",
        "Load the adapter with the base model it was trained on",
    )
    # a base model of another architecture: the adapter's layers are not there
    idefics = build_tiny(tmp_path / "idefics3", family="idefics3")
    said(
        "adapter trained on a model of another architecture",
        _error(str(idefics), adapter=str(adapter)),
        "does not fit base model",
        "has no module",
    )


def test_adapter_path_that_does_not_exist(tmp_path, tiny_dir, said):
    said(
        "adapter path that does not exist",
        _error(str(tiny_dir), adapter=str(tmp_path / "nope")),
        "not found",
        "adapters.safetensors",
    )


def test_eval_command_prints_the_model_error(tmp_path, said):
    r = CliRunner().invoke(
        app,
        ["eval", "--model", str(tmp_path / "missing"), "--n", "2", "--out", str(tmp_path / "o")],
    )
    assert r.exit_code == 1
    said("`hallucue-mlx eval --model <missing dir>`", r.output.strip(), "error: model", "not found")
