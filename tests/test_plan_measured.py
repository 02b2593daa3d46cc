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


@pytest.mark.slow
@pytest.mark.realwidth
def test_prediction_with_the_chunked_head_and_one_group_micro_batches(tmp_path, load_script):
    """100-token completions: 3 x 100 positions is more than the head's 220-position chunk at
    the 151,936-token vocabulary, so the loss runs the chunked head, one group per micro-batch."""
    checks = load_script("check_plan").measure(
        "qwen2.5-vl-3b",
        None,
        tmp_path,
        max_completion_length=100,
        micro_batch_size_per_device_for_update=3,
    )
    step = checks[0]
    assert step.what == "GRPO step (T=100)"
    assert abs(step.error) <= 0.25, (
        f"predicted {step.predicted_gb:.2f} GB, measured {step.measured_gb:.2f} GB"
    )
