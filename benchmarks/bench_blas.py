"""MLX's fp32 matmul on the CPU: its reference BLAS against the checked bridge to numpy's OpenBLAS.

    python benchmarks/bench_blas.py [--reps 5]

Each variant runs in its own process (the BLAS is bound when MLX loads): GFLOPS of square
float32 matmuls at several sizes, with OpenBLAS at its default thread count and at one thread.
Prints the core OpenBLAS chose on this CPU (Haswell, SkylakeX, Zen, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

SIZES = (64, 256, 1024, 2048)

CHILD = r"""
import json, sys, time
import hallucue_mlx  # binds the bridge unless HALLUCUE_NO_FAST_BLAS=1
from hallucue_mlx import blas
import mlx.core as mx
reps, sizes = int(sys.argv[1]), [int(s) for s in sys.argv[2:]]
out = {"blas": blas.status().name, "threads": blas.threads()}
for n in sizes:
    a, b = mx.random.normal((n, n)), mx.random.normal((n, n))
    mx.eval(a @ b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        mx.eval(a @ b)
        best = min(best, time.perf_counter() - t)
    out[str(n)] = 2 * n**3 / best / 1e9
print(json.dumps(out))
"""


def variant(reps: int, **env: str) -> dict:
    full = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", *env)}
    full.update(env)
    cmd = [sys.executable, "-c", CHILD, str(reps), *map(str, SIZES)]
    res = subprocess.run(cmd, env=full, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions per size (best of)")
    args = ap.parse_args()
    rows = {
        "reference BLAS": variant(args.reps, HALLUCUE_NO_FAST_BLAS="1"),
        "bridge, default threads": variant(args.reps),
        "bridge, 1 thread": variant(args.reps, OPENBLAS_NUM_THREADS="1"),
    }
    with open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    print(f"{cpu}, {os.cpu_count()} cores; fp32 matmul n x n x n, GFLOPS (best of {args.reps})")
    print(f"{'':<26}" + "".join(f"{n:>9}" for n in SIZES) + "  BLAS")
    for name, r in rows.items():
        cells = "".join(f"{r[str(n)]:>9.1f}" for n in SIZES)
        print(f"{name:<26}{cells}  {r['blas']} ({r['threads'] or '-'} threads)")


if __name__ == "__main__":
    main()
