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

`--calibrate` prints the measurements behind plan's per-layer constants instead: the loss's
memory at 2 and 4 text layers of each family's widths (1024-token vocabulary, text-only prompts).
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
    from hallucue_mlx.forward import encode_prompt
    from hallucue_mlx.models.load import load_model
    from hallucue_mlx.plan import machine_speed, make_plan
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


# ---------------------------------------------------------------- calibration (plan's constants)

# real widths: (hidden, intermediate, heads, kv heads)
WIDTHS = {
    "qwen2.5-vl-3b": (2048, 11008, 16, 2),
    "qwen2-vl-2b": (1536, 8960, 12, 2),
    "smolvlm-256m": (576, 1536, 9, 3),
}


def _text_model(layers: int, hidden: int, inter: int, heads: int, kv: int):
    """mlx-vlm's Qwen2.5-VL class at these text widths, a 1024-token vocabulary (so the logits do
    not hide the layers) and a one-block vision tower, with LoRA r16 on every linear layer."""
    import mlx.core as mx
    from mlx_vlm.utils import get_model_and_args, update_module_configs

    from hallucue_mlx.models.lora import LoraConfig, apply_lora
    from hallucue_mlx.models.tiny import QWEN_SPECIAL_TOKENS, _config

    ids = {t: 1000 + i for i, t in enumerate(QWEN_SPECIAL_TOKENS)}
    cfg = _config(
        "qwen2_5_vl",
        ids,
        vocab_size=1024,
        text_hidden=hidden,
        text_layers=layers,
        text_heads=heads,
        kv_heads=kv,
        vision_hidden=64,
        vision_depth=1,
        vision_heads=2,
        image_size=112,
        dtype="float32",
    )
    cfg["intermediate_size"] = inter
    arch, _ = get_model_and_args(json.loads(json.dumps(cfg)))
    own = json.loads(json.dumps(cfg))  # from_dict mutates its argument
    model_config = arch.ModelConfig.from_dict(own)
    model_config = update_module_configs(model_config, arch, own, ["text", "vision"])
    mx.random.seed(0)
    model = arch.Model(model_config)
    mx.eval(model.parameters())
    apply_lora(model, LoraConfig(rank=16, alpha=32.0))
    return model


def loss_peak(model, L: int, G: int, T: int, checkpoint: bool) -> float:
    """Bytes the loss forward/backward adds to the peak for one text-only prompt of L tokens and
    G completions of T tokens (grpo.policy_loss under nn.value_and_grad, as train.py runs it)."""
    import mlx.core as mx
    import mlx.nn as nn

    from hallucue_mlx.forward import PromptInputs
    from hallucue_mlx.grpo import LossConfig, make_batch, policy_loss

    pos = mx.broadcast_to(mx.arange(L)[None, None], (3, 1, L)).astype(mx.int32)
    prompt = PromptInputs(mx.arange(L).astype(mx.int32) % 100 + 10, pos, 0, None)
    comps = [[(7 * i + t) % 100 + 10 for t in range(T)] for i in range(G)]
    batch = make_batch([prompt], comps, [[0.0] * T] * G, mx.zeros(G))
    bias = mx.zeros((1024,))
    model.train()
    grad = nn.value_and_grad(model, lambda b: policy_loss(model, b, LossConfig(), bias, checkpoint))
    mx.eval(batch.completion_ids, batch.mask, batch.old_logps, batch.advantages, bias)
    base = mx.get_active_memory()
    mx.reset_peak_memory()
    (loss, metrics), grads = grad(batch)
    mx.eval(loss, metrics, grads)
    return mx.get_peak_memory() - base


def calibrate(families: list[str]) -> None:
    """Per decoder layer and token, what the loss keeps (2 vs 4 layers), in elements of
    hidden and of intermediate: the data behind plan.ACT_D / ACT_I and CKPT_D."""
    for family in families:
        hidden, inter, heads, kv = WIDTHS[family]
        peaks = {k: _text_model(k, hidden, inter, heads, kv) for k in (2, 4)}
        for L, G, T in ((64, 5, 16), (256, 5, 16), (64, 5, 64)):
            n = L + G * (T - 1)
            for ck in (False, True):
                two, four = (loss_peak(peaks[k], L, G, T, ck) for k in (2, 4))
                per_token = (four - two) / 2 / n / 4  # float32 elements
                print(
                    f"{family} L={L} G={G} T={T} checkpoint={ck}: per layer and token "
                    f"{per_token:.0f} elements = {per_token / hidden:.1f} x hidden; "
                    f"2 layers {two / 1e6:.0f} MB, 4 layers {four / 1e6:.0f} MB",
                    flush=True,
                )


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
    ap.add_argument(
        "--calibrate", action="store_true", help="print the per-layer loss memory instead"
    )
    args = ap.parse_args(argv)
    if args.calibrate:
        calibrate(args.families)
        return 0
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
