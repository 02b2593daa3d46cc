#!/usr/bin/env python
"""What an update's size costs, apart from its direction: checkpoints and random LoRA updates.

For each training folder given (its checkpoints/step_*/ adapters: train with
--set train.keep_checkpoints=20 to keep them all), every checkpoint is evaluated greedily on the
VALIDATION split of the run config's training benchmark (clean images), next to the base model:
accuracy and its change, the share kept of the items the base solves, reading and computing
(trace.py), and the size of the update, ||scale * A B||_F summed over the adapted layers.

Then the null: the last checkpoint's update with its direction drawn at random. Each layer's B is
replaced by Gaussian noise rescaled so that the layer's ||scale * A B||_F is the trained one's
(A as trained), at --fractions of that size. What a random update of the same size costs is
what the size itself costs; a trained update's change minus it is what its direction bought.
The random-reward control is the same question asked through training.

    python scripts/drift.py runs/traj-clean runs/traj-control --n 300 --random 3
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import hallucue_mlx  # noqa: E402, F401  (before mlx.core: binds MLX's CPU matmuls to the fast BLAS)


def _positive(kind: type, least: float):
    """An argparse type: a number of `kind` at least `least`, refused by name otherwise."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {text}")
        return value

    return parse


def _fractions(text: str) -> list[float]:
    return [_positive(float, 0.0)(x) for x in text.split(",") if x]


def _checkpoints(run: Path) -> list[tuple[int, Path]]:
    if not run.is_dir():
        raise SystemExit(f"error: {run} is not a folder; pass a training folder (its --out)")
    ckpts = sorted((run / "checkpoints").glob("step_*"))
    steps = [(int(p.name.split("_")[1]), p) for p in ckpts if (p / "state.json").is_file()]
    if not steps:
        raise SystemExit(
            f"error: {run} has no checkpoints/step_*/ folders; train it with "
            "--set train.keep_checkpoints=20 (and --out) to keep them"
        )
    return steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("runs", nargs="+", type=Path, help="training folders with checkpoints")
    ap.add_argument("--config", default=None, help="run config YAML (default: default.yaml)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument(
        "--n", type=_positive(int, 1), default=300, help="validation items (default 300)"
    )
    ap.add_argument(
        "--every", type=_positive(int, 1), default=1, help="evaluate every k-th checkpoint"
    )
    ap.add_argument(
        "--random", type=_positive(int, 0), default=3, help="random directions per size"
    )
    ap.add_argument(
        "--fractions",
        type=_fractions,
        default="0.5,1.0",
        help="sizes of the random updates, x the trained one",
    )
    ap.add_argument("--out", type=Path, default=None, help="write one JSON line per evaluation")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random directions")
    args = ap.parse_args(argv)
    fractions = args.fractions
    run_steps = {run: _checkpoints(run) for run in args.runs}

    import mlx.core as mx
    import numpy as np

    from hallucue_mlx.config import eval_config_for, load_config
    from hallucue_mlx.data.bench import get_adapter, load_benchmark
    from hallucue_mlx.evaluate import evaluate_condition
    from hallucue_mlx.metrics import paired_bootstrap_ci
    from hallucue_mlx.models import load_model
    from hallucue_mlx.models.lora import (
        apply_lora,
        load_adapter_weights,
        lora_disabled,
        lora_layers,
        read_lora_config,
    )

    cfg = load_config(args.config, args.set)
    spec = cfg.data.train
    if "validation" not in get_adapter(spec.name).splits:
        raise SystemExit(f"error: {spec.name} has no validation split")
    items = load_benchmark(spec.name, "validation", n=args.n, seed=cfg.data.seed)
    ecfg = replace(eval_config_for(cfg), conditions=("none",))
    model, processor = load_model(cfg.model.id, dtype=cfg.model.dtype)
    first = run_steps[args.runs[0]][0][1]
    apply_lora(model, read_lora_config(first))
    layers = lora_layers(model)
    ids = [it.id for it in items]

    def run_eval() -> dict[str, np.ndarray]:
        recs = {r["id"]: r for r in evaluate_condition(model, processor, items, ecfg, "none")}
        rows = [recs[i] for i in ids]

        def col(key: str) -> np.ndarray:
            return np.array([np.nan if r.get(key) is None else float(r[key]) for r in rows])

        return {
            "correct": col("correct"),
            "read": col("trace_read"),
            "computed": col("trace_computed"),
        }

    def sizes() -> tuple[float, list[float]]:
        per = [float(mx.sum((m.scale * (m.lora_a @ m.lora_b)) ** 2).item()) for m in layers]
        return float(np.sqrt(sum(per))), per

    with lora_disabled(model):
        base = run_eval()
    solved = base["correct"] == 1.0
    out = args.out.open("a", encoding="utf-8") if args.out else None

    def share(x: np.ndarray) -> float | None:
        x = x[~np.isnan(x)]  # records with nothing to check (no fact stated, no addition)
        return round(float(x.mean()), 4) if x.size else None

    def pct(x: float | None) -> str:
        return "    —" if x is None else f"{100 * x:5.1f}"

    def report(label: str, step: int | None, size: float, res: dict[str, np.ndarray]) -> None:
        gain, lo, hi = paired_bootstrap_ci(res["correct"], base["correct"])
        row = {
            "run": label,
            "step": step,
            "size": round(size, 4),
            "accuracy": share(res["correct"]),
            "change": round(gain, 4),
            "ci95": [round(lo, 4), round(hi, 4)],
            "kept": share(res["correct"][solved]),
            "reading": share(res["read"]),
            "computing": share(res["computed"]),
            "n": len(ids),
            "base_solved": int(solved.sum()),
        }
        print(
            f"{label:<28} step {str(step):>4}  size {size:7.3f}  acc {pct(row['accuracy'])}"
            f"  change {100 * gain:+5.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
            f"  kept {pct(row['kept'])}  reading {pct(row['reading'])}"
            f"  computing {pct(row['computing'])}",
            flush=True,
        )
        if out:
            out.write(json.dumps(row) + "\n")
            out.flush()

    report("base", 0, 0.0, base)
    rng = np.random.default_rng(args.seed)
    for run, steps in run_steps.items():
        chosen = steps[args.every - 1 :: args.every]
        if chosen[-1] != steps[-1]:
            chosen.append(steps[-1])
        for step, ckpt in chosen:
            load_adapter_weights(model, ckpt)
            report(run.name, step, sizes()[0], run_eval())
        # the null: the last checkpoint's per-layer sizes with random directions
        trained = [(m.lora_a, m.lora_b) for m in layers]
        _, per = sizes()
        for frac in fractions:
            for r in range(args.random):
                for m, (a, _b), want in zip(layers, trained, per):
                    noise = mx.array(rng.standard_normal(m.lora_b.shape).astype(np.float32))
                    have = float(mx.sum((m.scale * (a @ noise)) ** 2).item())
                    m.lora_b = noise * (frac * np.sqrt(want / have) if have > 0 else 0.0)
                mx.eval([m.lora_b for m in layers])
                report(f"{run.name} random x{frac:g} #{r}", steps[-1][0], sizes()[0], run_eval())
        for m, (a, b) in zip(layers, trained):
            m.lora_a, m.lora_b = a, b
    if out:
        out.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
