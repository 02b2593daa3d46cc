"""Several training seeds (grid.seeds, `run --seeds N`): a sweep of `seed` on the same items, and a
report whose intervals cover seed-to-seed variation as well as item sampling."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from hallucue_mlx import runfolder
from hallucue_mlx.cli import app
from hallucue_mlx.config import ConfigError, config_hash, load_config
from hallucue_mlx.grid import run_grid
from hallucue_mlx.metrics import item_scores, paired_bootstrap_ci, seed_item_bootstrap_ci
from hallucue_mlx.report.load import load_run
from hallucue_mlx.runfolder import GridError
from hallucue_mlx.sweep import config_sweep, run_sweep, seed_sweep


def test_the_bootstrap_covers_seed_variation():
    rng = np.random.default_rng(0)
    items = (rng.random(400) < 0.6).astype(float)
    # three seeds that agree: the interval is the item bootstrap's
    same = seed_item_bootstrap_ci([items, items, items])
    one = paired_bootstrap_ci(items, np.zeros_like(items))
    assert same[0] == pytest.approx(one[0])
    assert same[2] - same[1] == pytest.approx(one[2] - one[1], rel=0.15)
    # seeds whose means differ by 10 points: a wider interval around the same mean
    shifted = [np.clip(items + d, 0, 1) for d in (-0.1, 0.0, 0.1)]
    wide = seed_item_bootstrap_ci(shifted)
    assert wide[2] - wide[1] > 1.2 * (same[2] - same[1])
    assert seed_item_bootstrap_ci(shifted) == wide  # deterministic
    with pytest.raises(ValueError, match="seeds, items"):
        seed_item_bootstrap_ci([])


def test_seeds_config_makes_a_seed_sweep():
    cfg = load_config(None, ["seed=5", "grid.seeds=3"])
    assert seed_sweep(cfg) == ("seed", [5, 6, 7]) == config_sweep(cfg)
    assert config_sweep(load_config(None, [])) is None
    # one seed keeps the hash of folders made before the key existed
    assert config_hash(load_config(None, ["grid.seeds=1"])) == config_hash(load_config(None, []))
    with pytest.raises(ConfigError, match="grid.seeds"):
        load_config(None, ["grid.seeds=2", "grid.ratios=[0.5,1.0]"])
    with pytest.raises(GridError, match="grid.seeds makes this a sweep"):
        run_grid(cfg, "unused")


def _cfg(tiny_dir, *extra):
    return load_config(None, [*_cfg_sets(tiny_dir), *extra])


@pytest.fixture(scope="module")
def seeds_dir(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds")
    res = CliRunner().invoke(
        app,
        [
            "run",
            "--quick",
            "--seeds",
            "2",
            "--out",
            str(out),
            *sum((["--set", s] for s in _cfg_sets(tiny_dir)), []),
        ],
    )
    assert res.exit_code == 0, res.output
    return out


def _cfg_sets(tiny_dir):
    return [
        f"model.id={tiny_dir}",
        "train.max_completion_length=6",
        "eval.max_tokens=6",
        "grid.train_conditions=[none,blank]",
        "grid.eval_conditions=[none,blank]",
        "train.temperature=1.5",  # sampling differs visibly between seeds
    ]


@pytest.mark.slow
def test_run_with_seeds_trains_each_seed_on_the_same_items(seeds_dir):
    meta = json.loads((seeds_dir / runfolder.SWEEP).read_text())
    assert meta["key"] == "seed" and meta["values"] == [0, 1] and meta["finished"]
    runs = [seeds_dir / "seed=0", seeds_dir / "seed=1"]
    ids = []
    for d, seed in zip(runs, (0, 1), strict=True):
        cfg = json.loads((d / runfolder.MANIFEST).read_text())["config"]
        assert cfg["seed"] == seed and cfg["grid"]["seeds"] == 1
        train_cfg = json.loads((d / "train/none/train_config.json").read_text())
        assert train_cfg["seed"] == seed
        recs = (d / "eval/base/synth-test/records.jsonl").read_text().splitlines()
        ids.append([json.loads(r)["id"] for r in recs])
    assert ids[0] == ids[1]  # data.seed fixed: the same test items in every seed


@pytest.mark.slow
def test_the_seeds_report_recomputes_each_seed_and_covers_seeds(seeds_dir):
    report = (seeds_dir / "report.md").read_text()
    assert "2 training seeds of every model" in report
    assert "resamples whole clusters of items" in report and "degrees of freedom" in report
    assert (seeds_dir / "report.html").is_file()
    rows = {r["train_condition"]: r for r in csv.DictReader(open(seeds_dir / "tables/seeds.csv"))}
    assert set(rows) == {"base", "none", "blank"}
    for model, row in rows.items():
        accs = []
        for seed in (0, 1):
            run = load_run(seeds_dir / f"seed={seed}")
            scores = item_scores(run.cell(model, "synth", "test", "none"))
            accs.append(sum(scores.values()) / len(scores))
            assert float(row[f"accuracy_seed_{seed}"]) == pytest.approx(accs[-1], abs=1e-4)
        assert float(row["accuracy_mean"]) == pytest.approx(np.mean(accs), abs=1e-4)
        assert float(row["ci_lo"]) <= float(row["accuracy_mean"]) <= float(row["ci_hi"])
    assert rows["base"]["delta_vs_base"] == ""
    assert rows["none"]["delta_ci_lo"] != ""
    matrix = list(csv.DictReader(open(seeds_dir / "tables/seeds_matrix.csv")))
    assert {(r["train_condition"], r["eval"]) for r in matrix} == {
        (m, c) for m in ("base", "none", "blank") for c in ("none", "blank")
    }


@pytest.mark.slow
def test_the_seeds_report_gives_each_seeds_diagnostics(seeds_dir):
    from hallucue_mlx.metrics import diagnostics, first_samples

    rows = list(csv.DictReader(open(seeds_dir / "tables/seeds_diagnostics.csv")))
    got = {(r["train_condition"], r["metric"], int(r["seed"])): float(r["value"]) for r in rows}
    for seed in (0, 1):
        run = load_run(seeds_dir / f"seed={seed}")
        for model in ("base", "none"):
            want = diagnostics(first_samples(run.records[(model, "synth", "test")]))
            assert got[(model, "vision_gain", seed)] == pytest.approx(want["vision_gain"]["diff"])
            h = want["hallucination"]["blank"]
            if h["n"]:  # the blank image removed what some items need: their answer rate
                assert got[(model, "hallucination_rate/blank", seed)] == pytest.approx(h["rate"])
    report = (seeds_dir / "report.md").read_text()
    assert "## Modality diagnostics across seeds" in report


@pytest.mark.slow
def test_the_seeds_report_compares_corruption_training_with_clean_grpo(seeds_dir):
    """GRPO-BI minus GRPO, paired by item within each seed, on clean inputs and under blank
    images: the mean of the per-seed accuracy differences, inside its interval."""
    rows = list(csv.DictReader(open(seeds_dir / "tables/seeds_vs_clean.csv")))
    got = {(r["train_condition"], r["eval"]): r for r in rows}
    assert set(got) == {("blank", "none"), ("blank", "blank")}
    for cond in ("none", "blank"):
        diffs = []
        for seed in (0, 1):
            run = load_run(seeds_dir / f"seed={seed}")
            a = item_scores(run.cell("blank", "synth", "test", cond))
            b = item_scores(run.cell("none", "synth", "test", cond))
            diffs.append(np.mean([a[i] - b[i] for i in a]))
        row = got[("blank", cond)]
        assert row["versus"] == "none" and row["n_seeds"] == "2"
        assert float(row["delta"]) == pytest.approx(np.mean(diffs), abs=1e-4)
        assert float(row["ci_lo"]) <= float(row["delta"]) <= float(row["ci_hi"])
    report = (seeds_dir / "report.md").read_text()
    assert "## Corruption-trained vs clean-trained GRPO" in report
    assert "| GRPO-BI" in report.split("## Corruption-trained vs clean-trained GRPO")[1]


def test_another_key_cannot_be_swept_on_a_seeds_config(tiny_dir, tmp_path):
    cfg = _cfg(tiny_dir, "grid.seeds=2")
    with pytest.raises(ConfigError, match="a sweep varies one key"):
        run_sweep(cfg, "train.beta", [0.0, 0.1], tmp_path, quick=True, quiet=True)


def test_seed_cluster_ci_is_a_t_interval_over_few_seeds():
    """Three seeds whose clean accuracies spread with sd 4.3 points: the seed term alone gives
    t(2) * 4.3 / sqrt(3) = +-10.7 points, which a bootstrap over 3 seed values understates."""
    from scipy.stats import t

    from hallucue_mlx.metrics import seed_cluster_ci

    rng = np.random.default_rng(0)
    base = (rng.random(4000) < 0.5).astype(float)
    sd = 0.043
    offsets = np.array([-1.0, 0.0, 1.0]) * sd  # sample sd of the seed means = 0.043
    table = [np.clip(base + o, -1, 2) for o in offsets]  # shifts keep per-item structure
    mean, lo, hi = seed_cluster_ci(table)
    seed_half = float(t.ppf(0.975, 2)) * sd / np.sqrt(3)
    assert seed_half == pytest.approx(0.107, abs=0.001)
    assert (hi - lo) / 2 >= seed_half - 1e-12  # never narrower than the seeds alone
    assert (hi - lo) / 2 < seed_half * 1.1  # 4000 items: the seed term dominates
    assert mean == pytest.approx(float(np.mean(table)))
    # the old bootstrap over seeds and items is much narrower for the same data
    old = seed_item_bootstrap_ci(table)
    assert (old[2] - old[1]) < (hi - lo) / 2


def test_cluster_bootstrap_counts_a_repeated_question_once():
    """The same question asked 4 times is one piece of evidence: resampling items as if
    independent narrows the interval by about sqrt(4)."""
    from hallucue_mlx.metrics import seed_cluster_ci

    rng = np.random.default_rng(1)
    questions = (rng.random(100) < 0.5).astype(float)
    items = np.repeat(questions, 4)  # each question in 4 wordings, answered alike
    clusters = np.repeat(np.arange(100), 4).tolist()
    m1, lo1, hi1 = seed_cluster_ci([items], clusters)
    m2, lo2, hi2 = seed_cluster_ci([items])
    assert m1 == m2
    ratio = (hi1 - lo1) / (hi2 - lo2)
    assert 1.7 < ratio < 2.3
    # all-distinct clusters are the item bootstrap, draw for draw
    a, b = items.tolist(), np.zeros(400).tolist()
    assert paired_bootstrap_ci(a, b, clusters=list(range(400))) == paired_bootstrap_ci(a, b)


def test_seed_cluster_ci_gives_the_item_term_its_own_degrees_of_freedom():
    """Seeds that nearly agree on 600 items: the item term dominates and, estimated from 600
    items, it needs no t(2) (that doubled the width); still never narrower than the t interval
    over the seed means alone."""
    from scipy.stats import norm, t

    from hallucue_mlx.metrics import seed_cluster_ci

    rng = np.random.default_rng(3)
    base = (rng.random(600) < 0.5).astype(float)
    table = [base.copy() for _ in range(3)]
    for s, k in enumerate([0, 3, 6]):  # seed means 0, 0.5 and 1 point apart
        flip = rng.choice(np.flatnonzero(table[s] == 0), size=k, replace=False)
        table[s][flip] = 1.0
    mean, lo, hi = seed_cluster_ci(table)
    half = (hi - lo) / 2
    item_se = float(np.std(np.mean(table, axis=0), ddof=1) / np.sqrt(600))
    seed_se = float(np.std(np.mean(table, axis=1), ddof=1) / np.sqrt(3))
    assert half < float(t.ppf(0.975, 2)) * np.hypot(item_se, seed_se) * 0.6
    assert half == pytest.approx(float(norm.ppf(0.975)) * np.hypot(item_se, seed_se), rel=0.1)
    assert half >= float(t.ppf(0.975, 2)) * seed_se
