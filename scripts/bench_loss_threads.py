#!/usr/bin/env python
"""What running the loss phase's groups on several CPU threads buys (workers.StreamPool).

    python -m hallucue_mlx.fastblas python scripts/bench_loss_threads.py
    python -m hallucue_mlx.fastblas python scripts/bench_loss_threads.py --models tiny --beta 0

The loss phase of a GRPO step (the LoRA-off reference log-probs when beta > 0, then the loss
forward and backward, as `train.batch_gradients` computes them) on a batch of --prompts synth
prompts x --group completions of --tokens random tokens, LoRA r8 on every LM linear. Timed in one
process, the ways alternating within each repetition:
- whole: the batch as one graph, OpenBLAS with --blas threads (how the CPU ran it before);
- groups x1: one graph per group on the calling thread, OpenBLAS with one thread;
- groups xN: the same graphs on N = --threads worker threads (what `train` does on MLX's CPU
  backend, N = HALLUCUE_CPU_THREADS or the cores).
It prints the median ms of each, the ratios to `whole`, whether groups x1 and xN give the same
loss and gradients bit for bit (they must: the results may not depend on the thread count), and
how far `whole` is from them (float summation order), then one JSON line. hallucue-tiny is the
embedded model; "30m" is the 30M-parameter Qwen2.5-VL that scripts/bench_grpo_vs_mlx_vlm.py
builds (text 512 x 6 layers, MLP 2048). On a GPU train keeps one graph (whole).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def sibling(name: str):
    """Another script of this folder, as a module."""
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_model(path: str, args) -> dict:
    import mlx.core as mx
    import mlx.nn as nn
    import numpy as np
    from mlx.utils import tree_flatten, tree_unflatten

    from hallucue_mlx.backend import set_blas_threads
    from hallucue_mlx.data.synth import load_synth
    from hallucue_mlx.grpo import LossConfig, make_batch, policy_loss, split_groups
    from hallucue_mlx.models.load import load_model
    from hallucue_mlx.models.lora import LoraConfig, apply_lora
    from hallucue_mlx.rollout import encode_prompt, logit_bias
    from hallucue_mlx.train import batch_gradients
    from hallucue_mlx.workers import StreamPool

    set_blas_threads(args.blas)
    model, proc = load_model(path, dtype="float32")
    apply_lora(model, LoraConfig())
    # a LoRA that has trained a little (B != 0): the reference differs from the policy
    lora_b = [
        (k, 0.01 * mx.random.normal(v.shape, key=mx.random.key(args.seed + i)))
        for i, (k, v) in enumerate(tree_flatten(model.trainable_parameters()))
        if k.endswith("lora_b")
    ]
    model.update(tree_unflatten(lora_b))
    mx.eval(model.parameters())
    model.train()
    items = load_synth("train", n=args.prompts, seed=args.seed)
    prompts = [encode_prompt(proc, model, it) for it in items]
    bias = logit_bias(model, proc)
    B, T = args.prompts * args.group, args.tokens
    rng = np.random.default_rng(args.seed)
    ids = [list(rng.integers(10, bias.shape[0], T)) for _ in range(B)]
    adv = rng.standard_normal(B).astype(np.float32)
    cfg = LossConfig(beta=args.beta, temperature=1.0)
    loss_and_grad = nn.value_and_grad(model, lambda b: policy_loss(model, b, cfg, bias))

    def runner(workers) -> SimpleNamespace:  # what batch_gradients reads of train's Run
        return SimpleNamespace(
            model=model,
            bias=bias,
            cfg=SimpleNamespace(beta=args.beta, temperature=1.0),
            loss_and_grad=loss_and_grad,
            workers=workers,
        )

    n = f"groups x{args.threads}"
    ways = {
        "whole": runner(_WholeBatch()),
        "groups x1": runner(StreamPool(1)),
        n: runner(StreamPool(args.threads)),
    }

    def once(name: str):
        # a fresh batch each time: the reference is computed once per batch, as in a step
        batch = make_batch(prompts, ids, [[-1.0] * T] * B, adv)
        out = batch_gradients(ways[name], [batch] if name == "whole" else split_groups(batch))
        mx.eval(out)
        return out

    times: dict[str, list[float]] = {k: [] for k in ways}
    for rep in range(args.warmup + args.reps):
        for name in ways:
            t0 = time.perf_counter()
            once(name)
            if rep >= args.warmup:
                times[name].append(time.perf_counter() - t0)
    results = {k: once(k) for k in ways}
    for run in ways.values():
        run.workers.close()

    def flat(out) -> np.ndarray:
        (loss, metrics), grads = out
        parts = [np.array(loss).ravel()] + [np.array(metrics[k]).ravel() for k in sorted(metrics)]
        return np.concatenate(parts + [np.array(g).ravel() for _, g in tree_flatten(grads)])

    one, many, whole = flat(results["groups x1"]), flat(results[n]), flat(results["whole"])
    med = {k: statistics.median(v) for k, v in times.items()}
    scale = float(np.abs(one).max())
    return {
        "shape": f"{args.prompts}x{args.group}x{T}",
        "beta": args.beta,
        **{f"{k}_ms": round(1e3 * v, 1) for k, v in med.items()},
        **{f"{k}_ratio": round(v / med["whole"], 3) for k, v in med.items() if k != "whole"},
        "threads_bitwise_same": bool(np.array_equal(one, many)),
        "whole_vs_groups_max_rel_diff": float(np.abs(whole - one).max()) / max(scale, 1e-30),
    }


class _WholeBatch:
    """StreamPool(1) without its one-thread OpenBLAS: the batch as one graph, as before."""

    def run(self, builds):
        import mlx.core as mx

        out = []
        for build in builds:
            stages = build()
            for tree in stages:
                mx.eval(tree)
            out.append(stages)
        return out

    def close(self) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    silu = sibling("bench_vector_silu")  # the same models and batch arguments
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    silu.add_batch_args(ap, "Tokens per completion.")
    ap.add_argument("--beta", type=float, default=0.01, help="KL coefficient (0: no reference).")
    ap.add_argument("--threads", type=int, default=2, help="Worker threads of groups xN.")
    ap.add_argument("--blas", type=int, default=2, help="OpenBLAS threads of `whole`.")
    args = ap.parse_args(argv)
    names = silu.model_names(ap, args)
    if args.threads < 1:
        ap.error("--threads must be >= 1")

    from hallucue_mlx.backend import backend_name, fast_blas_loaded

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_loss_threads_") as tmp:
        for name in names:
            results[name] = bench_model(silu.model_path(name, tmp), args)
    blas = "OpenBLAS preloaded" if fast_blas_loaded() else "its bundled BLAS"
    print(f"MLX on {backend_name()} ({blas}); median of {args.reps} after {args.warmup} warm-up")
    n = f"groups x{args.threads}"
    print(
        f"{'model':14s}{'shape':>10s}{'whole ms':>10s}{'groups x1':>11s}{n:>11s}"
        f"{'xN / whole':>12s}{'same bits':>11s}{'vs whole':>10s}"
    )
    for name, r in results.items():
        print(
            f"{name:14s}{r['shape']:>10s}{r['whole_ms']:>10.0f}{r['groups x1_ms']:>11.0f}"
            f"{r[n + '_ms']:>11.0f}{r[n + '_ratio']:>12.3f}{str(r['threads_bitwise_same']):>11s}"
            f"{r['whole_vs_groups_max_rel_diff']:>10.1e}"
        )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
