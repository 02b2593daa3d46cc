"""Peak memory of a GRPO step's loss phase at the paper preset's shape, before and after the
chunked vocabulary head and the micro-batched loss (MLX's `mx.get_peak_memory`).

The model is Qwen2.5-VL-3B at its real widths and 151,936-token vocabulary but reduced depth
(2 text layers, 2 vision blocks; random weights, `models.shapes.build_real_shape`), float32,
LoRA r16 alpha 32 on the default targets, gradient checkpointing on and beta 0.01, as
paper-qwen25vl-3b.yaml trains. Each prompt is 250 text tokens plus an 800x600 image at EasyR1's
pixel limits (609 image tokens: plan's assumed prompt); every completion runs to the completion
limit (random token ids: memory does not depend on them). What is measured is the update phase
of a step: the reference log-probs, the loss forward and backward over every micro-batch and
the AdamW update, after the model, LoRA and optimizer state are in memory (the rollout phase's
peak is plan's "rollout" row; decoding 768 tokens at the full vocabulary on a CPU takes long).

- before: the whole batch as one graph with the head unchunked (what a GPU ran before: the
  float32 logits of every position over the whole vocabulary, for every group at once);
- after: micro-batches of --micro completions (default: one group) and the chunked head.

Each mode runs in its own process (peaks are per process) and prints one JSON line with the
measured peak and plan's prediction for the same shape; the last line compares the two.

    python -m hallucue_mlx.fastblas python benchmarks/bench_step_memory.py \\
        [--prompts 4 --generations 5 --completion 768] [--modes before after]

The full paper shape's "before" needs more than 30 GB; run it at a smaller --completion or
--prompts on a smaller machine (the reduction grows with both).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIN_PIXELS, MAX_PIXELS = 262144, 4194304  # EasyR1's (paper-qwen25vl-3b.yaml)
TEXT_TOKENS = 250
IMAGE = (800, 600)


def _prompt_text(processor, n_tokens: int) -> str:
    """A question of about n_tokens tokens in the chat template (the image's tokens aside)."""
    tok = getattr(processor, "tokenizer", processor)
    words = "In the figure, triangle ABC has a right angle at C and the segment lengths are marked."
    text = words
    while len(tok(text)["input_ids"]) < n_tokens - 30:  # the template adds about 30
        text += " " + words
    return text


def measure(args: argparse.Namespace, mode: str) -> dict:
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    import numpy as np
    from mlx.utils import tree_map
    from PIL import Image

    from hallucue_mlx.forward import encode_prompt, logit_bias
    from hallucue_mlx.grpo import LossConfig, make_batch, micro_batches, policy_loss
    from hallucue_mlx.grpo import reference_logprobs as ref_lp
    from hallucue_mlx.models.load import load_model
    from hallucue_mlx.models.lora import LoraConfig, apply_lora

    before = mode == "before"
    model, proc = load_model(
        str(args.model_dir), dtype="float32", min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS
    )
    apply_lora(model, LoraConfig(rank=16, alpha=32.0))
    opt = optim.AdamW(learning_rate=1e-5)
    opt.init(model.trainable_parameters())
    bias = logit_bias(model, proc)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (IMAGE[1], IMAGE[0], 3), dtype=np.uint8)
    prompt = encode_prompt(proc, model, _prompt_text(proc, TEXT_TOKENS), Image.fromarray(pixels))
    P, G, T = args.prompts, args.generations, args.completion
    comps = [[int(x) for x in rng.integers(10, 150000, T)] for _ in range(P * G)]
    batch = make_batch([prompt] * P, comps, [[-1.0] * T] * (P * G), rng.normal(size=P * G))
    head_rows = 0 if before else None
    cfg = LossConfig(beta=0.01, temperature=0.7, head_rows=head_rows)
    vg = nn.value_and_grad(model, lambda b: policy_loss(model, b, cfg, bias, True))
    micro = P * G if before else args.micro or G
    mx.eval(model.parameters(), opt.state, batch.completion_ids, batch.mask, batch.advantages)
    mx.reset_peak_memory()
    t0 = time.perf_counter()
    total = None
    shares = micro_batches(batch, micro)
    for share in shares:
        share.ref_logps = ref_lp(model, share, bias, cfg.temperature, head_rows=head_rows)
        out = vg(share)
        total = out if total is None else tree_map(lambda a, b: a + b, total, out)
        if len(shares) > 1:
            mx.eval(total)
    (loss, _), grads = total
    grads, _ = optim.clip_grad_norm(grads, 1.0)
    opt.update(model, grads)
    mx.eval(loss, model.trainable_parameters(), opt.state)
    seconds = time.perf_counter() - t0
    peak = mx.get_peak_memory() / 1e9
    n_image = int((prompt.input_ids == model.config.image_token_id).sum().item())
    return {
        "mode": mode,
        "shape": f"{P} prompts x {G} x {T} tokens",
        "prompt_tokens": prompt.length,
        "image_tokens": n_image,
        "micro_batch": micro,
        "head_rows": head_rows,
        "peak_gb": round(peak, 3),
        "predicted_gb": round(predict(args, prompt.length - n_image, micro, head_rows), 3),
        "seconds": round(seconds, 1),
    }


def predict(args: argparse.Namespace, text_tokens: int, micro: int, head_rows: int | None):
    """plan's peak for the same shape on a CPU (float32), in GB."""
    from dataclasses import replace

    from hallucue_mlx.config import load_config
    from hallucue_mlx.plan import _peaks, machine_speed, make_plan, processor_of, read_model

    sets = [
        f"model.id={args.model_dir}",
        "model.dtype=float32",
        f"train.prompts_per_step={args.prompts}",
        f"train.num_generations={args.generations}",
        f"train.max_completion_length={args.completion}",
        f"train.micro_batch_size_per_device_for_update={micro}",
    ]
    cfg = load_config("paper-qwen25vl-3b", sets)
    here = machine_speed("this machine", 100.0, 10.0, 24.0, False, 2.0)
    plan = make_plan(cfg, here=here, image=IMAGE, text_tokens=text_tokens)
    src = read_model(str(args.model_dir))
    w = replace(plan.work, head_rows=head_rows)
    return _peaks(plan.arch, processor_of(src, plan.arch.family), w).train_peak / 1e9


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--generations", type=int, default=5)
    ap.add_argument("--completion", type=int, default=768)
    ap.add_argument("--micro", type=int, default=0, help="after: completions per micro-batch")
    ap.add_argument("--modes", nargs="+", default=["before", "after"])
    ap.add_argument("--model-dir", type=Path, default=None, help="a built checkpoint to reuse")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child process's mode
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args, args.one)), flush=True)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        if args.model_dir is None:
            from hallucue_mlx.models.shapes import build_real_shape

            args.model_dir = build_real_shape(
                "qwen2.5-vl-3b", Path(tmp) / "qwen25vl3b-2l", text_layers=2, vision_layers=2
            )
        rows = []
        for mode in args.modes:
            cmd = [sys.executable, __file__, "--one", mode, "--model-dir", str(args.model_dir)]
            cmd += ["--prompts", str(args.prompts), "--generations", str(args.generations)]
            cmd += ["--completion", str(args.completion), "--micro", str(args.micro)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                print(out.stderr[-3000:], file=sys.stderr)
                return out.returncode
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    by = {r["mode"]: r for r in rows}
    if {"before", "after"} <= set(by):
        ratio = by["before"]["peak_gb"] / by["after"]["peak_gb"]
        print(json.dumps({"before_over_after": round(ratio, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
