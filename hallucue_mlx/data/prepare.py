"""`hallucue-mlx data prepare`: cache a seeded subset of a benchmark locally for offline runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from hallucue_mlx.data.bench import BENCHMARKS, load_benchmark
from hallucue_mlx.data.item import Item
from hallucue_mlx.data.local import write_local
from hallucue_mlx.data.subset import MANIFEST_FILE, SubsetManifest


def prepare_subset(
    benchmark: str,
    n: int | None,
    out: str | Path,
    *,
    split: str | None = None,
    seed: int = 0,
    path: str | None = None,
    check: Callable[[Sequence[Item]], None] | None = None,
) -> SubsetManifest:
    """Cache a seeded subset locally (items.jsonl + PNG images + manifest.json) for offline runs.

    `check` runs on the loaded items before anything is written (the caller passes the grader's
    gold check, rewards.check_golds, which this layer cannot import). Load the folder back with
    load_benchmark('local', split, path=out) or load_benchmark(benchmark, ..., path=out).
    """
    split = split or BENCHMARKS[benchmark].default_split
    items = load_benchmark(benchmark, split, path=path, n=n, seed=seed)
    if check is not None:
        check(items)
    write_local(items, out)
    manifest = SubsetManifest.of(items, benchmark, split, seed, n)
    manifest.save(Path(out) / MANIFEST_FILE)
    return manifest
