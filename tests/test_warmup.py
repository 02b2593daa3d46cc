"""The hallucue-tiny build, run end to end at toy size: loadable output, eval.json, determinism."""

import json

import mlx.core as mx
import pytest

from hallucue_mlx.warmup import WarmupConfig, build_tiny, warmup_items

TOY = dict(
    max_steps=3,
    batch_size=2,
    probe_every=3,
    probe_items=6,
    final_eval_items=8,
    text_hidden=64,
    text_layers=1,
    vision_hidden=32,
    vision_depth=1,
)


def test_blank_images_only_on_items_whose_answer_is_in_the_text():
    cfg = WarmupConfig(blank_share=0.5, decline_share=0.0, template="short")
    blanks = 0
    for step in range(40):
        for item, target in warmup_items(step, cfg):
            assert target.startswith("<think>") and target.endswith("}")
            if len(set(item.image.getdata())) == 1:  # a plain image
                blanks += 1
                assert item.version in ("text_dominant", "text_lite")
    assert blanks > 0


@pytest.mark.slow
def test_toy_build_writes_a_loadable_model_with_eval_and_is_deterministic(tmp_path):
    import mlx_vlm

    logs = []
    a = build_tiny(tmp_path / "a", WarmupConfig(**TOY), log=logs.append)
    build_tiny(tmp_path / "b", WarmupConfig(**TOY), log=lambda s: None)
    model, _ = mlx_vlm.load(str(tmp_path / "a"))
    assert model.config.model_type == "qwen2_5_vl"
    ev = json.loads((tmp_path / "a" / "eval.json").read_text())
    assert ev == a["eval"] and ev["clean"]["n"] == 8 and set(ev) >= {"clean", "blank", "misses"}
    build = json.loads((tmp_path / "a" / "build.json").read_text())
    assert build["history"][-1]["step"] == 3 and any("parameters" in s for s in logs)
    wa = mx.load(str(tmp_path / "a" / "model.safetensors"))
    wb = mx.load(str(tmp_path / "b" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(mx.array_equal(wa[k], wb[k]).item() for k in wa)
    # a second stage continues the first build's weights (same shapes and tokenizer)
    build_tiny(tmp_path / "c", WarmupConfig(**TOY, init=str(tmp_path / "a")), log=lambda s: None)
    wc = mx.load(str(tmp_path / "c" / "model.safetensors"))
    assert wc.keys() == wa.keys() and not all(mx.array_equal(wa[k], wc[k]).item() for k in wa)
    assert json.loads((tmp_path / "c" / "build.json").read_text())["config"]["init"]
