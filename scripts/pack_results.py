#!/usr/bin/env python
"""Pack a run or sweep folder into a small folder anyone can check: the files behind its numbers.

    python scripts/pack_results.py runs/default-seeds results/default-seeds
    hallucue-mlx report results/default-seeds      # rebuilds the report from the packed files

Kept: every JSON file (manifest, results, sweep, done markers, summaries) and the training
metrics, every evaluation record (`records.jsonl`) and every training rollout (`rollouts.jsonl`),
both gzip-compressed, byte-for-byte the same lines. Left out: adapters and checkpoints (weights), evaluation parts (the same records again),
reports and figures (rebuilt by `hallucue-mlx report`). The compression is deterministic (no
time stamp), so packing the same run twice gives identical files.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
from pathlib import Path

SKIP_DIRS = {"checkpoints", "adapters", "parts", "figures", "tables", "tensorboard", "wandb"}
KEEP_SUFFIXES = {".json", ".jsonl", ".yaml"}
# the large line files, kept gzip-compressed: evaluation records and training rollouts
GZIPPED = {"records.jsonl", "rollouts.jsonl"}


def pack(src: Path, dst: Path) -> list[Path]:
    """Copy what backs src's numbers into dst; returns the files written."""
    if not src.is_dir():
        raise SystemExit(f"error: {src} is not a folder; give a run or sweep folder")
    written = []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if not path.is_file() or SKIP_DIRS & set(rel.parts[:-1]):
            continue
        if path.suffix not in KEEP_SUFFIXES or path.name.startswith("."):
            continue
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if path.name in GZIPPED:
            out = out.with_name(path.name + ".gz")
            with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
                gz.write(path.read_bytes())
        else:
            shutil.copyfile(path, out)
        written.append(out)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="a run or sweep folder")
    ap.add_argument("dst", type=Path, help="where the packed copy goes")
    args = ap.parse_args()
    files = pack(args.src, args.dst)
    size = sum(f.stat().st_size for f in files)
    print(f"{len(files)} files, {size / 1e6:.1f} MB in {args.dst}")


if __name__ == "__main__":
    main()
