#!/usr/bin/env python
"""Rollout time with and without dropping finished rows from the decode batch (rollout.generate).

A GRPO step decodes prompts x G rows until the longest one ends (or max_tokens); most rows end
far earlier (hallucue-tiny's default rollouts: 20 tokens on average, up to 64). With compaction
(the default) the compiled decode shrinks its batch to the unfinished rows at every all-done
read (rollout.DONE_CHECK tokens), so only rows still decoding are computed. Both sides decode the
same prompts with the same key, in alternating order, and must give the same tokens; prints the
median wall time per call of each side, their ratio, the rows x steps each decodes, and ends
with one JSON line. Shapes: the default GRPO step (16 prompts x 8 at temperature 1, 64 tokens)
and an evaluation batch (32 prompts, greedy, 64 tokens), on synth training items.

    python benchmarks/bench_rollout_compact.py --reps 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import hallucue_mlx  # noqa: F401  (binds the fast BLAS before MLX loads)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHAPES = {"grpo 16x8 T=1": (16, 8, 1.0), "eval 32x1 greedy": (32, 1, 0.0)}


def row_steps(lengths: list[int], max_tokens: int, compact: bool) -> int:
    """Rows x decode steps the compiled loop computes for completions of these lengths (the
    rule of rollout._decode_compiled, replayed on the host)."""
    from hallucue_mlx.rollout import COMPACT_MIN_ROWS, DONE_CHECK

    batch, total = len(lengths), 0
    steps = min(max(lengths), max_tokens)
    for i in range(1, steps + DONE_CHECK):
        if i >= max_tokens:
            break
        total += batch
        if i % DONE_CHECK:
            continue
        unfinished = sum(1 for n in lengths if n > i + 1)  # a row of n ids ends at step n - 1
        if unfinished == 0:
            break
        size = max(COMPACT_MIN_ROWS, 1 << (unfinished - 1).bit_length())
        if compact and size <= batch // 2:
            batch = size
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="hallucue-tiny")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import mlx.core as mx

    from hallucue_mlx.data.synth import load_synth
    from hallucue_mlx.forward import encode_prompt
    from hallucue_mlx.models.load import load_model
    from hallucue_mlx.rollout import generate

    model, proc = load_model(args.model, dtype="float32")
    items = load_synth("train", n=32, seed=args.seed)
    encoded = [encode_prompt(proc, model, it, template="short-decline") for it in items]
    print(
        f"{args.model}, {args.tokens} tokens at most, median of {args.reps}; {mx.default_device()}"
    )
    results = {}
    for name, (P, G, temp) in SHAPES.items():

        def run(compact: bool, P=P, G=G, temp=temp):
            return generate(
                model,
                proc,
                encoded[:P],
                n=G,
                temperature=temp,
                max_tokens=args.tokens,
                key=mx.random.key(args.seed),
                compact=compact,
            )

        outs = {c: run(c) for c in (False, True)}  # warm-up: traces and kernels
        times: dict[bool, list[float]] = {False: [], True: []}
        for rep in range(args.reps):
            for compact in (rep % 2 == 0, rep % 2 == 1):  # alternate which side goes first
                t0 = time.perf_counter()
                outs[compact] = run(compact)
                times[compact].append(time.perf_counter() - t0)
        same = all(
            a.ids == b.ids for ga, gb in zip(outs[False], outs[True]) for a, b in zip(ga, gb)
        )
        lengths = [len(c.ids) for g in outs[True] for c in g]
        off, on = statistics.median(times[False]), statistics.median(times[True])
        results[name] = {
            "rows": P * G,
            "mean_length": round(statistics.mean(lengths), 1),
            "max_length": max(lengths),
            "whole_batch_s": round(off, 3),
            "compacted_s": round(on, 3),
            "speedup": round(off / on, 2),
            "row_steps_whole": row_steps(lengths, args.tokens, False),
            "row_steps_compacted": row_steps(lengths, args.tokens, True),
            "same_tokens": same,
        }
        r = results[name]
        print(
            f"{name:<18} rows {r['rows']:>3}  length mean {r['mean_length']:>5} max "
            f"{r['max_length']:>3}  whole batch {off:6.3f} s  compacted {on:6.3f} s  "
            f"x{r['speedup']:.2f}  rows x steps {r['row_steps_whole']} -> "
            f"{r['row_steps_compacted']}  same tokens {same}",
            flush=True,
        )
    print(json.dumps({"model": args.model, "backend": str(mx.default_device()), **results}))


if __name__ == "__main__":
    main()
