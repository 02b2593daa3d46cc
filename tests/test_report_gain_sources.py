"""Where the answers go right or wrong (trace outcomes, reading / computing / format changes vs
base) and the train-slice vs test gap, on fabricated records whose traces are known: the trained
model reads the image better and computes exactly as well as base."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from fake_run import make_fake_run

from hallucue_mlx.metrics import (
    gain_sources,
    has_trace,
    macro_paired_diff,
    outcome_shares,
    paired_bootstrap_ci,
    paired_ratio_ci,
    train_test_gap,
)
from hallucue_mlx.report import load_run, write_report
from hallucue_mlx.report.tables import (
    gain_sources_all,
    gap_table,
    outcomes_table,
    sources_table,
    train_test_gaps,
)
from hallucue_mlx.trace import OUTCOMES

# Share of items each model reads right (clean), on the test split and on the train slice.
READ = {"base": 0.5, "none": 0.75, "blank": 0.5}
TRAIN_READ = {"base": 0.5, "none": 0.9, "blank": 0.6}
N_TEST, N_TRAIN = 300, 100


def _record(model: str, split: str, cond: str, i: int, n: int) -> dict:
    """Item i: the fact is read right when its rank is under the model's reading skill (blank
    images leave almost nothing to read); the additions (from the fact as read) are right on 8
    items in 10, the same items for every model; every 20th response has no answer format
    (nothing stated)."""
    rank = ((i * 37) % n) / n
    skill = (TRAIN_READ if split == "train" else READ)[model] if cond == "none" else 0.1
    chain = 1 + i % 3
    fmt = i % 20 != 19
    read = (rank < skill) if fmt else None
    computed = fmt and (i * 7) % 10 < 8  # from what it read, right or wrong
    return {
        "id": f"synth-{split}-{i:04d}",
        "benchmark": "synth",
        "split": split,
        "version": ("text_dominant", "vision_only")[i % 2],
        "task": ("count", "digit")[i % 2],
        "corruption": cond,
        "response": "<think>...</think> \\boxed{1}" if fmt else "no idea",
        "extracted": "1" if fmt else None,
        "gold": "1",
        "correct": fmt and bool(read) and computed,
        "format_ok": fmt,
        "response_tokens": 20,
        "truncated": False,
        "grader_error": None,
        "declined": False,
        "cluster": f"synth:{i // 2}",  # two items per cluster: clustered resampling is used
        "trace_chain": chain,
        "trace_read": read,
        "trace_steps_ok": chain if computed else 0,
        "trace_computed": computed,
    }


def _records(model: str, split: str, cond: str = "none") -> list[dict]:
    n = N_TRAIN if split == "train" else N_TEST
    return [_record(model, split, cond, i, n) for i in range(n)]


def make_traced_run(root: Path, *, train_slice: bool = True) -> Path:
    root.mkdir(parents=True)
    manifest = {
        "config": {
            "model": "hallucue-tiny",
            "benchmarks": ["synth"],
            "train": {"drop_zero_std_groups": True},
        },
        "train_conditions": ["none", "blank"],
        "eval_conditions": ["none", "blank"],
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    for model in READ:
        for split in ("test", "train") if train_slice else ("test",):
            recs = _records(model, split) + _records(model, split, "blank")
            d = root / "eval" / model / f"synth-{split}"
            d.mkdir(parents=True)
            (d / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run = make_traced_run(tmp_path_factory.mktemp("traced") / "run")
    return run, write_report(run).read_text()


# ------------------------------------------------------------------------------- metrics


def test_a_read_gain_with_compute_unchanged() -> None:
    g = gain_sources(_records("none", "test"), _records("base", "test"))
    assert g is not None and g["n"] == N_TEST
    read, compute = g["read"], g["compute"]
    # by hand: the responses that state a fact (format kept) and how many of them are right
    stated = [r for r in _records("none", "test") if r["trace_read"] is not None]
    assert read["n_a"] == len(stated) == N_TEST - N_TEST // 20
    assert read["a"] == pytest.approx(sum(r["trace_read"] for r in stated) / len(stated))
    assert read["diff"] == pytest.approx(0.25, abs=0.01)
    assert read["ci95"][0] > 0.15  # the interval excludes zero, by a wide margin
    assert compute["diff"] == pytest.approx(0.0, abs=0.01)
    assert compute["ci95"][0] < 0 < compute["ci95"][1]
    assert g["format"]["diff"] == 0.0 and g["format"]["ci95"] == [0.0, 0.0]
    # accuracy is Table 1's delta: the same resamples of the same clusters
    acc = macro_paired_diff(
        {"synth": _records("none", "test")}, {"synth": _records("base", "test")}
    )
    assert g["accuracy"]["diff"] == pytest.approx(acc["diff"], abs=1e-12)
    assert g["accuracy"]["ci95"] == pytest.approx(acc["ci95"], abs=1e-9)


def test_ratio_interval_with_unit_denominators_is_the_paired_bootstrap() -> None:
    a = [float(i % 3 == 0) for i in range(200)]
    b = [float(i % 4 == 0) for i in range(200)]
    ones = [1.0] * 200
    for clusters in (None, [i // 4 for i in range(200)]):
        got = paired_ratio_ci(a, ones, b, ones, clusters=clusters)
        assert got == pytest.approx(paired_bootstrap_ci(a, b, clusters=clusters), abs=1e-12)
    assert paired_ratio_ci([0.0], [0.0], [1.0], [1.0]) is None  # nothing counted on one side


def test_outcome_shares_sum_to_one_and_count_each_outcome() -> None:
    recs = _records("base", "test") + _records("base", "test", "blank")
    o = outcome_shares(recs)
    assert list(o["shares"]) == list(OUTCOMES)
    assert sum(o["shares"].values()) == pytest.approx(1.0)
    assert sum(o["counts"].values()) == len(recs)
    assert o["counts"]["format"] == 2 * (N_TEST // 20)
    assert o["counts"]["correct"] == sum(r["correct"] for r in recs)
    # read right, an addition wrong: "compute"; read wrong: "read"
    assert o["counts"]["compute"] == sum(
        r["trace_read"] is True and not r["trace_computed"] for r in recs
    )
    assert o["counts"]["read"] == sum(r["trace_read"] is False for r in recs)


def test_old_records_carry_no_trace() -> None:
    old = [
        {k: v for k, v in r.items() if not k.startswith("trace_")} for r in _records("base", "test")
    ]
    assert not has_trace(old)
    assert has_trace(_records("base", "test"))
    g = gain_sources(old, old)
    assert g["read"] is None and g["compute"] is None and g["accuracy"]["diff"] == 0.0


def test_train_test_gap_by_hand() -> None:
    train = {m: _records(m, "train") for m in READ}
    test = {m: _records(m, "test") for m in READ}
    gaps = train_test_gap(train, test)
    acc = lambda rs: sum(r["correct"] for r in rs) / len(rs)  # noqa: E731
    for m in READ:
        assert gaps[m]["train"] == pytest.approx(acc(train[m]))
        assert gaps[m]["test"] == pytest.approx(acc(test[m]))
        assert gaps[m]["gap"] == pytest.approx(acc(train[m]) - acc(test[m]))
        assert (gaps[m]["n_train"], gaps[m]["n_test"]) == (N_TRAIN, N_TEST)
    assert gaps["base"]["gap_vs_base"] is None and gaps["base"]["ci95"] is None
    want = gaps["none"]["gap"] - gaps["base"]["gap"]
    assert gaps["none"]["gap_vs_base"] == pytest.approx(want)
    lo, hi = gaps["none"]["ci95"]
    assert lo < want < hi
    # no train slice for a model: left out; base missing: no difference to it
    assert "none" not in train_test_gap({"none": []}, test)
    assert train_test_gap({"none": train["none"]}, test)["none"]["gap_vs_base"] is None


# ------------------------------------------------------------------------------- the report


def test_report_tables_and_reading(traced: tuple[Path, str]) -> None:
    run, md = traced
    assert "## Where the answers go right or wrong (test split)" in md
    out = read_csv(run / "tables" / "outcomes.csv")
    by_cell: dict[tuple[str, str], float] = {}
    for r in out:
        key = (r["train_condition"], r["eval_condition"])
        by_cell[key] = by_cell.get(key, 0.0) + float(r["share"])
    assert set(by_cell) == {(m, c) for m in READ for c in ("none", "blank")}
    assert all(v == pytest.approx(1.0, abs=1e-3) for v in by_cell.values())
    outcomes_md = (run / "tables" / "outcomes.md").read_text()
    assert "| synth | clean | GRPO† | 300 |" in outcomes_md  # the filter mark, as elsewhere
    src = {
        (r["train_condition"], r["component"]): r
        for r in read_csv(run / "tables" / "gain_sources.csv")
    }
    assert float(src[("none", "read")]["delta_vs_base"]) == pytest.approx(0.25, abs=0.01)
    assert float(src[("none", "read")]["delta_ci_lo"]) > 0
    assert abs(float(src[("none", "compute")]["delta_vs_base"])) < 0.01
    assert (
        float(src[("none", "compute")]["delta_ci_lo"])
        < 0
        < float(src[("none", "compute")]["delta_ci_hi"])
    )
    assert src[("base", "read")]["delta_vs_base"] == ""  # base: its rate only
    assert "| synth | GRPO† | 74.7 (**+24.9** [" in (run / "tables" / "gain_sources.md").read_text()
    assert (
        "Of GRPO†'s change vs base on synth (test, clean), reading moved most: its accuracy rose "
        "by 24.9 points, from 49.8% to 74.7%" in md
    )
    # GRPO-BI reads as base does: nothing moved, one sentence says so
    assert "GRPO-BI†" not in " ".join(ln for ln in md.splitlines() if "moved most" in ln)


def test_report_gap_table(traced: tuple[Path, str]) -> None:
    run, md = traced
    rows = {r["train_condition"]: r for r in read_csv(run / "tables" / "train_test_gap.csv")}
    for m in READ:
        tr = _records(m, "train")
        te = _records(m, "test")
        a_tr = sum(r["correct"] for r in tr) / len(tr)
        a_te = sum(r["correct"] for r in te) / len(te)
        assert float(rows[m]["accuracy_train"]) == pytest.approx(a_tr, abs=1e-4)
        assert float(rows[m]["accuracy_test"]) == pytest.approx(a_te, abs=1e-4)
        assert float(rows[m]["gap"]) == pytest.approx(a_tr - a_te, abs=1e-4)
    want = float(rows["none"]["gap"]) - float(rows["base"]["gap"])
    assert float(rows["none"]["gap_vs_base"]) == pytest.approx(want, abs=2e-4)
    assert rows["base"]["gap_vs_base"] == ""
    assert "gap − base's gap [CI]" in md
    # the reading's train-vs-test sentence uses the same numbers
    g = train_test_gaps(load_run(run))["synth"]["none"]
    assert f"a gap of {100 * g['gap']:+.1f} points" in md


def test_no_train_slice_no_gap_table(tmp_path: Path) -> None:
    run = load_run(make_traced_run(tmp_path / "run", train_slice=False))
    assert train_test_gaps(run) == {} and gap_table(run, {}) is None
    assert outcomes_table(run) is not None


def test_old_run_without_traces_omits_the_new_tables(tmp_path: Path) -> None:
    root = make_fake_run(tmp_path / "old", n_test={"synth": 60}, n_train=20, steps=5)
    run = load_run(root)
    assert outcomes_table(run) is None
    assert gain_sources_all(run) == {} and sources_table(run, {}) is None
    md = write_report(root).read_text()
    assert "Where the answers go right or wrong" not in md and "moved most" not in md
    assert not (root / "tables" / "outcomes.csv").exists()
    assert not (root / "tables" / "gain_sources.csv").exists()
    # the train slice is there: the gap table is
    assert (root / "tables" / "train_test_gap.csv").exists()


def test_reading_says_within_noise_when_nothing_moved(tmp_path: Path) -> None:
    from hallucue_mlx.report.reading import _gain_sources

    run = load_run(make_traced_run(tmp_path / "run", train_slice=False))
    same = gain_sources(_records("base", "test"), _records("base", "test"))
    (sentence,) = _gain_sources(run, {("none", "synth"): same})
    assert sentence.startswith("GRPO†'s changes vs base on synth (test, clean) in reading (+0.0")
    assert sentence.endswith("are all within noise.") and "moved most" not in sentence


def test_kept_on_the_items_base_solved() -> None:
    """What a model keeps of what the base could already do: the items base got right, by hand."""
    base, trained = _records("base", "test"), _records("none", "test")
    g = gain_sources(trained, base)
    right = {r["id"] for r in base if r["correct"]}
    kept = [r for r in trained if r["id"] in right]
    assert g["solved"]["n_a"] == len(kept) == len(right)
    assert g["solved"]["b"] == 1.0
    assert g["solved"]["a"] == pytest.approx(sum(r["correct"] for r in kept) / len(kept))
    assert g["solved"]["diff"] == pytest.approx(g["solved"]["a"] - 1.0)
    lo, hi = g["solved"]["ci95"]
    assert lo <= g["solved"]["diff"] <= hi <= 0.0
    # a base that solved nothing: nothing to keep
    none_right = [{**r, "correct": False} for r in base]
    assert gain_sources(trained, none_right)["solved"] is None
