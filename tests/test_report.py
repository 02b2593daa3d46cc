"""The report, built from fabricated run folders whose correct answers are known (tests/fake_run.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from fake_run import make_fake_run
from typer.testing import CliRunner

from hallucue_mlx.cli import app
from hallucue_mlx.report import ReportError, load_run, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def records(run: Path, model: str, cell: str) -> list[dict]:
    path = run / "eval" / model / cell / "records.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def accuracy(run: Path, model: str, cell: str, cond: str) -> float:
    """Counted by hand from the records file, independent of the report's code."""
    rs = [r for r in records(run, model, cell) if r["corruption"] == cond]
    return sum(r["correct"] for r in rs) / len(rs)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run = make_fake_run(tmp_path_factory.mktemp("full") / "run")
    path = write_report(run)
    return run, path.read_text()


def test_table1_numbers_match_the_records(full: tuple[Path, str]) -> None:
    run, md = full
    # the fabricated rule gives exact counts: 96, 116, 108, 110, 98 of 200 synth items right
    assert [
        accuracy(run, m, "synth-test", "none")
        for m in ("base", "none", "blank", "random", "text_removal")
    ] == [0.48, 0.58, 0.54, 0.55, 0.49]
    rows = {
        (r["train_condition"], r["benchmark"]): r for r in read_csv(run / "tables" / "table1.csv")
    }
    for model in ("base", "none", "blank", "random", "text_removal"):
        accs = {b: accuracy(run, model, f"{b}-test", "none") for b in ("synth", "mathvista")}
        for b, a in accs.items():
            assert float(rows[(model, b)]["accuracy"]) == pytest.approx(a, abs=1e-4)
            assert int(rows[(model, b)]["n"]) == {"synth": 200, "mathvista": 120}[b]
        assert float(rows[(model, "AVG")]["accuracy"]) == pytest.approx(
            sum(accs.values()) / 2, abs=1e-4
        )
        if model == "base":
            assert rows[(model, "synth")]["delta_vs_base"] == ""
            continue
        base = {b: accuracy(run, "base", f"{b}-test", "none") for b in accs}
        for b in accs:
            d = float(rows[(model, b)]["delta_vs_base"])
            assert d == pytest.approx(accs[b] - base[b], abs=1e-4)
            assert (
                float(rows[(model, b)]["delta_ci_lo"])
                <= d
                <= float(rows[(model, b)]["delta_ci_hi"])
            )
    # clean GRPO's +10 points is clearly above 0; GRPO-TR's +1 point (2 flips of 200) is not
    assert float(rows[("none", "synth")]["delta_ci_lo"]) > 0
    assert float(rows[("text_removal", "synth")]["delta_ci_lo"]) <= 0
    # the markdown table pastes the same numbers, bold only where the CI excludes 0
    assert "| Model | synth (n=200) | mathvista (n=120) | AVG |" in md
    assert "| base | 48.0 [41.2, 54.9] | 48.3 [" in md
    assert "| GRPO | 58.0 (**+10.0** [" in md
    assert "| GRPO-TR | 49.0 (+1.0 [" in md
    tex = (run / "tables" / "table1.tex").read_text()
    assert r"\begin{tabular}{lccc}" in tex and r"58.0\,{\scriptsize \textbf{+10.0}" in tex
    assert r"49.0\,{\scriptsize +1.0" in tex


def test_matrix_diagnostics_versions_and_splits(full: tuple[Path, str]) -> None:
    run, md = full
    matrix = {
        (r["benchmark"], r["train_condition"], r["eval_condition"]): r
        for r in read_csv(run / "tables" / "matrix.csv")
    }
    assert len(matrix) == 2 * 5 * 4
    for model in ("base", "blank"):
        for cond in ("none", "blank", "random", "text_removal"):
            want = accuracy(run, model, "synth-test", cond)
            assert float(matrix[("synth", model, cond)]["accuracy"]) == pytest.approx(
                want, abs=1e-4
            )
    assert "| synth | base | 48.0 [41.2, 54.9] | 30.0 [" in md
    diag = {
        (r["benchmark"], r["train_condition"], r["metric"]): r
        for r in read_csv(run / "tables" / "diagnostics.csv")
    }
    clean, blank = (
        accuracy(run, "base", "synth-test", "none"),
        accuracy(run, "base", "synth-test", "blank"),
    )
    assert float(diag[("synth", "base", "vision_gain")]["value"]) == pytest.approx(
        clean - blank, abs=1e-4
    )
    # text removal: its gain is measured on the items it changed, and its coverage shown
    tr = [r for r in records(run, "base", "synth-test") if r["corruption"] == "text_removal"]
    changed = [r for r in tr if r["corruption_changed"]]
    assert 0 < len(changed) < len(tr)
    assert int(diag[("synth", "base", "text_gain")]["n"]) == len(changed)
    cov = diag[("synth", "base", "text_removal_coverage")]
    assert float(cov["value"]) == pytest.approx(len(changed) / len(tr), abs=1e-4)
    # hallucination: on the items blank images left unanswerable (synth: vision-dominant and
    # vision-only), answered = not abstained ("cannot be determined") and not empty
    rs = [
        r
        for r in records(run, "base", "synth-test")
        if r["corruption"] == "blank" and r["info_removed"]
    ]
    assert rs and {r["version"] for r in rs} == {"vision_dominant", "vision_only"}
    answered = [r for r in rs if r["extracted"] and "cannot" not in r["extracted"]]
    row = diag[("synth", "base", "hallucination_rate/blank")]
    assert int(row["n"]) == len(rs)
    assert float(row["value"]) == pytest.approx(len(answered) / len(rs), abs=1e-4)
    assert int(row["lucky_correct"]) == sum(r["correct"] for r in answered)
    # versions: vision_only collapses under blank images, text_dominant does not
    vers = {
        (r["train_condition"], r["version"]): r for r in read_csv(run / "tables" / "versions.csv")
    }
    vo, td = vers[("base", "vision_only")], vers[("base", "text_dominant")]
    assert float(vo["accuracy_blank"]) < float(vo["accuracy_clean"]) - 0.2
    assert float(td["accuracy_blank"]) == pytest.approx(float(td["accuracy_clean"]))
    # eight settings: the train split is there for every model
    splits = {
        (r["train_condition"], r["split"], r["eval_condition"]): r
        for r in read_csv(run / "tables" / "splits.csv")
    }
    assert float(splits[("none", "train", "none")]["accuracy"]) == pytest.approx(
        accuracy(run, "none", "synth-train", "none"), abs=1e-4
    )
    for heading in (
        "## Table 1",
        "## Train × eval corruption matrix",
        "## Modality diagnostics",
        "## Modality versions",
        "## Train vs test split",
        "## Training curves",
        "## Reading",
    ):
        assert heading in md
    assert "## Missing or incomplete" not in md


def test_reading_states_what_the_numbers_show(full: tuple[Path, str]) -> None:
    run, md = full
    assert (
        "- GRPO raised clean test accuracy on synth from 48.0% to 58.0% (+10.0 points, 95% CI ["
        in md
    )
    assert (
        "GRPO-TR's clean test accuracy on synth (49.0% vs 48.0% for base) is within noise of base"
        in md
    )
    assert "GRPO-TR raised" not in md
    # one training seed: the reader is told the intervals do not include seed variation
    assert "intervals cover item sampling only, not seed-to-seed variation" in " ".join(md.split())
    rows = {
        (r["train_condition"], r["benchmark"]): r for r in read_csv(run / "tables" / "table1.csv")
    }
    share = float(rows[("blank", "AVG")]["delta_vs_base"]) / float(
        rows[("none", "AVG")]["delta_vs_base"]
    )
    assert f"GRPO-BI kept {100 * share:.0f}% of clean GRPO's gain on average" in md
    sentence = next(
        ln
        for ln in md.splitlines()
        if ln.startswith("- Under blank images, base accuracy on synth")
    )
    assert "fell by 38.0 points on vision_only items" in sentence  # 48% clean vs 10% blank, by hand
    assert "changed within noise on text_dominant items (+0.0 points" in sentence
    assert "-0.0" not in md


@pytest.mark.slow
def test_reading_without_gain_and_with_a_drop(tmp_path: Path) -> None:
    run = make_fake_run(
        tmp_path / "flat",
        n_test={"synth": 200},
        skill={"none": 0.48, "blank": 0.40, "random": 0.485},
        missing_train=("text_removal",),
    )
    md = write_report(run).read_text()
    assert "GRPO raised" not in md and "kept" not in md  # no gain, so no share of it
    assert "GRPO's clean test accuracy on synth (48.0% vs 48.0% for base) is within noise" in md
    assert "GRPO-BI lowered clean test accuracy on synth from 48.0% to 40.0% (-8.0 points" in md


@pytest.mark.slow
def test_models_trained_with_the_group_filter_are_not_called_grpo(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path / "filtered", n_test={"synth": 100}, group_filter=True)
    md = write_report(run).read_text()
    assert "GRPO†" in md and "GRPO-BI†" in md and "not plain GRPO" in md
    table1 = (run / "tables" / "table1.md").read_text()
    assert "| GRPO† |" in table1 and "| GRPO |" not in table1
    plain = write_report(make_fake_run(tmp_path / "plain", n_test={"synth": 100})).read_text()
    assert "†" not in plain


def test_figures_exist_and_are_listed(full: tuple[Path, str]) -> None:
    run, md = full
    names = ["matrix", "gains", "training_curves", "training_eval", "versions-synth"]
    for name in names:
        png, pdf = run / "figures" / f"{name}.png", run / "figures" / f"{name}.pdf"
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
        assert pdf.read_bytes()[:5] == b"%PDF-"
        assert f"](figures/{name}.png)" in md
    for link in [ln.split("](")[1].split(")")[0] for ln in md.splitlines() if "](" in ln]:
        assert (run / link).exists(), link


@pytest.mark.slow
def test_rebuild_is_byte_identical(full: tuple[Path, str]) -> None:
    run, _ = full
    files = sorted(p for d in ("figures", "tables") for p in (run / d).iterdir()) + [
        run / "report.md"
    ]
    before = {p: p.read_bytes() for p in files}
    write_report(run)
    assert (
        sorted(p for d in ("figures", "tables") for p in (run / d).iterdir()) + [run / "report.md"]
        == files
    )
    for p in files:
        assert p.read_bytes() == before[p], p.name


@pytest.mark.slow
def test_partial_run_says_what_is_missing(tmp_path: Path) -> None:
    run = make_fake_run(
        tmp_path / "partial",
        missing_train=("random",),
        missing_eval=(("text_removal", "blank"),),
        results=False,
    )
    with (run / "eval" / "base" / "synth-test" / "records.jsonl").open("a") as f:
        f.write('{"id": "synth-test-9999", "corrup')  # killed mid-write
    # a real benchmark's evaluation split may be called testmini: it plays the test role
    (run / "eval" / "base" / "mathvista-test").rename(run / "eval" / "base" / "mathvista-testmini")
    md = write_report(run).read_text()
    assert "Evaluation split read as the test split: mathvista: `testmini`" in md
    assert "| base | 48.0 [41.2, 54.9] | 48.3 [" in md
    assert "## Missing or incomplete" in md
    assert "`results.json` is missing" in md
    assert "GRPO-RI (train condition `random`): no training metrics" in md
    assert "GRPO-RI: no test-split evaluation on synth." in md
    assert "GRPO-TR on synth (test): not evaluated under blank images." in md
    assert "1 unreadable line(s) skipped" in md
    assert "| GRPO-RI | — | — | — |" in md
    assert "| GRPO | 58.0 (**+10.0** [" in md  # what is there is still reported


def test_early_runs_base_only_or_training_only(tmp_path: Path) -> None:
    run = make_fake_run(
        tmp_path / "early", missing_train=("none", "blank", "random", "text_removal"), results=False
    )
    md = write_report(run).read_text()
    assert "GRPO: no test-split evaluation on synth." in md
    assert "of base" not in md and "clean GRPO" not in md  # nothing trained to compare yet
    assert "- Under blank images, base accuracy on synth (test)" in md  # but base is read
    assert (run / "figures" / "matrix.png").exists()
    assert not (run / "figures" / "training_curves.png").exists()
    # only training logs so far, and without KL (beta 0)
    only_train = tmp_path / "train-only"
    (only_train / "train" / "none").mkdir(parents=True)
    (only_train / "train" / "none" / "metrics.jsonl").write_text(
        "".join(
            json.dumps({"step": s, "reward": 0.1 * s, "accuracy": 0.1 * s}) + "\n"
            for s in range(1, 6)
        )
    )
    md = write_report(only_train).read_text()
    assert "_No evaluation records yet._" in md
    assert "- No evaluation records yet (`eval/" in md
    assert "- GRPO: 5 steps logged, last step 5, final reward 0.500." in md
    assert (only_train / "figures" / "training_curves.png").stat().st_size > 10_000


def test_training_section_says_how_many_groups_had_reward_spread(tmp_path: Path) -> None:
    """GRPO learns only from groups whose rewards differ: the report gives their share at the
    first and the last step (1 - frac_reward_zero_std, TRL's name)."""
    run = tmp_path / "spread"
    (run / "train" / "none").mkdir(parents=True)
    (run / "train" / "none" / "metrics.jsonl").write_text(
        "".join(
            json.dumps({"step": s, "reward": 0.5, "frac_reward_zero_std": 0.1 * s}) + "\n"
            for s in range(1, 6)
        )
    )
    md = write_report(run).read_text()
    assert (
        "- GRPO: 5 steps logged, last step 5, final reward 0.500; groups with reward spread 90% "
        "at step 1, 50% at the last." in md
    )


def test_not_a_run_folder(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="not a run folder"):
        load_run(tmp_path)
    with pytest.raises(ReportError, match="does not exist"):
        load_run(tmp_path / "nope")


def test_cli_report(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path / "cli", n_test={"synth": 60}, n_train=20, steps=5)
    res = CliRunner().invoke(app, ["report", str(run)])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and (run / "report.md").exists()
    assert "- Time: 20.6 min of work\n" in (run / "report.md").read_text()  # in words, no raw key
    # one benchmark: AVG is that benchmark's cell, Wilson interval included
    t1 = {
        (r["train_condition"], r["benchmark"]): r for r in read_csv(run / "tables" / "table1.csv")
    }
    for col in ("accuracy", "ci_lo", "ci_hi", "delta_vs_base"):
        assert t1[("base", "AVG")][col] == t1[("base", "synth")][col]
        assert t1[("none", "AVG")][col] == t1[("none", "synth")][col]
    res = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert res.exit_code == 1 and "does not exist" in res.output


@pytest.mark.slow
def test_several_samples_per_item(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path / "samples", n_test={"synth": 60}, n_train=20, steps=5)
    base0 = accuracy(run, "base", "synth-test", "none")  # sample 0, before sample 1 is added
    grpo0 = accuracy(run, "none", "synth-test", "none")
    for model in ("base", "none"):
        path = run / "eval" / model / "synth-test" / "records.jsonl"
        recs = [json.loads(ln) for ln in path.read_text().splitlines()]
        # a second sample per item: right on every clean item for GRPO, wrong everywhere for base
        extra = [
            {**r, "sample": 1, "correct": model == "none" and r["corruption"] == "none"}
            for r in recs
        ]
        rows = [{**r, "sample": 0} for r in recs] + extra
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    md = write_report(run).read_text()
    assert "- Up to 2 samples per item" in md
    t1 = {
        (r["train_condition"], r["benchmark"]): r for r in read_csv(run / "tables" / "table1.csv")
    }
    assert float(t1[("base", "synth")]["accuracy"]) == pytest.approx(base0 / 2, abs=1e-4)
    assert int(t1[("base", "synth")]["n"]) == 120
    # per-item means: base (b + 0) / 2, GRPO (g + 1) / 2, paired on the 60 items
    d = float(t1[("none", "synth")]["delta_vs_base"])
    assert d == pytest.approx((grpo0 + 1) / 2 - base0 / 2, abs=1e-4)
    assert int(t1[("none", "synth")]["n_paired"]) == 60


@pytest.mark.slow
def test_eval_curves_read_the_old_clean_key(tmp_path: Path) -> None:
    """Run folders written before the rename log the clean in-training eval as eval/clean/...:
    the figure is the same as from eval/none/..."""
    run = make_fake_run(tmp_path / "new", n_test={"synth": 60}, n_train=20, steps=20)
    write_report(run)
    old = tmp_path / "old"
    old.mkdir()
    (old / "train").mkdir()
    for path in (run / "train").glob("*/metrics.jsonl"):
        (old / "train" / path.parent.name).mkdir()
        text = path.read_text().replace('"eval/none/accuracy"', '"eval/clean/accuracy"')
        (old / "train" / path.parent.name / "metrics.jsonl").write_text(text)
    for name in ("manifest.json", "results.json", "eval"):
        (old / name).symlink_to(run / name)
    assert "eval/clean/accuracy" in (old / "train" / "blank" / "metrics.jsonl").read_text()
    write_report(old)
    fig = "figures/training_eval.png"
    assert (old / fig).read_bytes() == (run / fig).read_bytes()
