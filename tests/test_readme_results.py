"""The README's result tables are rebuilt from the committed files under results/: a reader can
check every cell (`hallucue-mlx report results/<name>`), and this test fails when the README and
the files disagree."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from hallucue_mlx.report import write_report
from hallucue_mlx.report.sweep import is_sweep, write_sweep_report

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"<!-- (results/[\w.-]+) (tables/[\w.-]+\.md) -->\n(.*?)\n<!-- end -->", re.S)


def blocks() -> list[tuple[str, str, str]]:
    return BLOCK.findall(README)


def test_the_readme_quotes_committed_results():
    found = blocks()
    assert found, "the README has no table marked as rebuilt from results/"
    for folder, _, _ in found:
        # a run folder, or a sweep folder (seeds) of run folders
        assert any((ROOT / folder / f).is_file() for f in ("manifest.json", "sweep.json")), folder


@pytest.mark.parametrize("folder", sorted({f for f, _, _ in BLOCK.findall(README)}))
def test_readme_tables_equal_what_the_report_builds(tmp_path, folder):
    run = tmp_path / "run"
    shutil.copytree(ROOT / folder, run)
    write_sweep_report(run) if is_sweep(run) else write_report(run)
    for f, table, text in blocks():
        if f == folder:
            built = (run / table).read_text().strip()
            assert text.strip() == built, f"README's {folder} {table} differs from the report's"


def _number(text: str) -> float:
    return float(text.replace("%", ""))


def test_readme_validation_numbers_equal_the_committed_files():
    head = json.loads((ROOT / "results/validation/headroom-skip85.json").read_text())["overall"]
    m = re.search(
        r"greedy ([\d.]+)%, pass@1\s+([\d.]+)%,\s+pass@8\s+([\d.]+)%, and\s+([\d.]+)% of the groups",
        README,
    )
    assert m, "the README's headroom sentence changed: update this test"
    got = [_number(x) for x in m.groups()]
    want = [100 * head[k] for k in ("greedy", "pass1", "pass_at_g", "reward_spread")]
    assert got == pytest.approx(want, abs=0.051)
    # the validation table: one row per recipe, its committed runs named by their files; a row
    # with two ("A.json; B.json": B the same recipe with a coin-flip reward) gives two results
    # "base -> A%; B%" and "gain [lo, hi]; gain [lo, hi]", in the files' order
    names = (
        "grpo-filtered",
        "grpo-skip",
        "grpo-skip-seed1",
        "grpo-skip-steps80",
        "grpo-skip-prompts8",
        "grpo-skip-random-reward",
        "grpo-skip-random-reward-rerun",
        "grpo-skip-beta0.1",
        "grpo-skip-beta0.1-random-reward",
        "grpo-skip-lr1e-3",
        "grpo-skip-lr1e-3-random-reward",
        "grpo-skip-mlp",
        "grpo-skip-mlp-random-reward",
        "grpo-skip-t1.2",
        "grpo-skip85",
        "grpo-skip85-random-reward",
        "grpo-skip85-steps40",
        "grpo-skip85-steps40-random-reward",
        "grpo-skip85-steps20",
        "grpo-skip85-steps20-seed1",
        "grpo-skip85-steps20-seed2",
        "grpo-skip85-steps20-random-reward",
        "grpo-skip85-steps20-seed1-random-reward",
        "grpo-skip85-steps20-seed2-random-reward",
    )
    for name in names:
        grpo = json.loads((ROOT / f"results/validation/{name}.json").read_text())
        line = next(
            (r for r in README.splitlines() if r.startswith("|") and f"`{name}.json`" in r), None
        )
        assert line, f"the README's validation table has no row for {name}.json: update this test"
        i = re.findall(r"`([\w.-]+)\.json`", line).index(name)
        cells = [c.strip() for c in line.strip("|").split("|")]
        base, trained = cells[1].split("->")
        accs = re.findall(r"([\d.]+)%", trained)
        changes = re.findall(r"([+-]?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\]", cells[2])
        assert len(accs) == len(changes) > i, line
        got = [_number(base.strip().rstrip("%")), _number(accs[i])]
        got += [_number(x) for x in changes[i]]
        want = [100 * grpo[k] for k in ("base", "trained", "gain")] + [
            100 * x for x in grpo["ci95"]
        ]
        assert got == pytest.approx(want, abs=0.051), name
