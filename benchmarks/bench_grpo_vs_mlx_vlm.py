#!/usr/bin/env python
"""Our GRPO step against mlx-vlm's built-in GRPO trainer step, same model and settings.

Both sides: the same base checkpoint (loaded twice), the same synth prompts and images, G
completions per prompt, the same completion length, LoRA rank and targets, temperature 1 with no
top-p/top-k, no KL (beta 0), one optimizer update per step, the same reward function. Prints seconds
per step and rollout tokens/s for both and the ratios; the last line is one JSON object

    {"<model name>": {"step_time_ratio": ours/theirs, "rollout_tokens_per_s_ratio": ours/theirs}, ...}

Models: --model NAME=PATH (repeatable); by default hallucue-tiny (if it resolves) and a ~30M-parameter
Qwen2.5-VL built offline with build_tiny_random.

    python benchmarks/bench_grpo_vs_mlx_vlm.py --steps 8 --warmup 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import hallucue_mlx  # noqa: F401  (binds the fast BLAS before MLX loads)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_30m(out: Path) -> Path:
    from hallucue_mlx.models.tiny import build_tiny_random

    # text 512 x 6 layers (MLP 2048), vision 256 x 4 blocks, vocab 2048: about 30M parameters
    return build_tiny_random(
        out,
        text_hidden=512,
        text_layers=6,
        text_heads=8,
        kv_heads=2,
        vision_hidden=256,
        vision_depth=4,
        vision_heads=4,
        seed=0,
    )


def n_params(model) -> int:
    from mlx.utils import tree_flatten

    return sum(v.size for _, v in tree_flatten(model.parameters()))


def bench_ours(path: str, items: list, args, tmp: Path) -> dict:
    import numpy as np

    from hallucue_mlx.config import TrainConfig, build
    from hallucue_mlx.models.load import load_model
    from hallucue_mlx.train import train as train_grpo

    model, proc = load_model(path, dtype="float32")
    settings = dict(
        model=path,
        steps=args.warmup + args.steps,
        prompts_per_step=args.prompts,
        num_generations=args.group,
        max_completion_length=args.max_tokens,
        temperature=1.0,
        top_p=1.0,
        beta=0.0,
        num_iterations=1,
        lora_rank=args.rank,
        lora_alpha=2.0 * args.rank,
        eval_every=0,
        save_every=10**6,
        prompt_template=args.template,
        learning_rate=1e-5,
        warmup_steps=0,
        seed=args.seed,
    )
    cfg = build(TrainConfig, settings, "train")
    # the same prompts, in the same order, as the peer sees
    train_grpo(
        cfg,
        None,
        tmp / "ours",
        quiet=True,
        model_and_processor=(model, proc),
        items=items,
        indices_fn=lambda step, per, n, seed: [(step * per + i) % n for i in range(per)],
    )
    recs = [json.loads(x) for x in (tmp / "ours" / "metrics.jsonl").read_text().splitlines()]
    recs = [r for r in recs if "event" not in r][args.warmup :]
    toks = sum(r["rollout_tokens"] for r in recs)
    return {
        "step_s": float(np.mean([r["step_time"] for r in recs])),
        "rollout_tok_s": toks / sum(r["rollout_time"] for r in recs),
        "tokens_per_step": toks / len(recs),
        "params": n_params(model),
    }


def bench_mlx_vlm(path: str, items: list, args, tmp: Path) -> dict:
    import mlx.optimizers as optim
    import numpy as np
    from mlx_vlm.trainer import Trainer
    from mlx_vlm.trainer.peft import get_peft_model
    from mlx_vlm.trainer.vlm.grpo import trainer as grpo_mod
    from mlx_vlm.trainer.vlm.grpo.config import GRPOTrainingArgs

    from hallucue_mlx.models.load import load_model
    from hallucue_mlx.prompts import build_prompt
    from hallucue_mlx.rewards import score

    model, proc = load_model(path, dtype="float32")
    model = get_peft_model(model, rank=args.rank, alpha=2.0 * args.rank, dropout=0.0, verbose=False)
    by_answer = {}
    rows = []
    for it in items:
        rows.append({"prompt": build_prompt(it, args.template), "image": it.image, "answer": it.id})
        by_answer[it.id] = it

    def reward(*, completions, answer, **_):
        return [score(c, by_answer[a]).total for c, a in zip(completions, answer)]

    # time the peer's rollouts and count their tokens
    gen_log = []
    original = grpo_mod.generate_grpo

    def timed_generate(model_, tokenizer, rows_, a):
        t0 = time.perf_counter()
        out = original(model_, tokenizer, rows_, a)
        gen_log.append((time.perf_counter() - t0, sum(int(c.size) for c in out[0])))
        return out

    grpo_mod.generate_grpo = timed_generate
    try:
        targs = GRPOTrainingArgs(
            batch_size=args.prompts,
            iters=args.warmup + args.steps,
            group_size=args.group,
            max_completion_length=args.max_tokens,
            max_seq_length=args.max_tokens + 1024,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            min_p=0.0,
            beta=0.0,
            steps_per_report=1,
            steps_per_eval=None,
            steps_per_save=10**6,
            adapter_file=str(tmp / "theirs.safetensors"),
        )
        trainer = Trainer(
            model,
            targs,
            processing_class=proc,
            optimizer=optim.Adam(learning_rate=1e-5),
            train_dataset=rows,
            reward_funcs=[reward],
            seed=args.seed,
        )
        # the peer prints a report per step; keep the table readable
        with (
            open(os.devnull, "w") as null,
            contextlib.redirect_stdout(null),
            contextlib.redirect_stderr(null),
        ):
            trainer.train()
    finally:
        grpo_mod.generate_grpo = original
    hist = [h for h in trainer.log_history if "step_time" in h][args.warmup :]
    gens = gen_log[args.warmup : args.warmup + len(hist)]
    toks = sum(n for _, n in gens)
    return {
        "step_s": float(np.mean([h["step_time"] + h["data_time_per_step"] for h in hist])),
        "rollout_tok_s": toks / sum(t for t, _ in gens),
        "tokens_per_step": toks / len(gens),
        "params": n_params(model),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model",
        action="append",
        default=[],
        help="NAME=PATH of a Qwen2.5-VL checkpoint (repeatable).",
    )
    ap.add_argument("--no-default-models", action="store_true", help="Only the --model ones.")
    ap.add_argument(
        "--steps",
        type=int,
        default=8,
        help="Timed steps per side (more steps average out the machine's drift).",
    )
    ap.add_argument("--warmup", type=int, default=1, help="Untimed steps first.")
    ap.add_argument("--prompts", type=int, default=2, help="Prompts per step.")
    ap.add_argument("--group", type=int, default=4, help="Completions per prompt (G).")
    ap.add_argument("--max-tokens", type=int, default=32, help="Completion length.")
    ap.add_argument("--rank", type=int, default=8, help="LoRA rank.")
    ap.add_argument("--template", default="easyr1", help="Prompt template.")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import mlx.core as mx

    from hallucue_mlx.backend import fast_blas_loaded
    from hallucue_mlx.data.synth import load_synth

    tmp = Path(tempfile.mkdtemp(prefix="bench_grpo_"))
    models: list[tuple[str, str]] = [tuple(m.split("=", 1)) for m in args.model]  # type: ignore[misc]
    if not args.no_default_models:
        try:
            from hallucue_mlx.models.load import resolve_model_dir

            models.append(("hallucue-tiny", str(resolve_model_dir("hallucue-tiny"))))
        except Exception as e:  # not built/shipped yet
            print(
                f"hallucue-tiny unavailable ({type(e).__name__}: {e}); skipping it", file=sys.stderr
            )
        models.append(("qwen2_5_vl-30m", str(build_30m(tmp / "models" / "qwen2_5_vl-30m"))))
    n_items = args.prompts * (args.steps + args.warmup)
    items = load_synth("train", n=n_items, seed=args.seed)
    print(
        f"settings: {args.prompts} prompts x G={args.group}, {args.max_tokens} completion tokens, LoRA r{args.rank}, "
        f"T=1, no KL, {args.warmup} warm-up + {args.steps} timed steps; {mx.default_device()}, "
        f"OpenBLAS {'on' if fast_blas_loaded() else 'off'} (OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'default')})",
        flush=True,
    )
    results = {}
    header = (
        f"{'model':<16}{'params':>8}  {'side':<8}{'s/step':>9}{'tok/step':>10}{'rollout tok/s':>15}"
    )
    lines = [header, "-" * len(header)]
    for name, path in models:
        runs = tmp / "runs" / name
        runs.mkdir(parents=True, exist_ok=True)
        ours = bench_ours(path, items, args, runs)
        theirs = bench_mlx_vlm(path, items, args, runs)
        for side, r in (("ours", ours), ("mlx-vlm", theirs)):
            lines.append(
                f"{name:<16}{r['params'] / 1e6:>7.1f}M  {side:<8}{r['step_s']:>9.3f}{r['tokens_per_step']:>10.0f}{r['rollout_tok_s']:>15.1f}"
            )
        st = ours["step_s"] / theirs["step_s"]
        rt = ours["rollout_tok_s"] / theirs["rollout_tok_s"]
        lines.append(f"{name:<16}{'':>8}  {'ratio':<8}{st:>9.3f}{'':>10}{rt:>15.2f}")
        results[name] = {
            "step_time_ratio": round(st, 4),
            "rollout_tokens_per_s_ratio": round(rt, 4),
        }
    print("\n".join(lines))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
