"""A slice of the default grid, timed by phase: what one GRPO training step and one evaluated item
of `hallucue-mlx run` cost on this machine, in one process.

    python benchmarks/bench_grid_slice.py                  # 8 steps, 128 test items
    python benchmarks/bench_grid_slice.py --steps 4 --n 64

The default config's training recipe (16 prompts x 8 completions, 64 tokens, beta 0.01) on
hallucue-tiny, then greedy evaluation of the base model on synth's test split. Run it under
farm-bench-style A/B timing (or `/usr/bin/time -v`) with an environment variable changed to compare
two settings of the same code.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8, help="GRPO steps of the default recipe")
    ap.add_argument("--n", type=int, default=128, help="test items evaluated (clean)")
    args = ap.parse_args()

    import hallucue_mlx as hm  # binds the fast BLAS before MLX loads
    from hallucue_mlx import blas

    with tempfile.TemporaryDirectory(prefix="bench_grid_slice_") as tmp:
        t0 = time.perf_counter()
        over = {"train.steps": args.steps, "train.eval_every": 0, "train.save_every": 1000}
        hm.train(condition="none", out=f"{tmp}/train", overrides=over, quiet=True)
        t1 = time.perf_counter()
        hm.evaluate(n=args.n, conditions=["none"], out=f"{tmp}/eval", quiet=True)
        t2 = time.perf_counter()
    print(
        json.dumps(
            {
                "blas": blas.status().name,
                "train_s_per_step": round((t1 - t0) / args.steps, 3),
                "eval_items_per_s": round(args.n / (t2 - t1), 2),
                "steps": args.steps,
                "n": args.n,
            }
        )
    )


if __name__ == "__main__":
    main()
