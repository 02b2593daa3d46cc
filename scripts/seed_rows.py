#!/usr/bin/env python
"""One trained model over several seeds whose runs live in separate run folders.

`hallucue-mlx run --seeds N` trains every condition under every seed. When the seeds were run
one at a time instead (seed 0 by the whole grid, later seeds with `--set seed=K --set
"grid.train_conditions=[blank]" --set grid.include_base=false`), this puts them together: per
seed the model's clean test accuracy and its change against the base (paired item by item;
greedy evaluation makes the base the same in every seed), and over the seeds the mean change
with the interval the seed report uses (metrics.seed_cluster_ci: seeds and items, clusters of
items resampled together). With --versus, the same for the model minus another model, seed by
seed (both trained with the same seed).

    python scripts/seed_rows.py --model blank --base results/default \\
        --runs results/default results/default-bi-seeds/seed=1 results/default-bi-seeds/seed=2 \\
        --versus none --versus-runs results/default results/default-clean-seeds/seed=1 \\
        results/default-clean-seeds/seed=2

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CLEAN = "none"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--model", required=True, help="the model's name in the runs (blank, ...)")
    ap.add_argument("--runs", nargs="+", type=Path, required=True, help="one run folder a seed")
    ap.add_argument("--base", type=Path, required=True, help="a run folder with the base model")
    ap.add_argument("--versus", default=None, help="also the model minus this one, seed by seed")
    ap.add_argument("--versus-runs", nargs="+", type=Path, default=None)
    ap.add_argument("--condition", default=CLEAN, help="evaluation corruption (default none)")
    args = ap.parse_args()
    if args.versus and (not args.versus_runs or len(args.versus_runs) != len(args.runs)):
        ap.error("--versus needs --versus-runs, one folder per folder of --runs")

    from hallucue_mlx.metrics import item_scores, record_cluster, seed_cluster_ci
    from hallucue_mlx.report.load import load_run

    def scores(run_dir: Path, model: str) -> tuple[dict[str, float], dict[str, str], int]:
        run = load_run(run_dir)
        if len(run.benchmarks) != 1:
            raise SystemExit(f"{run_dir}: one benchmark a run, got {run.benchmarks}")
        recs = run.cell(model, run.benchmarks[0], "test", args.condition)
        if not recs:
            raise SystemExit(f"{run_dir}: no test records of model {model!r} ({args.condition})")
        seed = (run.manifest or {}).get("seeds", {}).get("seed")
        return item_scores(recs), {str(r["id"]): record_cluster(r) for r in recs}, seed

    base, clusters, _ = scores(args.base, "base")

    def table(runs: list[Path], model: str, against: list[Path] | None, other: str | None):
        import numpy as np

        rows, per_seed = [], []
        for i, run_dir in enumerate(runs):
            s, _, seed = scores(run_dir, model)
            ref = base if against is None else scores(against[i], other)[0]
            ids = [k for k in base if k in s and k in ref]
            if len(ids) != len(base):
                raise SystemExit(f"{run_dir}: {len(ids)} of the base's {len(base)} items")
            diff = np.array([s[k] - ref[k] for k in ids])
            rows.append(diff)
            acc = 100 * float(np.mean([s[k] for k in ids]))
            per_seed.append({"run": str(run_dir), "seed": seed, "accuracy": acc})
            per_seed[-1]["change"] = 100 * float(diff.mean())
        mean, lo, hi = seed_cluster_ci(np.stack(rows), [clusters[k] for k in ids])
        return per_seed, (100 * mean, 100 * lo, 100 * hi), len(ids)

    out = {"model": args.model, "condition": args.condition}
    per_seed, ci, n = table(args.runs, args.model, None, None)
    print(f"{args.model} under {args.condition}: {n} test items, {len(args.runs)} seeds")
    for r in per_seed:
        print(f"  seed {r['seed']}: {r['accuracy']:.1f}%, {r['change']:+.1f} vs base ({r['run']})")
    print(f"  vs base over seeds and items: {ci[0]:+.1f} [{ci[1]:.1f}, {ci[2]:.1f}]")
    out.update(items=n, per_seed=per_seed, vs_base=ci)
    if args.versus:
        per_seed, ci, _ = table(args.runs, args.model, args.versus_runs, args.versus)
        changes = ", ".join(f"{r['change']:+.1f}" for r in per_seed)
        print(f"  minus {args.versus}, seed by seed: {changes}")
        print(
            f"  minus {args.versus} over seeds and items: {ci[0]:+.1f} [{ci[1]:.1f}, {ci[2]:.1f}]"
        )
        out[f"vs_{args.versus}"] = {"per_seed": [r["change"] for r in per_seed], "ci": ci}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
