"""`models.hf_layout` writes a checkpoint back in Hugging Face layout, for every family: the names
and conv layouts of the public releases, in shards with an index transformers accepts, and
mlx-vlm's own loader (its `sanitize`) turns it back into exactly the weights it came from."""

from __future__ import annotations

import json
import os

import mlx.core as mx
import pytest
from mlx.utils import tree_flatten

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hallucue_mlx.models import FAMILIES  # noqa: E402
from hallucue_mlx.models.hf_layout import hf_weights, to_hf_layout  # noqa: E402

# Top-level names of each family's Hugging Face release, and its patch embedding's weight.
RELEASE = {
    "qwen2_5_vl": (("model.", "visual."), "visual.patch_embed.proj.weight"),
    "qwen2_vl": (("model.", "visual."), "visual.patch_embed.proj.weight"),
    "idefics3": (
        ("model.text_model.", "model.vision_model.", "model.connector.", "lm_head."),
        "model.vision_model.embeddings.patch_embedding.weight",
    ),
}


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, build_tiny):
    root = tmp_path_factory.mktemp("hf_layout")
    return {f: build_tiny(root / f, family=f) for f in FAMILIES}


@pytest.mark.parametrize("fam", FAMILIES)
def test_release_layout_that_mlx_vlm_loads_back_bit_for_bit(dirs, fam, tmp_path):
    import mlx_vlm

    original = mx.load(str(dirs[fam] / "model.safetensors"))
    hf = to_hf_layout(dirs[fam], tmp_path / "hf")
    shards = sorted(hf.glob("*.safetensors"))
    assert [s.name for s in shards] == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    given = {k: v for s in shards for k, v in mx.load(str(s)).items()}
    prefixes, patch = RELEASE[fam]
    assert len(given) == len(original) and all(k.startswith(prefixes) for k in given)
    assert given[patch].shape[1] == 3  # channels first, as PyTorch's convolutions
    index = json.loads((hf / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(given)
    # transformers refuses an index without its total size
    assert index["metadata"]["total_size"] == sum(v.nbytes for v in given.values())
    assert (hf / "config.json").read_text() == (dirs[fam] / "config.json").read_text()
    assert (hf / "tokenizer.json").is_file() and (hf / "chat_template.json").is_file()
    # mlx-vlm's loader maps the release names back: exactly the weights we started from
    model, _ = mlx_vlm.load(str(hf))
    loaded = dict(tree_flatten(model.parameters()))
    assert loaded.keys() == original.keys()
    assert all(mx.array_equal(loaded[k], original[k]).item() for k in original)


def test_newer_qwen_names_and_refusals(dirs, tmp_path):
    weights = mx.load(str(dirs["qwen2_5_vl"] / "model.safetensors"))
    newer = hf_weights(weights, "qwen2_5_vl", newer_names=True)
    assert all(k.startswith(("model.language_model.", "model.visual.")) for k in newer)
    with pytest.raises(ValueError, match="Qwen-VL families only"):
        hf_weights(mx.load(str(dirs["idefics3"] / "model.safetensors")), "idefics3", True)
    with pytest.raises(ValueError, match="'lm.x' is not one of mlx-vlm's Qwen-VL names"):
        hf_weights({"lm.x": mx.zeros(1)}, "qwen2_vl")
    q = tmp_path / "q"
    q.mkdir()
    config = json.loads((dirs["qwen2_vl"] / "config.json").read_text())
    (q / "config.json").write_text(json.dumps({**config, "quantization": {"bits": 4}}))
    with pytest.raises(ValueError, match="is quantized; write the Hugging Face layout from its"):
        to_hf_layout(q, tmp_path / "out")
