#!/usr/bin/env python
"""Our batched `evaluate` against calling mlx-vlm's `generate` item by item, same items and model.

Both sides: the same checkpoint (loaded separately), the same synth test items with their images,
the same chat-templated prompt, greedy decoding (temperature 0), the same max tokens. Ours runs
the clean condition only (no corruption) and includes grading; mlx-vlm's side is generation only.
A random untrained model rarely emits EOS, so both sides usually decode max_tokens per item.
Prints items/s and generated tokens/s of both sides, the speed ratio and how many greedy
responses agree; the last line is one JSON object.

    python benchmarks/bench_eval_vs_mlx_vlm.py --n 60 --max-tokens 64
    python benchmarks/bench_eval_vs_mlx_vlm.py --model path/to/qwen2.5-vl-dir
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

import hallucue_mlx  # noqa: F401  (binds the fast BLAS before MLX loads)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Model sizes this script can build offline (build_tiny_random arguments).
PRESETS = {
    # hallucue-tiny's architecture: text 256 x 4, vision 128 x 2, about 4.5M parameters
    "tiny": {},
    # about 30M parameters: text 512 x 6 layers, vision 256 x 4 blocks
    "30m": dict(
        text_hidden=512, text_layers=6, text_heads=8, kv_heads=2, vision_hidden=256, vision_depth=4
    ),
}


def bench_ours(path: str, warm: list, items: list, args: argparse.Namespace) -> dict:
    from hallucue_mlx.config import EvalConfig
    from hallucue_mlx.evaluate import evaluate
    from hallucue_mlx.models.load import load_model

    model, proc = load_model(path, dtype="float32")
    cfg = EvalConfig(
        conditions=("none",),
        max_tokens=args.max_tokens,
        batch_size=args.batch_size,
        template=args.template,
        seed=args.seed,
    )
    if warm:
        evaluate(model, proc, warm, cfg, progress=False)  # untimed warm-up
    t0 = time.perf_counter()
    res = evaluate(model, proc, items, cfg, progress=False)
    seconds = time.perf_counter() - t0
    tokens = sum(r["response_tokens"] + (not r["truncated"]) for r in res.records)
    return {
        "seconds": seconds,
        "tokens": tokens,
        "texts": [r["response"] for r in res.records],
    }


def bench_mlx_vlm(path: str, warm: list, items: list, args: argparse.Namespace) -> dict:
    from mlx_vlm import generate
    from mlx_vlm.prompt_utils import apply_chat_template

    from hallucue_mlx.models.load import load_model
    from hallucue_mlx.prompts import build_prompt

    model, proc = load_model(path, dtype="float32")

    def one(item) -> tuple[str, int]:
        images = [item.image] if item.image is not None else None
        prompt = apply_chat_template(
            proc, model.config, build_prompt(item, args.template), num_images=len(images or [])
        )
        out = generate(
            model,
            proc,
            prompt,
            image=images,
            max_tokens=args.max_tokens,
            temperature=0.0,
            verbose=False,
        )
        return out.text, out.generation_tokens

    for item in warm:
        one(item)
    t0 = time.perf_counter()
    outs = [one(item) for item in items]
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "tokens": sum(n for _, n in outs),
        "texts": [t for t, _ in outs],
    }


def _plain(text: str) -> str:
    return re.sub(r"<\|[a-z_]+\|>", "", text).strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="A Qwen2.5-VL/Qwen2-VL checkpoint directory.")
    ap.add_argument(
        "--preset", choices=sorted(PRESETS), default="tiny", help="Model built without --model."
    )
    ap.add_argument("--n", type=int, default=60, help="Timed synth test items.")
    ap.add_argument("--warmup", type=int, default=2, help="Untimed items first, on each side.")
    ap.add_argument("--max-tokens", type=int, default=64, help="Maximum response tokens.")
    ap.add_argument("--batch-size", type=int, default=16, help="Our prompts per generate call.")
    ap.add_argument("--template", default="easyr1", help="Prompt template.")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import mlx.core as mx

    from hallucue_mlx.data.synth import load_synth
    from hallucue_mlx.models.tiny import build_tiny_random

    if args.model is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench_eval_"))
        path = str(build_tiny_random(tmp / args.preset, seed=0, **PRESETS[args.preset]))
        name = f"random qwen2_5_vl ({args.preset})"
    else:
        path, name = args.model, Path(args.model).name
    items = load_synth("test", n=args.n + args.warmup, seed=args.seed)
    warm, timed = items[: args.warmup], items[args.warmup :]
    print(
        f"model {name}; {len(timed)} synth test items (+{len(warm)} warm-up), greedy, "
        f"max {args.max_tokens} tokens, template {args.template}, our batch {args.batch_size}; "
        f"backend {mx.default_device()}",
        flush=True,
    )
    ours = bench_ours(path, warm, timed, args)
    theirs = bench_mlx_vlm(path, warm, timed, args)
    # we decode without special tokens, mlx-vlm keeps them: compare the texts without them
    agree = sum(_plain(a) == _plain(b) for a, b in zip(ours["texts"], theirs["texts"], strict=True))

    header = f"{'side':<22}{'seconds':>9}{'items/s':>10}{'tokens/s':>10}"
    lines = [header, "-" * len(header)]
    rows = {}
    for side, r in (("ours (evaluate)", ours), ("mlx-vlm generate x n", theirs)):
        ips, tps = len(timed) / r["seconds"], r["tokens"] / r["seconds"]
        rows[side] = (ips, tps)
        lines.append(f"{side:<22}{r['seconds']:>9.2f}{ips:>10.2f}{tps:>10.1f}")
    ratio = rows["ours (evaluate)"][0] / rows["mlx-vlm generate x n"][0]
    lines.append(f"{'speed ratio (ours/them)':<22}{'':>9}{ratio:>10.2f}")
    lines.append(f"identical greedy responses (special tokens aside): {agree}/{len(timed)}")
    print("\n".join(lines))
    print(
        json.dumps(
            {
                "model": name,
                "n": len(timed),
                "max_tokens": args.max_tokens,
                "batch_size": args.batch_size,
                "ours_items_per_s": round(rows["ours (evaluate)"][0], 3),
                "mlx_vlm_items_per_s": round(rows["mlx-vlm generate x n"][0], 3),
                "speed_ratio": round(ratio, 3),
                "identical_responses": agree,
            }
        )
    )


if __name__ == "__main__":
    main()
