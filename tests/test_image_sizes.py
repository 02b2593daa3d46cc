"""Image size control: model.min_pixels / model.max_pixels reach the processor (so they decide the
number of visual tokens), and an image over model.max_image_pixels is refused, naming the item and
the fix, before the processor or the vision tower sees it."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hallucue_mlx.config import ConfigError, config_hash, load_config  # noqa: E402
from hallucue_mlx.data.synth import load_synth  # noqa: E402
from hallucue_mlx.forward import encode_prompt  # noqa: E402
from hallucue_mlx.models.load import ModelLoadError, load_model  # noqa: E402


def _image_tokens(model, processor, side: int) -> int:
    item = replace(load_synth("test", n=1, seed=0)[0], image=Image.new("RGB", (side, side), "red"))
    prompt = encode_prompt(processor, model, item, template="short")
    return int((prompt.input_ids == model.config.image_token_id).sum())


def test_min_and_max_pixels_set_the_visual_tokens(tiny_dir):
    # the tiny model's processor takes 112^2..224^2 pixels: 16..64 visual tokens
    model, proc = load_model(tiny_dir)
    assert _image_tokens(model, proc, 224) == 64
    assert _image_tokens(model, proc, 112) == 16
    model, proc = load_model(tiny_dir, max_pixels=112 * 112)
    assert _image_tokens(model, proc, 224) == 16
    model, proc = load_model(tiny_dir, min_pixels=224 * 224, max_pixels=224 * 224)
    assert _image_tokens(model, proc, 112) == 64


def test_min_above_max_is_refused(tiny_dir):
    with pytest.raises(ModelLoadError, match="lower min_pixels or raise max_pixels"):
        load_model(tiny_dir, min_pixels=224 * 224, max_pixels=112 * 112)


def test_pixel_keys_on_smolvlm_name_the_fix(tmp_path, build_tiny):
    d = build_tiny(tmp_path / "smol", family="idefics3")
    with pytest.raises(ModelLoadError, match="longest edge.*Set both to null"):
        load_model(d, max_pixels=112 * 112)


def test_an_image_over_the_limit_is_refused_before_the_processor(tiny_dir):
    model, proc = load_model(tiny_dir, max_image_pixels=300 * 300)
    item = load_synth("test", n=1, seed=0)[0]
    big = replace(item, image=Image.new("RGB", (400, 300), "white"))
    with pytest.raises(ValueError) as err:
        encode_prompt(proc, model, big, template="short")
    msg = str(err.value)
    assert item.id in msg and "400x300" in msg and "model.max_image_pixels (90000)" in msg
    # at the limit it encodes
    ok = replace(item, image=Image.new("RGB", (300, 300), "white"))
    assert encode_prompt(proc, model, ok, template="short").image_features is not None


def test_config_keys_are_checked_and_change_the_run_hash():
    base = load_config(None, [])
    assert base.model.max_image_pixels == 4096 * 4096
    sized = load_config(None, ["model.max_pixels=262144"])
    assert config_hash(sized) != config_hash(base)  # a run folder will not mix image sizes
    with pytest.raises(ConfigError, match="model.max_pixels"):
        load_config(None, ["model.max_pixels=100"])
