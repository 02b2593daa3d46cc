#!/usr/bin/env python
"""Does clean GRPO improve the base model? The default run config's clean training, measured.

Loads a run config (default: the packaged default.yaml, i.e. hallucue-tiny on synth), evaluates
the base model greedily on the VALIDATION split of the config's training benchmark (clean
images; synth and Geometry3K have one), runs the config's clean GRPO training, evaluates the
trained model on the same items and prints accuracy before and after, the paired-bootstrap 95%
CI of the gain, the training time and the reward curve (mean reward per tenth of the run). The
last line is one JSON object. Settings are chosen with this script, so it never reads a test
split: those are for the final evaluation only.

    python -m hallucue_mlx.fastblas python scripts/grpo_gain.py
    python scripts/grpo_gain.py --set train.steps=50 --set train.learning_rate=5e-4
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--config", default=None, help="run config YAML (default: default.yaml)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--out", default=None, help="keep the training folder here")
    ap.add_argument("--n", type=int, default=600, help="validation items (default 600)")
    args = ap.parse_args()

    import numpy as np

    from hallucue_mlx.config import eval_config_for, load_config, train_config_for
    from hallucue_mlx.data.bench import get_adapter, load_benchmark
    from hallucue_mlx.evaluate import evaluate
    from hallucue_mlx.metrics import paired_bootstrap_ci
    from hallucue_mlx.models import load_model
    from hallucue_mlx.train import train

    cfg = load_config(args.config, args.set)
    spec = cfg.data.train
    if "validation" not in get_adapter(spec.name).splits:
        raise SystemExit(
            f"error: {spec.name} has no validation split, and settings must not be chosen on the "
            "test split; train on a benchmark with one (synth, geometry3k)"
        )
    items = load_benchmark(spec.name, "validation", n=args.n, seed=cfg.data.seed)
    ecfg = replace(eval_config_for(cfg), conditions=("none",))
    tcfg = train_config_for(cfg, "none")
    model, processor = load_model(cfg.model.id, dtype=cfg.model.dtype)

    def accuracy_per_item() -> np.ndarray:
        res = evaluate(model, processor, items, ecfg, progress=False)
        by_id = {r["id"]: float(r["correct"]) for r in res.records}
        return np.array([by_id[it.id] for it in items])

    base = accuracy_per_item()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="grpo_gain_"))
    t0 = time.perf_counter()
    # the periodic evaluation reads the first train.n_eval of the same validation items
    result = train(
        tcfg,
        cfg.model.id,
        out,
        quiet=False,
        model_and_processor=(model, processor),
        eval_items=items,
    )
    minutes = (time.perf_counter() - t0) / 60
    after = accuracy_per_item()
    gain, lo, hi = paired_bootstrap_ci(after, base)
    solved = base == 1.0  # the bar "items the base already solves lose at most 2 points"
    kept = float(after[solved].mean()) if solved.any() else float("nan")

    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rewards = [d["reward"] for d in lines if "event" not in d]
    curve = [round(float(np.mean(c)), 3) for c in np.array_split(rewards, 10) if len(c)]
    evals = {
        d["step"]: round(d["eval/none/accuracy"], 4)
        for d in lines
        if "eval/none/accuracy" in d and "step" in d
    }
    print(f"model {cfg.model.id}; {spec.name}/validation, {len(items)} items, greedy, clean")
    print(
        f"training: {result.steps_done} steps in {minutes:.1f} min ({tcfg.prompts_per_step} "
        f"prompts x {tcfg.num_generations}, lr {tcfg.learning_rate})"
    )
    print(f"base accuracy    {base.mean():.4f}")
    print(f"trained accuracy {after.mean():.4f}")
    print(
        f"gain {100 * gain:+.2f} points, paired bootstrap 95% CI [{100 * lo:+.2f}, {100 * hi:+.2f}]"
    )
    print(f"kept of the {int(solved.sum())} items the base solved: {100 * kept:.1f}%")
    print(f"reward per tenth of the run: {curve}")
    print(f"periodic evaluation (first {tcfg.n_eval} of these items): {evals}")
    print(
        json.dumps(
            {
                "base": round(float(base.mean()), 4),
                "trained": round(float(after.mean()), 4),
                "gain": round(gain, 4),
                "ci95": [round(lo, 4), round(hi, 4)],
                "n": len(items),
                "base_solved": int(solved.sum()),
                "base_solved_kept": round(kept, 4),
                "steps": result.steps_done,
                "train_minutes": round(minutes, 2),
                "reward_curve": curve,
                "eval_curve": evals,
            }
        )
    )


if __name__ == "__main__":
    main()
