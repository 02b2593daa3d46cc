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

    python scripts/seed_rows.py --model blank --base runs/default \\
        --runs runs/default runs/bi-seeds/seed=1 runs/bi-seeds/seed=2 \\
        --versus none --versus-runs runs/default runs/clean-seeds/seed=1 runs/clean-seeds/seed=2

With --base-samples, an evaluation folder of the base sampled several times per item on the
same items (`hallucue-mlx eval --split test --n 600 --corruption none --temperature 1.0
--samples 8 --template short-decline`), the share of the items the base answers right greedily
that the model keeps is also split by how many of the base's samples were right: items it
solves reliably (every sample) against items its greedy answer gets right by a narrow margin.

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import gzip
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
    ap.add_argument(
        "--base-samples",
        type=Path,
        default=None,
        help="evaluation folder of the base sampled N times an item: kept share by its pass count",
    )
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
    bands = base_bands(args.base_samples, args.condition, base) if args.base_samples else None

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
            if against is None:
                per_seed[-1]["kept"] = kept_shares(s, base, bands)
        mean, lo, hi = seed_cluster_ci(np.stack(rows), [clusters[k] for k in ids])
        return per_seed, (100 * mean, 100 * lo, 100 * hi), len(ids)

    out = {"model": args.model, "condition": args.condition}
    per_seed, ci, n = table(args.runs, args.model, None, None)
    print(f"{args.model} under {args.condition}: {n} test items, {len(args.runs)} seeds")
    for r in per_seed:
        print(f"  seed {r['seed']}: {r['accuracy']:.1f}%, {r['change']:+.1f} vs base ({r['run']})")
        kept = ", ".join(f"{k} {v['kept']:.1f}% of {v['items']}" for k, v in r["kept"].items())
        print(f"    kept of the items the base solves: {kept}")
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


def base_bands(folder: Path, condition: str, greedy: dict[str, float]) -> dict[str, str]:
    """Per item the base solves greedily, how reliably its samples solve it: 'every sample',
    'most samples' (at least half), 'few samples' (some, under half) or 'no sample'."""
    from hallucue_mlx.evaluate import load_records

    packed = folder / "records.jsonl.gz"  # as scripts/pack_results.py keeps records
    if packed.is_file():
        with gzip.open(packed, "rt", encoding="utf-8") as f:
            recs = [json.loads(line) for line in f if line.strip()]
    else:
        try:
            recs = load_records(folder)
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"--base-samples: {e}") from None
    recs = [r for r in recs if r.get("corruption", CLEAN) == condition]
    if not recs:
        raise SystemExit(f"{folder}: no records under {condition}; run `hallucue-mlx eval` there")
    right: dict[str, list[bool]] = {}
    for r in recs:
        right.setdefault(str(r["id"]), []).append(bool(r["correct"]))
    solved = [k for k, v in greedy.items() if v == 1.0]
    missing = [k for k in solved if k not in right]
    if missing:
        raise SystemExit(
            f"{folder}: no samples of {len(missing)} items the base solves (first {missing[0]}); "
            "sample the base on the same benchmark, split and --n as the runs"
        )
    bands = {}
    for k in solved:
        share = sum(right[k]) / len(right[k])
        bands[k] = (
            "every sample"
            if share == 1
            else "most samples"
            if share >= 0.5
            else "few samples"
            if share > 0
            else "no sample"
        )
    return bands


def kept_shares(
    model: dict[str, float], base: dict[str, float], bands: dict[str, str] | None
) -> dict[str, dict[str, float]]:
    """Share (%) of the items the base solves greedily that the model also solves, overall and,
    with bands, per band of the base's sampled pass rate."""
    solved = [k for k, v in base.items() if v == 1.0]
    groups = {"all": solved}
    for band in ("every sample", "most samples", "few samples", "no sample"):
        if bands:
            groups[band] = [k for k in solved if bands[k] == band]
    return {
        name: {"items": len(ids), "kept": 100 * sum(model[k] for k in ids) / max(len(ids), 1)}
        for name, ids in groups.items()
        if ids
    }


if __name__ == "__main__":
    main()
