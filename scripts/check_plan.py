"""Plan vs measured: `hallucue-mlx plan`'s predicted peak memory against MLX's measured peak.

For each published model (Qwen2.5-VL-3B, Qwen2-VL-2B, SmolVLM-256M) at its real widths and
vocabulary but reduced depth (2 text layers, 2 vision blocks), in float32 and 4-bit: build the
checkpoint (random weights, `models.shapes.build_real_shape`), run one GRPO step of our trainer
(`train.train`, its step resets and reads `mx.get_peak_memory()`) and one evaluation batch
(`evaluate.condition_records`, peak reset before it), and compare with `plan.make_plan` for the
same run config on this machine (CPU, float32 compute). Memory does not depend on the machine's
load, so this can run beside other jobs; 4-bit matmuls have no fast CPU kernel (about 2 GFLOPS),
so completions are short.

    python -m hallucue_mlx.fastblas python scripts/check_plan.py [--families ...] [--bits 0 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# SmolVLM resizes every image to 2048 px on its longest edge, then tiles it (17 x 64 tokens):
# the check caps the longest edge at 1024 (2 x 2 tiles + the global image, 320 tokens) to keep
# 4-bit CPU runs short; plan reads the same preprocessor_config.json.
SMOLVLM_LONGEST_EDGE = 1024
FAMILIES = ("qwen2.5-vl-3b", "qwen2-vl-2b", "smolvlm-256m")


@dataclass
class Check:
    family: str
    bits: int | None
    what: str  # "GRPO step" or "evaluation"
    predicted_gb: float
    measured_gb: float
    seconds: float

    @property
    def error(self) -> float:
        return (self.predicted_gb - self.measured_gb) / self.measured_gb


def _fake_reward(response, item):
    """A reward with spread in every group, no grading worker (memory is what is measured)."""
    from hallucue_mlx import rewards

    acc = float(sum(response.encode()) % 3 == 0)
    return rewards.Reward(acc, acc, 0.0, rewards.Grade(None, bool(acc), False))


def run_config(model_dir: Path, **train: object):
    """A run config on the built model: synth items, short completions (4-bit on CPU crawls)."""
    from hallucue_mlx.config import load_config

    sets = {
        "model.id": str(model_dir),
        "model.dtype": "float32",
        "train.prompts_per_step": 2,
        "train.num_generations": 3,
        "train.max_completion_length": 6,
        "train.prompt_template": "short",
        "train.lora_rank": 16,
        "train.steps": 1,
        "train.eval_every": 0,
        "train.save_every": 1,
        "train.beta": 0.01,
        "eval.batch_size": 4,
        "eval.max_tokens": 6,
        **{f"train.{k}": v for k, v in train.items()},
    }
    return load_config(
        None, [f"{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in sets.items()]
    )


def build(family: str, bits: int | None, root: Path) -> Path:
    from hallucue_mlx.models.shapes import build_real_shape

    out = build_real_shape(
        family, root / f"{family}-{bits or 32}", text_layers=2, vision_layers=2, bits=bits
    )
    if family.startswith("smolvlm"):
        pre = json.loads((out / "preprocessor_config.json").read_text())
        pre["size"] = {"longest_edge": SMOLVLM_LONGEST_EDGE}
        (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    return out


def measure(family: str, bits: int | None, root: Path, **train: object) -> list[Check]:
    """Predicted and measured peaks of one GRPO step and one evaluation batch."""
    import mlx.core as mx

    from hallucue_mlx.config import train_config_for
    from hallucue_mlx.evaluate import Decoding, condition_records
    from hallucue_mlx.models.load import load_model
    from hallucue_mlx.plan import machine_speed, make_plan
    from hallucue_mlx.rollout import encode_prompt
    from hallucue_mlx.train import load_items
    from hallucue_mlx.train import train as run_train

    model_dir = build(family, bits, root)
    cfg = run_config(model_dir, **train)
    tcfg = train_config_for(cfg, "none")
    items = load_items("synth", "train", 8, 0)
    model, processor = load_model(str(model_dir), dtype="float32")
    # the prompt's real length: plan is given it, so the check tests the memory model, not the
    # assumed prompt length
    prompt = encode_prompt(processor, model, items[0], template="short")
    n_image = int((prompt.input_ids == model.config.image_token_id).sum().item())
    here = machine_speed("this machine", 100.0, 10.0, 24.0, False, 2.0)
    plan = make_plan(cfg, here=here, text_tokens=prompt.length - n_image, image=items[0].image.size)
    if plan.image_tokens != n_image:
        raise SystemExit(
            f"{family}: plan counts {plan.image_tokens} image tokens, the processor {n_image}"
        )
    del prompt
    checks = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        run_train(
            tcfg,
            model_dir,
            out,
            quiet=True,
            reward_fn=_fake_reward,
            items=items,
            model_and_processor=(model, processor),
        )
        rec = json.loads((Path(out) / "metrics.jsonl").read_text().splitlines()[-1])
    step = "GRPO step" + (
        f" (T={tcfg.max_completion_length})" if tcfg.max_completion_length != 6 else ""
    )
    checks.append(
        Check(
            family,
            bits,
            step,
            plan.mem.train_peak / 1e9,
            rec["peak_memory_gb"],
            time.perf_counter() - t0,
        )
    )
    model, processor = load_model(str(model_dir), dtype="float32")  # no LoRA, as evaluated
    t0 = time.perf_counter()
    mx.reset_peak_memory()
    condition_records(
        model,
        processor,
        items[: cfg.eval.batch_size],
        "none",
        Decoding("short", cfg.eval.max_tokens, cfg.eval.batch_size),
    )
    checks.append(
        Check(
            family,
            bits,
            "evaluation",
            plan.mem.eval_peak / 1e9,
            mx.get_peak_memory() / 1e9,
            time.perf_counter() - t0,
        )
    )
    return checks


def table(checks: list[Check]) -> str:
    rows = [
        "| family | weights | what | predicted GB | measured GB | error | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in checks:
        rows.append(
            f"| {c.family} | {f'{c.bits}-bit' if c.bits else 'float32'} | {c.what} | "
            f"{c.predicted_gb:.2f} | {c.measured_gb:.2f} | {c.error:+.0%} | {c.seconds:.0f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=list(FAMILIES))
    ap.add_argument("--bits", nargs="+", type=int, default=[0, 4], help="0: float32")
    ap.add_argument("--completion", type=int, default=6, help="train.max_completion_length")
    args = ap.parse_args(argv)
    checks: list[Check] = []
    with tempfile.TemporaryDirectory() as root:
        for family in args.families:
            for bits in args.bits:
                checks += measure(
                    family, bits or None, Path(root), max_completion_length=args.completion
                )
                print(table(checks[-2:]).splitlines()[-2:], file=sys.stderr, flush=True)
    print(table(checks))
    return 0 if all(abs(c.error) <= 0.25 for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
