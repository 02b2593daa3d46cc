"""Measure MLX on Linux CPU with and without the preloaded OpenBLAS.

    python scripts/bench_blas.py [--reps 5] [--steps 5]

Each variant runs in its own process (preloading only works from process start): fp32 GEMM
1024^3 GFLOPS, and a forward+backward step of the tiny Qwen2.5-VL (batch 8, 112 px images).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

CHILD = r"""
import json, sys, time
import mlx.core as mx
import mlx.nn as nn
from PIL import Image
from mlx_vlm.prompt_utils import apply_chat_template
from mlx_vlm.utils import prepare_inputs
from hallucue_mlx.backend import fast_blas_loaded, matmul_gflops
from hallucue_mlx.models import load_model

model_dir, reps, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
gflops = matmul_gflops(reps=reps)
model, processor = load_model(model_dir, dtype="float32")
model.train()
prompt = apply_chat_template(processor, model.config, "How many dots are there? " * 3, num_images=1)
image = Image.new("RGB", (112, 112), (90, 160, 30))
inputs = prepare_inputs(processor, images=[image] * 8, prompts=[prompt] * 8)
ids, pixels, mask = inputs["input_ids"], inputs["pixel_values"], inputs["attention_mask"]
extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "pixel_values", "attention_mask")}

def loss_fn(model):
    logits = model(ids, pixels, mask=mask, **extra).logits[:, :-1]
    return nn.losses.cross_entropy(logits, ids[:, 1:], reduction="mean")

step = nn.value_and_grad(model, loss_fn)
times = []
for i in range(steps + 1):
    start = time.perf_counter()
    loss, grads = step(model)
    mx.eval(loss, grads)
    if i:  # the first step includes one-off setup
        times.append(time.perf_counter() - start)
times.sort()
print(json.dumps({"gflops": gflops, "step_s": times[len(times) // 2], "tokens": ids.shape[1],
                  "openblas": fast_blas_loaded()}))
"""


def run_variant(
    model_dir: Path, fast: bool, reps: int, steps: int, threads: int | None = None
) -> dict:
    from hallucue_mlx.backend import ACTIVE_ENV, fast_blas_env

    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", ACTIVE_ENV)}
    env["HF_HUB_OFFLINE"] = "1"
    if fast:
        setup = fast_blas_env()
        if setup is None:
            raise SystemExit("no fast BLAS available here (needs Linux, mlx-cpu, cmeel-openblas)")
        env.update(setup.env)
    if threads is not None:
        env["OPENBLAS_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-c", CHILD, str(model_dir), str(reps), str(steps)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="timed GEMM repetitions (best of)")
    parser.add_argument(
        "--steps", type=int, default=5, help="timed forward+backward steps (median)"
    )
    args = parser.parse_args()
    from hallucue_mlx.models import build_tiny_random

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_random(Path(tmp) / "tiny", "qwen2_5_vl", seed=0)
        slow = run_variant(model_dir, False, args.reps, args.steps)
        fast = run_variant(model_dir, True, args.reps, args.steps)
        # OpenBLAS threads spin while waiting: on a busy machine one thread can beat several.
        one = run_variant(model_dir, True, args.reps, args.steps, threads=1)
    table = Table(title=f"MLX CPU, reference BLAS vs preloaded OpenBLAS ({os.cpu_count()} cores)")
    for col in ("", "reference BLAS", "OpenBLAS", "speed-up", "OpenBLAS 1 thread", "speed-up"):
        table.add_column(col, justify="right")
    table.add_row(
        "fp32 GEMM 1024^3 (GFLOPS)",
        f"{slow['gflops']:.1f}",
        f"{fast['gflops']:.1f}",
        f"{fast['gflops'] / slow['gflops']:.1f}x",
        f"{one['gflops']:.1f}",
        f"{one['gflops'] / slow['gflops']:.1f}x",
    )
    table.add_row(
        f"tiny Qwen2.5-VL fwd+bwd, 8 x {fast['tokens']} tok (s)",
        f"{slow['step_s']:.3f}",
        f"{fast['step_s']:.3f}",
        f"{slow['step_s'] / fast['step_s']:.1f}x",
        f"{one['step_s']:.3f}",
        f"{slow['step_s'] / one['step_s']:.1f}x",
    )
    Console(width=max(Console().width, 120)).print(table)
    if slow["openblas"] or not fast["openblas"] or not one["openblas"]:
        Console().print("[red]preload did not take effect as expected[/red]")


if __name__ == "__main__":
    main()
