#!/usr/bin/env python
"""Elementwise throughput of MLX on this machine, next to NumPy (and PyTorch when installed).

    python -m hallucue_mlx.fastblas python scripts/bench_cpu_ops.py
    python -m hallucue_mlx.fastblas python scripts/bench_cpu_ops.py --n 262144 --threads 2

Why. A GRPO step on a small model spends a large share of its loss forward and backward in
transcendental elementwise ops: the SiLU of every MLP (an exp per hidden unit), the attention
softmax and the log-softmax over the vocabulary. MLX's Linux x86-64 CPU backend computes these
one float at a time (its SIMD layer has no x86 vector type), while NumPy and PyTorch use AVX
vector math. This script prints ns per element for each op on a float32 array of --n elements
(the median of --reps timed calls after a warm-up; one MLX evaluation or library call each),
the fp32 GEMM ceiling (`backend.matmul_gflops`, the number `hallucue-mlx doctor` reports) for
scale, the SwiGLU of models/vector_silu.py (what load_model uses on this CPU backend) next to
mlx-vlm's, and a last line of JSON. On a Mac (NEON) or a GPU these ops are vectorised; there the
numbers say little about this machine's comparison with TRL (scripts/bench_grpo_vs_trl.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def median_seconds(fn: Callable[[], object], reps: int) -> float:
    fn()  # warm-up (and, for MLX, any kernel build)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def mlx_ops(n: int, reps: int) -> dict[str, float]:
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_vlm.models.activations import swiglu

    x = mx.random.normal((n,), key=mx.random.key(0))
    u = mx.random.normal((n,), key=mx.random.key(1))
    mx.eval(x, u)
    ops = {
        "add": lambda: x + x,
        "multiply": lambda: x * x,
        "exp": lambda: mx.exp(x),
        "log": lambda: mx.log(mx.abs(x) + 1),
        "sigmoid": lambda: mx.sigmoid(x),
        "silu": lambda: nn.silu(x),
        "tanh": lambda: mx.tanh(x),
        "swiglu": lambda: swiglu(x, u),  # mlx-vlm's MLP activation: silu(gate) * up, compiled
    }
    return {k: median_seconds(lambda f=f: mx.eval(f()), reps) / n * 1e9 for k, f in ops.items()}


def mlx_vector_swiglu(n: int, reps: int) -> float:
    """ns per element of models/vector_silu.py's swiglu, which load_model uses on x86-64 CPUs."""
    import mlx.core as mx

    from hallucue_mlx.models.vector_silu import swiglu

    x = mx.random.normal((n,), key=mx.random.key(0))
    u = mx.random.normal((n,), key=mx.random.key(1))
    mx.eval(x, u)
    return median_seconds(lambda: mx.eval(swiglu(x, u)), reps) / n * 1e9


def numpy_ops(n: int, reps: int) -> dict[str, float]:
    import numpy as np

    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    u = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    ops = {
        "add": lambda: x + x,
        "multiply": lambda: x * x,
        "exp": lambda: np.exp(x),
        "log": lambda: np.log(np.abs(x) + 1),
        "sigmoid": lambda: 1 / (1 + np.exp(-x)),
        "silu": lambda: x / (1 + np.exp(-x)),
        "tanh": lambda: np.tanh(x),
        "swiglu": lambda: x / (1 + np.exp(-x)) * u,
    }
    return {k: median_seconds(f, reps) / n * 1e9 for k, f in ops.items()}


def torch_ops(n: int, reps: int, threads: int) -> dict[str, float] | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    x = torch.randn(n, generator=torch.Generator().manual_seed(0))
    u = torch.randn(n, generator=torch.Generator().manual_seed(1))
    ops = {
        "add": lambda: x + x,
        "multiply": lambda: x * x,
        "exp": lambda: torch.exp(x),
        "log": lambda: torch.log(x.abs() + 1),
        "sigmoid": lambda: torch.sigmoid(x),
        "silu": lambda: torch.nn.functional.silu(x),
        "tanh": lambda: torch.tanh(x),
        "swiglu": lambda: torch.nn.functional.silu(x) * u,
    }
    return {k: median_seconds(f, reps) / n * 1e9 for k, f in ops.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1 << 20, help="Elements per array (float32).")
    ap.add_argument("--reps", type=int, default=9, help="Timed calls per op (median).")
    ap.add_argument("--threads", type=int, default=2, help="BLAS / PyTorch threads.")
    args = ap.parse_args(argv)
    if args.n < 1 or args.reps < 1:
        ap.error("--n and --reps must be >= 1")

    import mlx.core as mx

    from hallucue_mlx.backend import backend_name, fast_blas_loaded, matmul_gflops, set_blas_threads

    set_blas_threads(args.threads)
    gflops = matmul_gflops(reps=5)
    results = {"mlx": mlx_ops(args.n, args.reps), "numpy": numpy_ops(args.n, args.reps)}
    torch_res = torch_ops(args.n, args.reps, args.threads)
    if torch_res is not None:
        results["torch"] = torch_res
    sides = list(results)
    print(
        f"MLX {mx.__version__} on {backend_name()} "
        f"({'OpenBLAS preloaded' if fast_blas_loaded() else 'its bundled BLAS'}); "
        f"fp32 GEMM ceiling {gflops:.0f} GFLOPS; {args.n} float32 elements, median of {args.reps}"
    )
    header = f"{'op':10s}" + "".join(f"{s + ' ns/el':>14s}" for s in sides)
    header += "".join(f"{'mlx / ' + s:>14s}" for s in sides[1:])
    print(header)
    print("-" * len(header))
    for op in results["mlx"]:
        row = f"{op:10s}" + "".join(f"{results[s][op]:14.2f}" for s in sides)
        row += "".join(f"{results['mlx'][op] / results[s][op]:14.1f}" for s in sides[1:])
        print(row)
    vector = mlx_vector_swiglu(args.n, args.reps)
    print(
        f"swiglu through models/vector_silu.py (load_model's on x86-64 CPUs): {vector:.2f} ns/el, "
        f"{results['mlx']['swiglu'] / vector:.1f}x faster than mlx-vlm's"
    )
    out = {s: {k: round(v, 3) for k, v in r.items()} for s, r in results.items()}
    out["mlx_vector_swiglu"] = round(vector, 3)
    out["gemm_gflops"] = round(gflops, 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
