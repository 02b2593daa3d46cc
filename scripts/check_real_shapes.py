"""End to end at real width: each family at its published widths and vocabulary, reduced depth.

For each model (Qwen2.5-VL-3B, Qwen2-VL-2B, SmolVLM-256M) and dtype (fp32, 4-bit): build a
random-weight checkpoint with 2 text layers and 2 vision blocks (Qwen2.5-VL: one windowed and one
full-attention block) at the published widths (models.shapes), load it through load_model, run
one GRPO step (G=5, LoRA; QLoRA on 4-bit) through train.train on a 448x448 and a 336x672
(portrait) image, evaluate greedily under all four corruptions (none, blank, random,
text_removal), then reload the saved adapter with plain `mlx_vlm.load(dir, adapter_path=)` and
check its logits equal ours. Prints a table (build/load/step/eval seconds, peak memory).

4-bit matmuls have no fast CPU kernel in MLX (about 2 GFLOPS here), so completions are short
(8 tokens) and one prompt per step, and a 4-bit check uses one 224x224 item under two
conditions (none, blank): what 4-bit changes (quantised layers, QLoRA, the adapter reload) does
not depend on the image size or the corruption, which the fp32 checks cover at real sizes. Run with the fast BLAS:
    python -m hallucue_mlx.fastblas python scripts/check_real_shapes.py [--only NAME:DTYPE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import hallucue_mlx  # noqa: E402, F401  (before mlx.core: binds MLX's CPU matmuls to the fast BLAS)

MODELS = ("qwen2.5-vl-3b", "qwen2-vl-2b", "smolvlm-256m")
DTYPES = ("fp32", "4bit")
CONDITIONS = ("none", "blank", "random", "text_removal")
IMAGE_SIZES = ((448, 448), (336, 672))  # (width, height): square and portrait
QUANT_CONDITIONS = ("none", "blank")  # 4-bit: see the docstring
QUANT_IMAGE_SIZES = ((224, 224),)
TEXT_LAYERS, VISION_LAYERS = 2, 2
MAX_TOKENS = 8
GROUP = 5
# Logits of our adapter vs mlx-vlm's reload: fp32 agrees to rounding; 4-bit shares the
# quantised base, so only the LoRA path (computed in a different order) differs.
LOGIT_ATOL = 1e-3


def real_size_items(n: int = 2, seed: int = 0, sizes=IMAGE_SIZES) -> list:
    """`n` synthetic items whose images are scaled to `sizes` in turn (square, portrait, ...)."""
    from PIL import Image

    from hallucue_mlx.data.synth import load_synth

    items = load_synth("train", n=n, seed=seed)
    return [
        it.with_(image=it.image.convert("RGB").resize(sizes[i % len(sizes)], Image.BILINEAR))
        for i, it in enumerate(items)
    ]


def spread_reward(response: str, item, cfg=None):
    """A reward with spread inside a group whenever its completions differ: a random model
    never answers right, and a zero-variance group would make no update. A hash spread over
    [0, 1) rather than a coin (byte-sum parity): five completions all landing on one side of a
    coin happens for 1 seed in 16, and then the check fails for a reason that is not a bug."""
    import zlib

    import hallucue_mlx.rewards as rewards

    acc = (zlib.crc32(response.encode()) % 1000) / 1000
    return rewards.Reward(acc, acc, 1.0, rewards.Grade(None, acc >= 0.5, True))


def _train_config():
    from hallucue_mlx.config import TrainConfig, build

    return build(
        TrainConfig,
        dict(
            steps=1,
            n_train=2,
            prompts_per_step=1,
            num_generations=GROUP,
            max_completion_length=MAX_TOKENS,
            eval_every=0,
            save_every=1,
            learning_rate=1e-2,
            warmup_steps=0,
            prompt_template="short",
            corruption="none",
            lora_rank=8,
            dtype="float32",
        ),
        "train",
    )


def _evaluate(model, processor, items, conditions=CONDITIONS) -> dict[str, int]:
    """Greedy answers under each condition; {condition: records}. Checks every record."""
    from hallucue_mlx.evaluate import Decoding, greedy_eval

    decoding = Decoding(template="short", max_tokens=MAX_TOKENS, batch_size=len(items))
    out = greedy_eval(model, processor, items, conditions, decoding, reward_fn=spread_reward)
    for cond, records in out.items():
        if len(records) != len(items) or not all(isinstance(r["response"], str) for r in records):
            raise AssertionError(f"evaluation under {cond}: bad records {records!r:.300}")
    return {cond: len(records) for cond, records in out.items()}


def _adapter_logits(model_dir: Path, adapter: Path, ours, processor, item) -> tuple[float, float]:
    """(max |logit difference| between our trained model and plain
    mlx_vlm.load(adapter_path=), the same between our model with and without its LoRA)."""
    import mlx.core as mx
    import mlx_vlm

    from hallucue_mlx.forward import encode_prompt, prefill
    from hallucue_mlx.models.lora import lora_disabled

    prompt = encode_prompt(processor, ours, item, template="short")
    a = prefill(ours, prompt)[0]
    mx.eval(a)
    with lora_disabled(ours):
        base = prefill(ours, prompt)[0]
        mx.eval(base)
    theirs, proc2 = mlx_vlm.load(str(model_dir), adapter_path=str(adapter))
    b = prefill(theirs, encode_prompt(proc2, theirs, item, template="short"))[0]
    diff = float(mx.abs(a - b.astype(a.dtype)).max())
    del theirs
    return diff, float(mx.abs(a - base).max())


def check(name: str, dtype: str, root: Path) -> dict:
    """One real-width run; returns its table row (raises on any failed check)."""
    import mlx.core as mx

    from hallucue_mlx.models.load import load_model
    from hallucue_mlx.models.shapes import build_real_shape
    from hallucue_mlx.train import train

    row: dict = {"model": name, "dtype": dtype}
    quant = dtype == "4bit"
    items = real_size_items(1, sizes=QUANT_IMAGE_SIZES) if quant else real_size_items()
    t = time.perf_counter()
    model_dir = build_real_shape(
        name,
        root / f"{name}-{dtype}",
        text_layers=TEXT_LAYERS,
        vision_layers=VISION_LAYERS,
        bits=4 if dtype == "4bit" else None,
    )
    row["build_s"] = time.perf_counter() - t
    mx.clear_cache()
    mx.reset_peak_memory()
    t = time.perf_counter()
    model, processor = load_model(model_dir, dtype="float32")
    row["load_s"] = time.perf_counter() - t
    t = time.perf_counter()
    res = train(
        _train_config(),
        model_dir,
        root / f"{name}-{dtype}-run",
        quiet=True,
        model_and_processor=(model, processor),
        items=items,
        reward_fn=spread_reward,
    )
    row["step_s"] = time.perf_counter() - t
    saved = mx.load(str(res.adapter_dir / "adapters.safetensors"))
    if not any(float(mx.abs(v).max()) > 0 for k, v in saved.items() if "lora_b" in k):
        raise AssertionError(f"{name} {dtype}: the GRPO step left every lora_b at zero")
    t = time.perf_counter()
    row["eval"] = _evaluate(model, processor, items, QUANT_CONDITIONS if quant else CONDITIONS)
    row["eval_s"] = time.perf_counter() - t
    row["peak_gb"] = mx.get_peak_memory() / 1e9
    row["adapter_max_diff"], row["adapter_effect"] = _adapter_logits(
        model_dir, res.adapter_dir, model, processor, items[0]
    )
    if not row["adapter_max_diff"] < LOGIT_ATOL:
        raise AssertionError(
            f"{name} {dtype}: mlx_vlm.load(adapter_path=) logits differ from ours by "
            f"{row['adapter_max_diff']:.2e}"
        )
    if not row["adapter_effect"] > 10 * max(row["adapter_max_diff"], 1e-6):
        raise AssertionError(
            f"{name} {dtype}: the adapter barely changes the logits "
            f"({row['adapter_effect']:.2e}), so the reload comparison shows nothing"
        )
    row["ok"] = True
    return row


def format_table(rows: list[dict]) -> str:
    head = f"{'model':<15}{'dtype':<6}{'build s':>8}{'load s':>8}{'step s':>8}{'eval s':>8}"
    head += f"{'peak GB':>9}{'adapter diff':>14}{'LoRA effect':>13}  OK"
    lines = [head]
    for r in rows:
        if not r.get("ok"):
            lines.append(f"{r['model']:<15}{r['dtype']:<6}  FAILED: {r.get('error', '')}")
            continue
        lines.append(
            f"{r['model']:<15}{r['dtype']:<6}{r['build_s']:>8.1f}{r['load_s']:>8.1f}"
            f"{r['step_s']:>8.1f}{r['eval_s']:>8.1f}{r['peak_gb']:>9.2f}"
            f"{r['adapter_max_diff']:>14.1e}{r['adapter_effect']:>13.1e}  ok"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="runs as NAME:DTYPE (e.g. smolvlm-256m:4bit); default: every model and dtype",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the checkpoints here")
    args = ap.parse_args(argv)
    runs = [tuple(s.split(":")) for s in args.only] if args.only else None
    runs = runs or [(m, d) for m in MODELS for d in DTYPES]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        for name, dtype in runs:
            try:
                rows.append(check(name, dtype, root))
            except Exception as e:  # report every run, then fail
                rows.append({"model": name, "dtype": dtype, "ok": False, "error": repr(e)[:300]})
            print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    print(format_table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if all(r.get("ok") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
