"""`hallucue-mlx plan`: the memory/time predictor's arithmetic and its command line."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from hallucue_mlx.backend import backend_name
from hallucue_mlx.cli import app
from hallucue_mlx.config import load_config
from hallucue_mlx.models.load import embedded_model_path
from hallucue_mlx.models.shapes import SHAPES
from hallucue_mlx.plan import (
    Arch,
    PlanError,
    Processor,
    RunTime,
    Timing,
    arch_from_config,
    auto_micro_batch,
    chip,
    fitting_micro_batch,
    image_tokens,
    make_plan,
    micro_batch_choices,
    read_model,
    run_time,
    safetensors_tensors,
    weight_bytes,
    workload,
)


def _run(*argv: str):
    return CliRunner().invoke(app, list(argv), terminal_width=200, env={"COLUMNS": "200"})


def _arch(name: str) -> Arch:
    return arch_from_config(SHAPES[name].config)


# ---------------------------------------------------------------- arithmetic


def test_image_tokens_follow_the_processors():
    cfg = load_config(None, [])
    w = workload(cfg, gpu=True, image=None, text_tokens=None)
    qwen = _arch("qwen2.5-vl-3b")
    # Qwen: 28 px per token side (14 px patches, 2 x 2 merged)
    assert image_tokens(qwen, Processor(), (448, 448), w)[:2] == (256, 1024)
    assert image_tokens(qwen, Processor(), (112, 112), w)[0] == 16
    # max_pixels caps the tokens (EasyR1's 262144 min / model.max_pixels)
    capped = image_tokens(
        qwen, Processor(), (4000, 3000), w.__class__(**{**w.__dict__, "max_pixels": 200704})
    )
    assert capped[0] <= 256
    # SmolVLM: longest edge to 2048, 512 px tiles of 64 tokens plus the global image
    smol = _arch("smolvlm-256m")
    assert image_tokens(smol, Processor(), (800, 600), w) == (13 * 64, 13 * 1024, 13)
    assert image_tokens(smol, Processor(longest_edge=512), (800, 600), w)[0] == 64


def test_weights_from_config_match_the_checkpoint():
    """The config-only count (used for models not downloaded) agrees with the embedded
    checkpoint's real tensors."""
    d = embedded_model_path()
    src = read_model("hallucue-tiny")
    exact = weight_bytes(arch_from_config(src.config, safetensors_tensors(d)), 4)
    counted = weight_bytes(arch_from_config(src.config), 4)
    assert counted == pytest.approx(exact, rel=0.05)


def test_published_4bit_model_counts_quantized_weights():
    src = read_model("mlx-community/Qwen2.5-VL-3B-Instruct-4bit")
    arch = arch_from_config(src.config)
    assert arch.bits == 4
    full = weight_bytes(arch_from_config(SHAPES["qwen2.5-vl-3b"].config), 2)
    # about 3.75 B parameters: ~7.5 GB in bf16; 4-bit text + bf16 vision tower ~2.9 GB
    assert 7.0e9 < full < 8.0e9
    assert 2.0e9 < weight_bytes(arch, 2) < 3.5e9


def test_unknown_chip_names_the_known_ones():
    assert chip("m3 pro").memory_gb == 18
    with pytest.raises(PlanError, match="M4 Max"):
        chip("M9")


def test_checkpointing_and_fewer_prompts_lower_the_peak():
    base = load_config("paper-qwen25vl-3b", ["train.grad_checkpoint=false"])
    p = make_plan(base, chip_name="M4 Max")
    ck = make_plan(load_config("paper-qwen25vl-3b", []), chip_name="M4 Max")
    fewer = make_plan(
        load_config("paper-qwen25vl-3b", ["train.prompts_per_step=1"]), chip_name="M4 Max"
    )
    assert ck.mem.train_peak < p.mem.train_peak
    assert fewer.mem.train_peak < ck.mem.train_peak


# ---------------------------------------------------------------- the command


def test_plan_fits_the_embedded_model():
    out = _run("plan", "--memory", "16")
    assert out.exit_code == 0, out.output
    assert "Fits" in out.output
    assert "GRPO step peak" in out.output and "s / eval item" in out.output


def test_plan_that_does_not_fit_names_keys_that_make_it_fit():
    out = _run("plan", "--config", "qwen2vl-2b-4bit", "--chip", "M2", "--memory", "6")
    assert out.exit_code == 1, out.output
    assert "Does not fit" in out.output
    fixes = re.findall(r"--set (\S+)=(\S+)", out.output)
    assert fixes, out.output
    key, value = fixes[0]
    # the suggested change, applied, fits
    again = _run(
        "plan",
        "--config",
        "qwen2vl-2b-4bit",
        "--chip",
        "M2",
        "--memory",
        "6",
        "--set",
        f"{key}={value}",
    )
    assert again.exit_code == 0, again.output
    assert "Fits" in again.output


def test_plan_combines_keys_when_one_is_not_enough():
    out = _run("plan", "--config", "paper-qwen25vl-3b", "--chip", "M2", "--memory", "8")
    assert out.exit_code == 1
    combined = re.search(r"together: (.*) ->", out.output)
    assert combined, out.output
    sets = re.findall(r"--set (\S+)", combined.group(1))
    args = [a for s in sets for a in ("--set", s)]
    again = _run("plan", "--config", "paper-qwen25vl-3b", "--chip", "M2", "--memory", "8", *args)
    assert again.exit_code == 0, again.output


def test_plan_of_an_unknown_model_says_how_to_fix_it():
    out = _run("plan", "--set", "model.id=someone/not-a-known-vlm", "--chip", "M2")
    assert out.exit_code == 2
    assert "someone/not-a-known-vlm" in out.output
    assert "local directory" in out.output and "Download it once" in out.output


def test_plan_rejects_a_bad_image_size():
    out = _run("plan", "--image", "big", "--chip", "M2")
    assert out.exit_code == 2
    assert "WIDTHxHEIGHT" in out.output


@pytest.mark.skipif(backend_name() != "cpu", reason="the warning is for MLX on a CPU")
def test_plan_and_doctor_warn_about_4bit_on_cpu():
    out = _run("plan", "--config", "qwen2vl-2b-4bit", "--memory", "64")
    assert "4-bit weights and MLX runs on the CPU" in out.output
    assert "float32" in out.output
    doc = _run("doctor", "--reps", "1", "--config", "qwen2vl-2b-4bit")
    assert doc.exit_code == 0, doc.output
    assert "4-bit weights and MLX runs on the CPU" in doc.output
    plain = _run("doctor", "--reps", "1", "--config", "default")
    assert "runs on the CPU" not in plain.output


# ---------------------------------------------------------------- micro-batches and presets


def test_micro_batch_choices_are_whole_groups_then_pieces_of_one():
    assert micro_batch_choices(3, 4) == [12, 8, 4, 3, 2, 1]
    assert micro_batch_choices(1, 2) == [2, 1]


def test_smaller_micro_batches_lower_the_loss_and_the_chunked_head_its_logits():
    cfg = load_config("paper-qwen25vl-3b", [])
    arch = _arch("qwen2.5-vl-3b")
    proc = Processor()
    w = workload(cfg, True, None, None)
    from dataclasses import replace

    from hallucue_mlx.plan import _peaks

    peaks = [_peaks(arch, proc, replace(w, micro_batch=m)).train_peak for m in (20, 10, 5, 2, 1)]
    assert peaks == sorted(peaks, reverse=True) and peaks[0] > 2 * peaks[2]
    whole = _peaks(arch, proc, replace(w, micro_batch=20, head_rows=0))
    chunked = _peaks(arch, proc, replace(w, micro_batch=20))
    # the unchunked head: 4 groups' float32 logits over 151,936 tokens, ~30 GB of the peak
    assert (
        whole.parts["loss logits (float32)"] > 25e9 > 1e9 > chunked.parts["loss logits (float32)"]
    )
    usable = 21.3
    m = fitting_micro_batch(arch, proc, w, usable)
    assert _peaks(arch, proc, replace(w, micro_batch=m)).train_peak / 1e9 <= usable
    if m < 20:
        bigger = micro_batch_choices(4, 5)[micro_batch_choices(4, 5).index(m) - 1]
        assert _peaks(arch, proc, replace(w, micro_batch=bigger)).train_peak / 1e9 > usable


def test_auto_micro_batch_follows_the_memory_and_falls_back_to_a_group():
    cfg = load_config("paper-qwen25vl-3b", [])
    t = cfg.train
    from dataclasses import replace

    t = replace(t, dtype="auto", benchmark="geometry3k", min_pixels=262144, max_pixels=4194304)
    big = auto_micro_batch(t, cfg.model.id, 4, "gpu", memory_gb=192)
    small = auto_micro_batch(t, cfg.model.id, 4, "gpu", memory_gb=16)
    assert big == 20 and 1 <= small < big
    assert auto_micro_batch(t, "someone/not-a-known-vlm", 4, "gpu", memory_gb=16) == 5


@pytest.mark.parametrize(
    "preset, chip_name, memory, most",
    [
        ("paper-qwen25vl-3b", "M2 Max", 32, 30.0),
        ("qwen2vl-2b-4bit", "M4", 16, 14.0),
        ("smolvlm", "M2", 8, 7.0),
    ],
)
def test_each_preset_fits_its_mac(preset, chip_name, memory, most):
    p = make_plan(load_config(preset, []), chip_name=chip_name, memory_gb=memory)
    assert p.fits, (preset, p.mem.train_peak / 1e9, p.usable_gb)
    assert p.mem.train_peak / 1e9 <= most and p.micro_batch_auto


def test_the_new_chips_and_the_whole_run_time():
    for name, gbs, gb in (
        ("M4", 120, 16),
        ("M4 Pro", 273, 24),
        ("M4 Max", 546, 36),
        ("M5", 153, 16),
    ):
        c = chip(name)
        assert (c.bandwidth_gbs, c.memory_gb) == (gbs, gb)
    cfg = load_config("default", [])
    r = run_time(cfg, Timing(rollout_s=1.0, loss_s=1.0, eval_item_s=0.01))
    assert isinstance(r, RunTime) and r.trainings == 4
    # 4 trainings x 20 steps x 2 s; answers: 5 models x (600 test + 100 train-slice items) x 4
    # conditions, plus the periodic evaluations (3 points x 32 items x (1 + 2 x 3) conditions)
    assert r.train_s == pytest.approx(4 * 20 * 2)
    assert r.evaluations == 5 * 700 * 4 + 3 * 32 * 7
    assert r.eval_s == pytest.approx(r.evaluations * 0.01)
    out = _run("plan", "--config", "paper-qwen25vl-3b", "--chip", "M5")
    assert "M5: about" in out.output and "micro_batch_size" in out.output
