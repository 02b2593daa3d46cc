"""scripts/seed_rows.py: one trained model over seed runs kept in separate folders, with the share
it keeps of the items the base solves, split by how reliably the base's samples solve them (the
README's "kept" numbers)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fake_run import make_fake_run

from hallucue_mlx.report import load_run

ROOT = Path(__file__).resolve().parents[1]


def _seed_rows(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "seed_rows.py"), *args],
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("packed", [False, True])
def test_kept_share_is_split_by_the_base_samples_pass_count(tmp_path, packed):
    run = make_fake_run(tmp_path / "run", n_test={"synth": 80}, n_train=10, steps=4)
    recs = load_run(run).cell("base", "synth", "test", "none")
    model = {
        str(r["id"]): bool(r["correct"])
        for r in load_run(run).cell("none", "synth", "test", "none")
    }
    solved = sorted(str(r["id"]) for r in recs if r["correct"])
    assert len(solved) >= 8
    # the base's 4 samples: every one right on the first half of the solved items, one of four
    # right on the rest; every other item never right
    reliable = set(solved[: len(solved) // 2])
    samples = tmp_path / "base-samples"
    samples.mkdir()
    lines = []
    for r in recs:
        k = str(r["id"])
        right = 4 if k in reliable else 1 if k in solved else 0
        lines += [
            json.dumps({"id": k, "corruption": "none", "sample": s, "correct": s < right})
            for s in range(4)
        ]
    text = "\n".join(lines) + "\n"
    if packed:  # as committed under results/ (scripts/pack_results.py's compression)
        (samples / "records.jsonl.gz").write_bytes(gzip.compress(text.encode()))
    else:
        (samples / "records.jsonl").write_text(text)

    out = _seed_rows(
        "--model", "none", "--base", str(run), "--runs", str(run), "--base-samples", str(samples)
    )
    assert out.returncode == 0, out.stderr
    kept = json.loads(out.stdout.strip().splitlines()[-1])["per_seed"][0]["kept"]
    few = [k for k in solved if k not in reliable]
    assert kept["all"]["items"] == len(solved)
    assert kept["every sample"]["items"] == len(reliable)
    assert kept["few samples"]["items"] == len(few)
    assert "most samples" not in kept and "no sample" not in kept
    want = 100 * sum(model[k] for k in reliable) / len(reliable)
    assert abs(kept["every sample"]["kept"] - want) < 1e-9
    assert "every sample" in out.stdout


def test_base_samples_of_other_items_are_refused_by_name(tmp_path):
    run = make_fake_run(tmp_path / "run", n_test={"synth": 40}, n_train=10, steps=4)
    samples = tmp_path / "base-samples"
    samples.mkdir()
    row = {"id": "synth-test-9999", "corruption": "none", "sample": 0, "correct": True}
    (samples / "records.jsonl").write_text(json.dumps(row) + "\n")
    out = _seed_rows(
        "--model", "none", "--base", str(run), "--runs", str(run), "--base-samples", str(samples)
    )
    assert out.returncode != 0
    assert "same benchmark, split and --n" in out.stderr
