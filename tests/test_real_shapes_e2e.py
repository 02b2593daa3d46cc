"""End to end at real width (slow): scripts/check_real_shapes.py's check for each family.

Published widths and vocabulary, 2 text layers and 2 vision blocks, a 448x448 and a 336x672
image: load, one GRPO step (G=5, LoRA / QLoRA), greedy evaluation under all four corruptions,
adapter reload through plain mlx_vlm.load with equal logits. fp32 runs for every family; 4-bit
(no fast quantized CPU kernel; one 224x224 item under none and blank) for SmolVLM here, and for
the Qwen models in the script only (their 151936 x 2048 LM head makes each 4-bit step minutes on
a CPU)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytestmark = [pytest.mark.slow, pytest.mark.realwidth]


RUNS = [
    ("qwen2.5-vl-3b", "fp32"),
    ("qwen2-vl-2b", "fp32"),
    ("smolvlm-256m", "fp32"),
    ("smolvlm-256m", "4bit"),
]


@pytest.mark.parametrize(("name", "dtype"), RUNS)
def test_real_width_end_to_end(name, dtype, tmp_path, load_script):
    row = load_script("check_real_shapes").check(name, dtype, tmp_path)
    assert row["ok"]
    conditions = (
        ("none", "blank") if dtype == "4bit" else ("none", "blank", "random", "text_removal")
    )
    assert row["eval"] == {c: 1 if dtype == "4bit" else 2 for c in conditions}
    assert row["adapter_max_diff"] < 1e-3 < row["adapter_effect"]
