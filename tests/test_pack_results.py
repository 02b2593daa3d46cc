"""A packed run folder (scripts/pack_results.py: JSON files kept, records gzip-compressed, weights
and reports left out) rebuilds the same report as the run it came from: what makes the README's
numbers checkable from committed files."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

from fake_run import make_fake_run

from hallucue_mlx.report import load_run, write_report

ROOT = Path(__file__).resolve().parents[1]


def test_a_packed_run_rebuilds_the_same_report(tmp_path):
    run = make_fake_run(tmp_path / "run", n_test={"synth": 60}, n_train=20, steps=10)
    (run / "train" / "none" / "checkpoints").mkdir(parents=True)
    (run / "train" / "none" / "checkpoints" / "adapters.safetensors").write_bytes(b"weights")
    rollouts = '{"step": 1, "response": "<think>6 + 3 = 9.</think> \\\\boxed{9}"}\n'
    (run / "train" / "none" / "rollouts.jsonl").write_text(rollouts)
    original = write_report(run).read_text()
    packed = tmp_path / "packed"
    for _ in range(2):  # deterministic: packing twice gives the same bytes
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "pack_results.py"), str(run), str(packed)],
            check=True,
            capture_output=True,
        )
    gz = sorted(packed.glob("eval/*/*/records.jsonl.gz"))
    assert gz and not list(packed.glob("eval/*/*/records.jsonl"))
    assert not list(packed.rglob("*.safetensors")) and not (packed / "report.md").exists()
    # the training rollouts too: compressed, the same lines
    assert not (packed / "train" / "none" / "rollouts.jsonl").exists()
    with gzip.open(packed / "train" / "none" / "rollouts.jsonl.gz", "rt") as f:
        assert f.read() == rollouts
    a, b = load_run(run), load_run(packed)
    assert a.records.keys() == b.records.keys()
    assert all(a.records[k] == b.records[k] for k in a.records)
    rebuilt = write_report(packed).read_text()
    # the same numbers; only the folder's own name may differ
    assert rebuilt.replace(str(packed), str(run)).replace("packed", "run") == original.replace(
        "packed", "run"
    )
