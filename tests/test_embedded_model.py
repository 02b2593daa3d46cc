"""The shipped model hallucue-tiny: it loads, its eval.json is honest, and it meets its targets."""

import json

import pytest

from hallucue_mlx.models import embedded_model_path, load_model
from hallucue_mlx.warmup import SHIPPED_TARGETS, vision_gain

MODEL = embedded_model_path()
EVAL = json.loads((MODEL / "eval.json").read_text())


def test_shipped_files_load_with_plain_mlx_vlm_and_generate():
    import mlx_vlm

    model, processor = mlx_vlm.load(str(MODEL))
    assert model.config.model_type == "qwen2_5_vl"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"):
        assert (MODEL / name).is_file()
    # Small enough to ship inside the package.
    assert (MODEL / "model.safetensors").stat().st_size < 20_000_000


def test_eval_json_has_the_documented_shape():
    for cond in ("clean", "blank"):
        e = EVAL[cond]
        assert e["n"] >= 600
        assert 0 <= e["accuracy"] <= 1 and 0 <= e["format_rate"] <= 1
        assert set(e["by_version"]) == {
            "text_dominant",
            "text_lite",
            "vision_dominant",
            "vision_only",
        }
        # per version: the items with no addition; one addition and chains counted apart
        assert (
            sum(v["n"] for v in e["by_version"].values()) + e["addition_n"] + e["chain_n"] == e["n"]
        )


def test_targets_for_room_to_learn_and_answer_format():
    t = SHIPPED_TARGETS
    clean = EVAL["clean"]
    assert t.min_accuracy <= clean["accuracy"] <= t.max_accuracy
    assert clean["format_rate"] >= t.min_format


def test_targets_for_text_skill_and_image_use():
    t = SHIPPED_TARGETS
    assert EVAL["clean"]["by_version"]["text_dominant"]["accuracy"] >= t.min_text_dominant
    assert vision_gain(EVAL) >= t.min_vision_gain
    assert EVAL["misses"] == []


def test_targets_for_declining_and_headroom():
    """It declines where nothing holds the fact, answers where something does, and solves the
    additions sometimes (the headroom the default GRPO run needs)."""
    t = SHIPPED_TARGETS
    assert EVAL["blank"]["by_version"]["vision_only"]["declined_rate"] >= t.min_declined_when_absent
    assert EVAL["clean"]["declined_rate"] <= t.max_declined_when_present
    assert t.min_addition_accuracy <= EVAL["clean"]["addition_accuracy"] <= t.max_addition_accuracy
    assert t.min_chain_accuracy <= EVAL["clean"]["chain_accuracy"] <= t.max_chain_accuracy


@pytest.mark.slow
def test_eval_json_reproduces_on_its_own_items():
    """eval.json's clean accuracy comes back from the shipped weights on its 600 test items
    (greedy; a few answers may flip with another BLAS's rounding), in the format the targets
    ask for. Items of another seed are no check of the file: their mix of versions, tasks and
    additions differs, and this model's accuracy ranges from 7% (chains) to 100% across them."""
    from hallucue_mlx.config import EvalConfig
    from hallucue_mlx.data.synth import load_synth
    from hallucue_mlx.evaluate import evaluate
    from hallucue_mlx.warmup import PROBE_MAX_TOKENS

    model, processor = load_model(MODEL)
    items = load_synth("test", EVAL["clean"]["n"], seed=0)
    cfg = EvalConfig(
        conditions=("none",), template="short-decline", max_tokens=PROBE_MAX_TOKENS, batch_size=32
    )
    got = evaluate(model, processor, items, cfg, progress=False).summary["none"]
    assert got["n"] == EVAL["clean"]["n"]
    assert abs(got["accuracy"] - EVAL["clean"]["accuracy"]) <= 0.01, got["accuracy"]
    assert got["format_rate"] >= SHIPPED_TARGETS.min_format, got["format_rate"]
