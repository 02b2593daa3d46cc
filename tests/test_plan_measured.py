"""plan's predicted peak memory against MLX's measured peak, for every family in float32 and
4-bit, at real widths and reduced depth (2 text layers, 2 vision blocks): one GRPO step of our
trainer and one evaluation batch (scripts/check_plan.py prints the same as a table). Memory does
not depend on the machine's load; 4-bit matmuls crawl on a CPU, so completions are 6 tokens."""

from __future__ import annotations

import pytest


@pytest.mark.slow
@pytest.mark.realwidth
@pytest.mark.parametrize("bits", [None, 4], ids=["float32", "4bit"])
@pytest.mark.parametrize("family", ["qwen2.5-vl-3b", "qwen2-vl-2b", "smolvlm-256m"])
def test_predicted_peak_is_within_25_percent_of_measured(family, bits, tmp_path, load_script):
    checks = load_script("check_plan").measure(family, bits, tmp_path)
    assert [c.what for c in checks] == ["GRPO step", "evaluation"]
    for c in checks:
        assert abs(c.error) <= 0.25, (
            f"{family} {bits or 32}-bit {c.what}: predicted {c.predicted_gb:.2f} GB, "
            f"measured {c.measured_gb:.2f} GB"
        )
