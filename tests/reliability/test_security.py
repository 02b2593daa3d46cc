"""What runs on the user's machine is what the user asked for: weights from safetensors only
(never unpickled), no model-repository code unless trust_remote_code is set, and a user reward
function imported only when a config names it."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from reliability_helpers import train_tiny

from hallucue_mlx.models.load import ModelLoadError, load_model
from hallucue_mlx.rewards import RewardConfig, score


def test_pickle_only_checkpoint_is_refused_with_the_reason(tmp_path, tiny_dir, said):
    d = tmp_path / "torch-only"
    d.mkdir()
    shutil.copy(tiny_dir / "config.json", d)
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(ModelLoadError) as e:
        load_model(str(d))
    said(
        "model folder with only pytorch_model.bin",
        str(e.value),
        "only pickle weights (pytorch_model.bin)",
        "safetensors only",
        "arbitrary code",
        "mlx_vlm.convert",
    )


SIDE_EFFECT = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")
"""


def _remote_code_model(tmp_path, tiny_dir):
    """A copy of the tiny model whose configs point at repository code with a side effect."""
    d = tmp_path / "remote-code"
    shutil.copytree(tiny_dir, d)
    marker = tmp_path / "remote-code-ran"
    (d / "evil.py").write_text(SIDE_EFFECT.format(marker=str(marker)))
    for name, auto in (
        ("config.json", {"AutoConfig": "evil.Config", "AutoProcessor": "evil.Processor"}),
        (
            "preprocessor_config.json",
            {"AutoImageProcessor": "evil.ImageProcessor", "AutoProcessor": "evil.Processor"},
        ),
        ("tokenizer_config.json", {"AutoTokenizer": ["evil.Tokenizer", None]}),
    ):
        cfg = json.loads((d / name).read_text())
        cfg["auto_map"] = auto
        (d / name).write_text(json.dumps(cfg))
    return d, marker


def test_repository_code_is_not_run_without_trust_remote_code(tmp_path, tiny_dir):
    d, marker = _remote_code_model(tmp_path, tiny_dir)
    model, processor = load_model(str(d))  # trust_remote_code defaults to False
    assert model.config.model_type == "qwen2_5_vl" and processor is not None
    assert not marker.exists(), "evil.py was imported although trust_remote_code was not set"
    assert "evil" not in sys.modules


REWARD_MODULE = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")

def reward(response, item):
    return 0.25
"""


def test_reward_function_is_imported_only_when_named(tmp_path, tiny_dir, monkeypatch):
    name = "hallucue_test_user_reward"
    marker = tmp_path / "reward-imported"
    (tmp_path / f"{name}.py").write_text(REWARD_MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    # a whole training (rollouts, rewards, updates, checkpoints) never looks for it
    result = train_tiny(tiny_dir, tmp_path / "run", steps=1)
    assert result.steps_done == 1
    assert not marker.exists() and name not in sys.modules
    # named in the reward config: imported, and its value is the reward
    from hallucue_mlx.data.synth import load_synth

    item = load_synth("train", n=1)[0]
    r = score("<think>x</think> \\boxed{1}", item, RewardConfig(function=f"{name}:reward"))
    assert marker.exists() and r.total == 0.25


def test_a_reward_function_path_that_cannot_be_imported_says_so(said):
    with pytest.raises(ValueError) as e:
        score("x", _any_item(), RewardConfig(function="no_such_module_xyz:reward"))
    said(
        "reward function module that does not exist",
        str(e.value),
        "cannot import module 'no_such_module_xyz'",
    )


def _any_item():
    from hallucue_mlx.data.item import Item

    return Item("r1", "local", "", "What is 1+1?", "2", None, answer_kind="number")
