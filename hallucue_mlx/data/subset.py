"""Compact seeded subsets of benchmarks, and the manifest that names exactly what a run used."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from hallucue_mlx import atomic
from hallucue_mlx.data.item import Item

MANIFEST_FILE = "manifest.json"


def _rank(seed: int, item_id: str) -> bytes:
    return hashlib.sha256(f"{seed}\x1fsubset\x1f{item_id}".encode()).digest()


def stratified_pick(
    keys: Sequence[tuple[str, tuple[str, ...]]], n: int | None, seed: int
) -> list[int]:
    """Indices of a seeded subset of n rows, stratified by the keys' strata; in original order.

    Each stratum gets n * share rows (largest remainders get the leftover rows, ties by a seeded
    hash); within a stratum the rows whose sha256(seed, id) ranks lowest are taken, so the choice
    is the same in every process and does not depend on row order.
    """
    total = len(keys)
    if n is None or n >= total:
        return list(range(total))
    if n < 0:
        raise ValueError(f"subset size must be >= 0, got {n}")
    groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, (_, stratum) in enumerate(keys):
        groups[stratum].append(i)
    order = sorted(groups)
    exact = {s: n * len(groups[s]) / total for s in order}
    quota = {s: int(exact[s]) for s in order}
    left = n - sum(quota.values())
    # leftover rows go to the largest remainders; ties are broken by a seeded hash, not by name
    tie = {s: hashlib.sha256(f"{seed}\x1fstratum\x1f{s}".encode()).digest() for s in order}
    for s in sorted(order, key=lambda s: (-(exact[s] - quota[s]), tie[s]))[:left]:
        quota[s] += 1
    chosen = []
    for s in order:
        ranked = sorted(groups[s], key=lambda i: (_rank(seed, keys[i][0]), i))
        chosen.extend(ranked[: quota[s]])
    return sorted(chosen)


def content_hash(items: Sequence[Item]) -> str:
    """sha256 over each item's id, question, choices, answer and image pixels (mode, size, bytes)."""
    h = hashlib.sha256()
    for it in items:
        for part in (it.id, it.question, "\x1e".join(it.choices), it.answer):
            h.update(part.encode())
            h.update(b"\x1f")
        if it.image is not None:
            h.update(f"{it.image.mode}|{it.image.size}|".encode())
            h.update(it.image.tobytes())
        h.update(b"\x1d")
    return h.hexdigest()


@dataclass(frozen=True)
class SubsetManifest:
    """Which items a run used: benchmark, split, seed, requested size, ids and a content hash."""

    benchmark: str
    split: str
    seed: int
    n: int | None
    ids: tuple[str, ...]
    content_hash: str

    @classmethod
    def of(
        cls, items: Sequence[Item], benchmark: str, split: str, seed: int, n: int | None
    ) -> SubsetManifest:
        return cls(benchmark, split, seed, n, tuple(it.id for it in items), content_hash(items))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ids"] = list(self.ids)
        return d

    def save(self, path: str | Path) -> Path:
        return atomic.write_json(path, self.to_dict(), indent=1)

    @classmethod
    def load(cls, path: str | Path) -> SubsetManifest:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(
            d["benchmark"],
            d["split"],
            int(d["seed"]),
            d.get("n"),
            tuple(d["ids"]),
            d["content_hash"],
        )
