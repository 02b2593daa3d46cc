#!/usr/bin/env python
"""Decode speed of rollout.generate: the reference loop against the compiled step.

The reference loop (generate(compiled=False)) builds one graph per token over the keys so far and
reads all-done back every token; the compiled one runs each step as one mx.compile'd graph over
fixed-size caches and reads all-done back every rollout.DONE_CHECK tokens. Both decode the same
prompts (synth items with their images) at temperature 1 with one seed, with EOS banned through
the logit bias so every completion is exactly --tokens long. Decode time is a call's time minus
the time of a call with max_tokens=1 (prompts encoded beforehand: prefill and the first token),
over the tokens - 1 decode steps; the two paths alternate within each repetition and the fastest
repetition is kept (the least disturbed one on a shared machine). Prints wall-clock ms per decode
step (one token for each of the B rows) and per generated token, the process's CPU ms per step
(all its threads), each path's peak memory above the loaded model, checks the two paths give the same tokens and log-probs, and ends with one
JSON line.

    python benchmarks/bench_decode.py --tokens 64 --reps 5
    python benchmarks/bench_decode.py --model mine=path/to/model-dir
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import hallucue_mlx  # noqa: F401  (binds the fast BLAS before MLX loads)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHAPES = ((1, 4), (4, 4))  # (prompts, completions per prompt)


def _timed(fn) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, result)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def bench_model(path: str, args) -> dict:
    import mlx.core as mx
    import numpy as np

    from hallucue_mlx.data.synth import load_synth
    from hallucue_mlx.forward import BANNED_LOGIT, encode_prompt, logit_bias
    from hallucue_mlx.models.load import load_model
    from hallucue_mlx.rollout import eos_token_ids, generate

    model, proc = load_model(path, dtype="float32")
    bias = logit_bias(model, proc)
    bias[mx.array(eos_token_ids(model, proc))] = BANNED_LOGIT  # every row decodes --tokens
    items = load_synth("train", n=max(p for p, _ in SHAPES), seed=args.seed)
    encoded = [encode_prompt(proc, model, it, template="easyr1") for it in items]
    out = {}
    for P, G in SHAPES:
        prompts = encoded[:P]

        def run(compiled: bool, max_tokens: int, prompts=prompts, G=G):
            return generate(
                model,
                proc,
                prompts,
                n=G,
                temperature=1.0,
                max_tokens=max_tokens,
                key=mx.random.key(args.seed),
                compiled=compiled,
                bias=bias,
            )

        for _ in range(args.warmup):  # the CPU backend compiles its fused kernels once, here
            for compiled in (False, True):
                run(compiled, args.tokens)
        wall = {False: [], True: []}
        cpu = {False: [], True: []}
        peak = {False: 0, True: 0}
        outs = {}
        for _ in range(args.reps):
            for compiled in (False, True):
                mx.clear_cache()
                mx.reset_peak_memory()
                start = mx.get_active_memory()
                w, c, outs[compiled] = _timed(lambda c=compiled: run(c, args.tokens))
                peak[compiled] = max(peak[compiled], mx.get_peak_memory() - start)
                w1, c1, _ = _timed(lambda c=compiled: run(c, 1))
                wall[compiled].append(w - w1)
                cpu[compiled].append(c - c1)
        pairs = [(a, b) for ga, gb in zip(outs[False], outs[True]) for a, b in zip(ga, gb)]
        same_ids = all(a.ids == b.ids for a, b in pairs)
        lp_diff = max(float(np.abs(np.subtract(a.logprobs, b.logprobs)).max()) for a, b in pairs)
        assert all(len(c.ids) == args.tokens for _, c in pairs), "EOS was not banned"
        B, steps = P * G, args.tokens - 1
        row = {"rows": B, "same_ids": same_ids, "max_logprob_diff": lp_diff}
        for compiled, name in ((False, "reference"), (True, "compiled")):
            row[f"{name}_ms_per_step"] = round(1e3 * min(wall[compiled]) / steps, 3)
            row[f"{name}_ms_per_token"] = round(1e3 * min(wall[compiled]) / steps / B, 3)
            row[f"{name}_median_ms_per_step"] = round(
                1e3 * statistics.median(wall[compiled]) / steps, 3
            )
            row[f"{name}_cpu_ms_per_step"] = round(1e3 * min(cpu[compiled]) / steps, 3)
            # equal peaks: the compiled step updates the caches in place, as the reference does
            row[f"{name}_peak_mb"] = round(peak[compiled] / 1e6, 2)
        row["speedup"] = round(row["reference_ms_per_step"] / row["compiled_ms_per_step"], 3)
        out[f"{P}x{G}"] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model",
        action="append",
        metavar="NAME=PATH",
        help="Model to measure (repeatable); default: hallucue-tiny and a ~30M random Qwen2.5-VL.",
    )
    ap.add_argument("--tokens", type=int, default=64, help="Tokens per completion (EOS banned).")
    ap.add_argument("--reps", type=int, default=5, help="Timed repetitions (the fastest kept).")
    ap.add_argument("--warmup", type=int, default=1, help="Untimed calls of each path first.")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import mlx.core as mx

    if args.model:
        models = dict(m.split("=", 1) for m in args.model)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_grpo_vs_mlx_vlm import build_30m

        models = {"hallucue-tiny": "hallucue-tiny"}
        models["random-30m"] = str(build_30m(Path(tempfile.mkdtemp(prefix="bench_decode_")) / "m"))
    print(
        f"{args.tokens} tokens per completion (EOS banned), temperature 1, float32, "
        f"fastest of {args.reps}; backend {mx.default_device()}",
        flush=True,
    )
    header = (
        f"{'model':<14}{'shape':>6}{'ref ms/step':>12}{'cmp ms/step':>12}{'ref ms/tok':>11}"
        f"{'cmp ms/tok':>11}{'speedup':>8}{'ref cpu ms':>11}{'cmp cpu ms':>11}"
        f"{'ref MB':>8}{'cmp MB':>8}{'same ids':>9}{'max |dlp|':>10}"
    )
    print(header + "\n" + "-" * len(header), flush=True)
    results = {}
    for name, path in models.items():
        results[name] = bench_model(path, args)
        for shape, r in results[name].items():
            print(
                f"{name:<14}{shape:>6}{r['reference_ms_per_step']:>12.2f}"
                f"{r['compiled_ms_per_step']:>12.2f}{r['reference_ms_per_token']:>11.3f}"
                f"{r['compiled_ms_per_token']:>11.3f}{r['speedup']:>8.2f}"
                f"{r['reference_cpu_ms_per_step']:>11.2f}{r['compiled_cpu_ms_per_step']:>11.2f}"
                f"{r['reference_peak_mb']:>8.1f}{r['compiled_peak_mb']:>8.1f}"
                f"{str(r['same_ids']):>9}{r['max_logprob_diff']:>10.1e}",
                flush=True,
            )
    print(json.dumps({"tokens": args.tokens, "backend": str(mx.default_device()), **results}))


if __name__ == "__main__":
    main()
