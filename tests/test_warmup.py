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


def test_skip_share_rewrites_only_addition_targets_and_keeps_the_other_draws():
    from hallucue_mlx.prompts import DECLINE_ANSWER

    base, skip = WarmupConfig(), WarmupConfig(skip_share=1.0)
    skipped = kept = 0
    for step in range(30):
        for (item, target), (item2, target2) in zip(
            warmup_items(step, base), warmup_items(step, skip), strict=True
        ):
            assert item.id == item2.id  # same items, same blank / decline draws
            addends = (item.meta.get("facts") or {}).get("addends")
            if item.task in ("count", "digit") and addends and DECLINE_ANSWER not in target:
                # the visual fact, then the answer: no addition written
                assert "+" not in target2 and target2.endswith("\\boxed{" + item.answer + "}")
                assert target2.startswith("<think>" + item.meta["think"].split(". ")[0])
                skipped += 1
            else:
                assert target2 == target
                kept += 1
    assert skipped > 20 and kept > 20
    # a share: some addition targets keep their working, drawn the same way every time
    plain = [t for s in range(30) for _, t in warmup_items(s, base)]
    half = [t for s in range(30) for _, t in warmup_items(s, WarmupConfig(skip_share=0.5))]
    again = [t for s in range(30) for _, t in warmup_items(s, WarmupConfig(skip_share=0.5))]
    assert half == again
    assert 0 < sum(a != b for a, b in zip(plain, half, strict=True)) < skipped


def test_warmup_settings_from_the_command_line_are_typed_and_checked():
    from hallucue_mlx.warmup import check_config, warmup_overrides

    cfg = warmup_overrides(WarmupConfig(), ["skip_share=0.6", "max_steps=600", "keep=last"])
    assert (cfg.skip_share, cfg.max_steps, cfg.keep) == (0.6, 600, "last")
    with pytest.raises(ValueError, match="KEY one of .*skip_share"):
        warmup_overrides(WarmupConfig(), ["skip=0.6"])
    with pytest.raises(ValueError, match="max_steps: expected an integer, got 'lots'"):
        warmup_overrides(WarmupConfig(), ["max_steps=lots"])
    with pytest.raises(ValueError, match="skip_share must be in"):
        check_config(warmup_overrides(WarmupConfig(), ["skip_share=1.5"]))
    with pytest.raises(ValueError, match="keep must be"):
        check_config(WarmupConfig(keep="best"))


def test_build_tiny_cli_refuses_a_bad_setting_before_any_work(tmp_path):
    from typer.testing import CliRunner

    from hallucue_mlx.cli import app

    res = CliRunner().invoke(
        app, ["model", "build-tiny", "--out", str(tmp_path / "m"), "--set", "skip_share=2"]
    )
    assert res.exit_code == 2 and "skip_share must be in [0, 1]" in res.output
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_a_fixed_length_stage_keeps_its_last_checkpoint(tmp_path):
    cfg = WarmupConfig(**{**TOY, "max_steps": 4, "probe_every": 2}, keep="last", skip_share=0.5)
    out = build_tiny(tmp_path / "s", cfg, log=lambda s: None)
    assert out["build"]["kept_step"] == 4 and out["build"]["config"]["skip_share"] == 0.5
