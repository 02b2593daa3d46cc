"""benchmarks/bench_grpo_vs_trl.py: its settings matrix and FLOP accounting (no trl needed), and
its --quick run end to end when trl is installed (the `bench-trl` extra)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_grpo_vs_trl.py"


def test_the_matrix_names_every_setting_once_and_only_selects_by_pattern(load_script):
    b = load_script("bench_grpo_vs_trl")
    matrix = b.settings_matrix()
    keys = [s.key for s in matrix]
    # 2 models x 2 prompt counts x 2 lengths x 2 betas
    assert len(keys) == len(set(keys)) == 16
    assert {"tiny/1x4/natural/beta0", "30m/4x4/max/beta0.01"} <= set(keys)
    picked = b.select_settings(matrix, ["tiny/*/max/*"])
    assert [s.key for s in picked] == [
        "tiny/1x4/max/beta0",
        "tiny/1x4/max/beta0.01",
        "tiny/4x4/max/beta0",
        "tiny/4x4/max/beta0.01",
    ]
    assert b.select_settings(matrix, None) == matrix
    with pytest.raises(ValueError, match="matches none"):
        b.select_settings(matrix, ["tiny/*", "tiny/8x4/*"])  # a typo is an error, not a no-op
    args = b.parse_args(["--quick"])
    assert (args.steps, args.warmup, args.model_list) == (1, 0, ["tiny"])
    quick = b.select_settings(b.settings_matrix(args.model_list), args.only_list)
    assert [s.key for s in quick] == [b.QUICK]


def test_useful_flops_and_the_share_of_the_gemm_ceiling(load_script):
    b = load_script("bench_grpo_vs_trl")
    # 2N(P+T) rollout + 6N(P+T) loss forward and backward (+ 2N(P+T) reference when beta > 0)
    assert b.useful_flops(10, 3, 7, beta=0.0) == 8 * 10 * 10
    assert b.useful_flops(10, 3, 7, beta=0.01) == 10 * 10 * 10
    assert b.pct_of_ceiling(2e9, 1.0, 4.0) == pytest.approx(50.0)
    assert math.isnan(b.pct_of_ceiling(1.0, 0.0, 4.0))
    steps = [
        {"step_s": 2.0, "rollout_s": 1.5, "tokens": 100},
        {"step_s": 4.0, "rollout_s": 2.5, "tokens": 300},
    ]
    s = b.summarize(steps, [50, 50], n_params=10**6, beta=0.0, gflops=10.0)
    assert s["step_s"] == pytest.approx(3.0)
    assert s["rollout_s"] == pytest.approx(2.0)
    assert s["train_s"] == pytest.approx(1.0)
    assert s["tokens"] == pytest.approx(200)
    assert s["ms_per_token"] == pytest.approx(15.0)  # 6 s over 400 tokens
    assert s["rollout_ms_per_token"] == pytest.approx(10.0)
    # 8e6 FLOPs per token x (150 + 350) tokens in 6 s against 10 GFLOPS
    assert s["pct_ceiling"] == pytest.approx(100 * 8e6 * 500 / 6 / 10e9)
    with pytest.raises(ValueError):
        b.summarize(steps, [50], n_params=1, beta=0.0, gflops=1.0)
    slower = {**s, "step_s": 6.0, "ms_per_token": 30.0, "rollout_ms_per_token": 40.0}
    assert b.ratios(s, slower) == {
        "step_time_ratio": 0.5,
        "ms_per_token_ratio": 0.5,
        "rollout_ms_per_token_ratio": 0.25,
    }


def test_trl_lora_targets_are_ours_in_the_language_model_only(load_script):
    from hallucue_mlx.config import DEFAULT_TARGETS

    b = load_script("bench_grpo_vs_trl")
    regex = b.lora_target_regex(DEFAULT_TARGETS)
    for name in DEFAULT_TARGETS:
        part = "self_attn" if name in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
        assert re.fullmatch(regex, f"model.language_model.layers.3.{part}.{name}")
    # Qwen2.5-VL's vision blocks have gate/up/down_proj too; ours leave the tower frozen
    for name in ("model.visual.blocks.0.mlp.gate_proj", "model.visual.blocks.0.attn.qkv"):
        assert not re.fullmatch(regex, name)
    assert not re.fullmatch(regex, "lm_head")
    kwargs, missing = b.trl_config_kwargs({"beta": 0.0, "no_such_field": 1}, {"beta", "seed"})
    assert kwargs == {"beta": 0.0} and missing == ["no_such_field"]


@pytest.mark.slow
def test_the_quick_run_prints_one_ratio_entry(load_script):
    for module in ("trl", "peft", "torch", "transformers"):
        pytest.importorskip(module)
    b = load_script("bench_grpo_vs_trl")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hallucue_mlx.fastblas",
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--max-tokens",
            "16",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "parity tiny" in done.stdout and "BLAS" in done.stdout
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(result) == [b.QUICK]
    entry = result[b.QUICK]
    assert set(entry) == {"step_time_ratio", "ms_per_token_ratio", "rollout_ms_per_token_ratio"}
    assert all(math.isfinite(v) and v > 0 for v in entry.values())


def test_repeats_report_each_columns_median_and_must_be_positive(load_script):
    b = load_script("bench_grpo_vs_trl")
    runs = [
        {"step_s": 1.0, "rollout_s": 0.4, "peak_rss_mb": 900.0},
        {"step_s": 3.0, "rollout_s": 0.5, "peak_rss_mb": 700.0},
        {"step_s": 2.0, "rollout_s": 0.9, "peak_rss_mb": 800.0},
    ]
    assert b.median_summary(runs) == {"step_s": 2.0, "rollout_s": 0.5, "peak_rss_mb": 800.0}
    assert b.parse_args(["--repeats", "3"]).repeats == 3
    assert b.parse_args([]).repeats == 1
    with pytest.raises(SystemExit):
        b.parse_args(["--repeats", "0"])
