"""Print text-removal coverage (share of items whose question changes) on synth and on each
adapter's test copy (tests/bench_rows/). Usage: python scripts/text_removal_coverage.py [N_SYNTH]"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import bench_rows  # noqa: E402

from hallucue_mlx.corrupt import Corruption, apply, coverage  # noqa: E402
from hallucue_mlx.data.bench import load_benchmark  # noqa: E402


def report(name: str, items: list) -> None:
    records = [r for _, r in apply(items, Corruption("text_removal"))]
    changed = sum(r.changed for r in records)
    print(f"{name:12s} {coverage(records):6.1%}  ({changed}/{len(records)} items changed)")


def main() -> None:
    n_synth = int(sys.argv[1]) if len(sys.argv) > 1 else 600
    report("synth", load_benchmark("synth", "test", n=n_synth))
    with tempfile.TemporaryDirectory() as tmp:
        for name, (build, split) in bench_rows.BUILDERS.items():
            report(name, load_benchmark(name, split or None, path=str(build(Path(tmp)))))


if __name__ == "__main__":
    main()
