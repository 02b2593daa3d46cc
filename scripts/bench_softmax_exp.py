#!/usr/bin/env python
"""MLX's softmax against one whose exp is built from MLX's vector ops, by row count.

    python -m hallucue_mlx.fastblas python scripts/bench_softmax_exp.py
    python -m hallucue_mlx.fastblas python scripts/bench_softmax_exp.py --cols 904 --reps 20

Why: MLX's x86-64 CPU backend computes exp one float at a time (scripts/bench_cpu_ops.py), and
a GRPO step takes one per attention score and vocabulary logit. models/vector_silu.py removed
the SiLU's exp; this measures whether the softmaxes' would pay the same way, and is the record
of why they keep MLX's (docs/design.md, Backend). The exp here: Cody-Waite reduction
x = n ln 2 + r, Cephes' degree-5 polynomial for exp(r), 2^n written into the exponent bits
(a shift and a bit `view`), arguments <= 0 only (the row's maximum subtracted first); about
twenty MLX ops, run as plain ops (`view` has no shape rule, so no shapeless mx.compile) as
they run inside nn.value_and_grad. For each size it prints the median us of mx.softmax
(precise) and of this softmax, forward and forward + backward (a custom VJP from the output),
their ratio, and the largest relative error of this exp against float64 (and of mx.exp), then
one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LOG2E = 1.4426950408889634
LN2_HI, LN2_LO = 0.693359375, -2.12194440e-4  # ln 2 in two parts: n * LN2_HI exact
P = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 0.5)
FLOOR = -87.0  # exp(-87) = 1.6e-38: below, 2^n leaves float32's normal range; 0 there


def exp_nonpositive(x):
    """exp(x) for float32 x <= 0 from multiply, add, floor, shift and select; 0 below -87."""
    import mlx.core as mx

    xc = mx.maximum(x, FLOOR)
    n = mx.floor(xc * LOG2E + 0.5)
    r = (xc - n * LN2_HI) - n * LN2_LO
    p = P[0]
    for c in P[1:]:
        p = p * r + c
    two_n = mx.left_shift(n.astype(mx.int32) + 127, 23).view(mx.float32)
    return mx.where(x < FLOOR, 0.0, ((r * r) * p + r + 1.0) * two_n)


def make_softmax():
    import mlx.core as mx

    @mx.custom_function
    def softmax(x):
        e = exp_nonpositive(x - mx.stop_gradient(x.max(axis=-1, keepdims=True)))
        return e / e.sum(axis=-1, keepdims=True)

    @softmax.vjp
    def _vjp(primals, cotangent, output):
        return output * (cotangent - (cotangent * output).sum(axis=-1, keepdims=True))

    return softmax


def exp_errors() -> dict[str, float]:
    """Largest relative error against float64 over [-87, 0] (and tiny magnitudes)."""
    import mlx.core as mx
    import numpy as np

    x = np.concatenate([-np.logspace(-8, np.log10(87), 200_000), np.linspace(FLOOR, 0, 200_001)])
    x = x.astype(np.float32)
    want = np.exp(x.astype(np.float64))
    ours = np.array(exp_nonpositive(mx.array(x))).astype(np.float64)
    theirs = np.array(mx.exp(mx.array(x))).astype(np.float64)
    return {
        "exp_max_rel_err": float((np.abs(ours - want) / want).max()),
        "mlx_exp_max_rel_err": float((np.abs(theirs - want) / want).max()),
    }


def median_us(fn, reps: int) -> float:
    import mlx.core as mx

    for _ in range(3):
        mx.eval(fn())
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        mx.eval(fn())
        times.append(time.perf_counter() - t0)
    return 1e6 * statistics.median(times)


def time_size(x, cot, softmax, reps: int) -> dict[str, float]:
    """Median us of MLX's softmax and `softmax`, forward and forward + backward, on x."""
    import mlx.core as mx

    def mlx_softmax(t):
        return mx.softmax(t, axis=-1, precise=True)

    return {
        "mlx_fwd_us": median_us(lambda: mlx_softmax(x), reps),
        "ours_fwd_us": median_us(lambda: softmax(x), reps),
        "mlx_fwd_bwd_us": median_us(lambda: mx.vjp(mlx_softmax, [x], [cot]), reps),
        "ours_fwd_bwd_us": median_us(lambda: mx.vjp(softmax, [x], [cot]), reps),
        "max_abs_diff": float(mx.abs(softmax(x) - mlx_softmax(x)).max()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cols", type=int, default=160, help="Row length (keys or vocabulary).")
    ap.add_argument("--rows", default="16,64,256,1024,4096", help="Comma-separated row counts.")
    ap.add_argument("--reps", type=int, default=40, help="Timed calls per figure (median).")
    args = ap.parse_args(argv)
    rows = [int(r) for r in args.rows.split(",") if r]
    if args.cols < 1 or args.reps < 1 or not rows or min(rows) < 1:
        ap.error("--cols, --reps and every --rows entry must be >= 1")

    import mlx.core as mx

    from hallucue_mlx.backend import backend_name, fast_blas_loaded

    softmax = make_softmax()
    out = {"errors": exp_errors(), "sizes": {}}
    print(f"MLX on {backend_name()} ({'OpenBLAS' if fast_blas_loaded() else 'its own BLAS'})")
    print(
        f"{'elements':>10s}{'fwd MLX us':>12s}{'fwd ours':>10s}{'ratio':>7s}"
        f"{'f+b MLX us':>12s}{'f+b ours':>10s}{'ratio':>7s}{'max diff':>10s}"
    )
    for n in rows:
        key = mx.random.split(mx.random.key(n), 2)
        x = 8 * mx.random.normal((n, args.cols), key=key[0])
        cot = mx.random.normal(x.shape, key=key[1])
        mx.eval(x, cot)
        r = time_size(x, cot, softmax, args.reps)
        r["fwd_ratio"] = r["ours_fwd_us"] / r["mlx_fwd_us"]
        r["fwd_bwd_ratio"] = r["ours_fwd_bwd_us"] / r["mlx_fwd_bwd_us"]
        out["sizes"][str(x.size)] = r
        print(
            f"{x.size:>10d}{r['mlx_fwd_us']:>12.0f}{r['ours_fwd_us']:>10.0f}{r['fwd_ratio']:>7.2f}"
            f"{r['mlx_fwd_bwd_us']:>12.0f}{r['ours_fwd_bwd_us']:>10.0f}"
            f"{r['fwd_bwd_ratio']:>7.2f}{r['max_abs_diff']:>10.1e}"
        )
    e = out["errors"]
    print(
        f"exp max relative error against float64: ours {e['exp_max_rel_err']:.1e}, "
        f"mx.exp {e['mlx_exp_max_rel_err']:.1e}"
    )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
