#!/usr/bin/env python
"""What models/vector_silu.py buys a GRPO step: rollout and loss with and without it.

    python -m hallucue_mlx.fastblas python scripts/bench_vector_silu.py
    python -m hallucue_mlx.fastblas python scripts/bench_vector_silu.py --models tiny --reps 3

On MLX's x86-64 CPU backend, load_model swaps each decoder layer's SwiGLU MLP for one whose
SiLU needs no exp (models/vector_silu.py). This script loads each model twice with MLX's own
SiLU (HALLUCUE_EXACT_SILU=1), swaps the MLPs of one copy, adds LoRA (r8, on every LM linear, as
training does), and times, alternating the two copies within each repetition:
- rollout: rollout.generate of --prompts synth prompts x --group completions at temperature 1,
  EOS banned so every completion runs --tokens tokens (prefill included);
- loss: policy_loss's forward and backward through nn.value_and_grad (beta 0) on a batch of those
  shapes with random completion ids.
It prints the median ms of each, the ratio vector / exact, and how far the copies' outputs are
apart (greedy completions of the same prompts and the loss's LoRA gradients), then one JSON
line. hallucue-tiny is the embedded model; "30m" is the 30M-parameter Qwen2.5-VL that
scripts/bench_grpo_vs_mlx_vlm.py builds (text 512 x 6 layers, MLP 2048). On a Mac or a GPU
load_model keeps MLX's SiLU; the swap can still be timed there with this script.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
MODELS = ("tiny", "30m")


def build_30m(root: Path) -> Path:
    spec = importlib.util.spec_from_file_location(
        "bench_grpo_vs_mlx_vlm", HERE / "bench_grpo_vs_mlx_vlm.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_30m(root / "qwen2_5_vl-30m")


def load_pair(path: str):
    """(exact, vector, processor): two copies of one model with LoRA, the second one swapped."""
    from hallucue_mlx.backend import EXACT_SILU_ENV as OPT_OUT_ENV
    from hallucue_mlx.models import arch
    from hallucue_mlx.models.load import load_model
    from hallucue_mlx.models.lora import LoraConfig, apply_lora
    from hallucue_mlx.models.vector_silu import use_vector_silu

    before = os.environ.get(OPT_OUT_ENV)
    os.environ[OPT_OUT_ENV] = "1"
    try:
        exact, proc = load_model(path, dtype="float32")
        vector, _ = load_model(path, dtype="float32")
    finally:
        if before is None:
            del os.environ[OPT_OUT_ENV]
        else:
            os.environ[OPT_OUT_ENV] = before
    stack = arch.text_stack(vector)
    swapped = use_vector_silu(stack.layers, stack.norm.weight.shape[0])
    if swapped != len(stack.layers):
        raise SystemExit(f"{path}: {swapped} of {len(stack.layers)} MLPs are SiLU SwiGLUs")
    for m in (exact, vector):
        apply_lora(m, LoraConfig())
    vector.update(exact.parameters())  # the same LoRA initialisation in both
    return exact, vector, proc


def bench_model(path: str, args) -> dict:
    import mlx.core as mx
    import mlx.nn as nn
    import numpy as np
    from mlx.utils import tree_flatten

    from hallucue_mlx.data.synth import load_synth
    from hallucue_mlx.forward import BANNED_LOGIT, encode_prompt, logit_bias
    from hallucue_mlx.grpo import LossConfig, make_batch, policy_loss
    from hallucue_mlx.rollout import eos_token_ids, generate

    exact, vector, proc = load_pair(path)
    models = {"exact": exact, "vector": vector}
    items = load_synth("train", n=args.prompts, seed=args.seed)
    prompts = [encode_prompt(proc, exact, it) for it in items]
    bias = logit_bias(exact, proc)
    banned = logit_bias(exact, proc)
    banned[mx.array(eos_token_ids(exact, proc))] = BANNED_LOGIT  # every row decodes --tokens
    B, T = args.prompts * args.group, args.tokens
    rng = np.random.default_rng(args.seed)
    ids = [list(rng.integers(10, bias.shape[0], T)) for _ in range(B)]
    batch = make_batch(prompts, ids, [[-1.0] * T] * B, rng.standard_normal(B).astype(np.float32))
    cfg = LossConfig(beta=0.0)
    grad_fns = {
        k: nn.value_and_grad(m, lambda b, m=m: policy_loss(m, b, cfg, bias))
        for k, m in models.items()
    }

    def rollout(name: str, temperature: float = 1.0, tokens: int = T):
        return generate(
            models[name],
            proc,
            prompts,
            n=args.group,
            temperature=temperature,
            max_tokens=tokens,
            key=mx.random.key(args.seed),
            bias=banned if temperature > 0 else bias,
        )

    def loss(name: str):
        (value, metrics), grads = grad_fns[name](batch)
        mx.eval(value, metrics, grads)
        return value, grads

    times: dict[str, dict[str, list[float]]] = {k: {"rollout": [], "loss": []} for k in models}
    for rep in range(args.warmup + args.reps):
        for name in models:
            t0 = time.perf_counter()
            rollout(name)
            t1 = time.perf_counter()
            loss(name)
            t2 = time.perf_counter()
            if rep >= args.warmup:
                times[name]["rollout"].append(t1 - t0)
                times[name]["loss"].append(t2 - t1)
    med = {k: {p: statistics.median(v) for p, v in d.items()} for k, d in times.items()}
    greedy = {k: rollout(k, temperature=0.0, tokens=32) for k in models}
    pairs = [(a, b) for ga, gb in zip(greedy["exact"], greedy["vector"]) for a, b in zip(ga, gb)]
    (le, ge), (lv, gv) = loss("exact"), loss("vector")
    ge, gv = dict(tree_flatten(ge)), dict(tree_flatten(gv))
    grad_rel = max(
        float(mx.abs(gv[k] - ge[k]).max()) / max(float(mx.abs(ge[k]).max()), 1e-30) for k in ge
    )
    return {
        "shape": f"{args.prompts}x{args.group}x{T}",
        **{f"{k}_{p}_ms": round(1e3 * v, 1) for k, d in med.items() for p, v in d.items()},
        "rollout_ratio": round(med["vector"]["rollout"] / med["exact"]["rollout"], 3),
        "loss_ratio": round(med["vector"]["loss"] / med["exact"]["loss"], 3),
        "step_ratio": round(sum(med["vector"].values()) / sum(med["exact"].values()), 3),
        "greedy_same": sum(a.ids == b.ids for a, b in pairs),
        "greedy_rows": len(pairs),
        "loss_diff": abs(float(lv) - float(le)),
        "max_grad_rel_diff": grad_rel,
    }


def add_batch_args(ap: argparse.ArgumentParser, tokens_help: str) -> None:
    """The models and batch shape a loss or rollout benchmark takes."""
    ap.add_argument("--models", default=",".join(MODELS), help=f"Comma-separated, of {MODELS}.")
    ap.add_argument("--model", default=None, help="A model id or folder instead of --models.")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--group", type=int, default=4, help="Completions per prompt (G).")
    ap.add_argument("--tokens", type=int, default=64, help=tokens_help)
    ap.add_argument("--reps", type=int, default=6, help="Timed repetitions (median).")
    ap.add_argument("--warmup", type=int, default=1, help="Untimed repetitions first.")
    ap.add_argument("--seed", type=int, default=0)


def model_names(ap: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    names = [args.model] if args.model else [m for m in args.models.split(",") if m]
    bad = [m for m in names if not args.model and m not in MODELS]
    if bad or min(args.prompts, args.group, args.tokens, args.reps) < 1 or args.warmup < 0:
        ap.error(f"--models takes {MODELS}; --prompts/--group/--tokens/--reps >= 1, --warmup >= 0")
    return names


def model_path(name: str, tmp: str) -> str:
    """hallucue-tiny, the 30M model (built in tmp), or the id or folder given."""
    path = {"tiny": "hallucue-tiny", "30m": None}.get(name, name)
    return str(build_30m(Path(tmp))) if path is None else path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_batch_args(ap, "Tokens per completion (EOS banned).")
    ap.add_argument("--threads", type=int, default=2, help="BLAS threads.")
    args = ap.parse_args(argv)
    names = model_names(ap, args)

    from hallucue_mlx.backend import backend_name, fast_blas_loaded, set_blas_threads

    set_blas_threads(args.threads)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_vector_silu_") as tmp:
        for name in names:
            results[name] = bench_model(model_path(name, tmp), args)
    blas = "OpenBLAS preloaded" if fast_blas_loaded() else "its bundled BLAS"
    print(f"MLX on {backend_name()} ({blas}); median of {args.reps} after {args.warmup} warm-up")
    print(
        f"{'model':14s}{'shape':>10s}{'rollout ms':>20s}{'loss ms':>20s}{'step ratio':>12s}"
        f"{'greedy same':>13s}{'grad rel diff':>15s}"
    )
    for name, r in results.items():
        roll = f"{r['exact_rollout_ms']:.0f} -> {r['vector_rollout_ms']:.0f}"
        lss = f"{r['exact_loss_ms']:.0f} -> {r['vector_loss_ms']:.0f}"
        same = f"{r['greedy_same']}/{r['greedy_rows']}"
        print(
            f"{name:14s}{r['shape']:>10s}{roll:>20s}{lss:>20s}{r['step_ratio']:>12.3f}"
            f"{same:>13s}{r['max_grad_rel_diff']:>15.1e}"
        )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
