"""One-factor sweeps: parsing and checks, which models are shared between values, and quick sweeps
end to end on a tiny random model (the folder layout, the dose-response report, resume)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from hallucue_mlx import runfolder
from hallucue_mlx.cli import app
from hallucue_mlx.config import ConfigError, load_config
from hallucue_mlx.grid import run_grid
from hallucue_mlx.report.sweep import _positions, load_sweep, points
from hallucue_mlx.runfolder import GridError
from hallucue_mlx.sweep import (
    check_sweep,
    parse_assignment,
    ratio_sweep,
    recipe,
    run_sweep,
    value_configs,
    value_name,
)


def _cfg(tiny_dir, *extra):
    return load_config(
        None,
        [
            f"model.id={tiny_dir}",
            "train.max_completion_length=6",
            "eval.max_tokens=6",
            "grid.train_conditions=[none,blank]",
            "grid.eval_conditions=[none,blank]",
            *extra,
        ],
    )


# ---------------------------------------------------------------- parsing and checks


def test_assignment_values_are_read_as_yaml():
    assert parse_assignment("train.beta=0,0.01,0.1") == ("train.beta", [0, 0.01, 0.1])
    assert parse_assignment(" train.loss_type = grpo, dr_grpo ") == (
        "train.loss_type",
        ["grpo", "dr_grpo"],
    )
    with pytest.raises(ConfigError, match="KEY=V1,V2"):
        parse_assignment("train.beta")


@pytest.mark.parametrize(
    ("key", "values", "message"),
    [
        ("output.dir", ["a", "b"], "cannot be swept"),
        ("grid.train_conditions", [["none"], ["blank"]], "cannot be swept"),
        ("train.beta", [0.1], "at least two values"),
        ("train.beta", [0.1, 0.1], "twice"),
    ],
)
def test_unsweepable_keys_and_value_lists_are_refused(key, values, message):
    with pytest.raises(ConfigError, match=message):
        check_sweep(key, values)


def test_grid_ratio_is_sweepable_and_grid_ratios_asks_for_it():
    check_sweep("grid.ratio", [0.5, 1.0])
    cfg = load_config(None, ["grid.ratios=[0.25,1.0]"])
    assert ratio_sweep(cfg) == ("grid.ratio", [0.25, 1.0])
    assert ratio_sweep(load_config(None)) is None
    with pytest.raises(ConfigError, match="grid.ratios.*0 < ratio <= 1"):
        load_config(None, ["grid.ratios=[0.5,1.5]"])


def test_a_bad_value_is_named_and_an_unknown_key_refused():
    cfg = load_config(None)
    with pytest.raises(ConfigError, match=r"train.beta=-1"):
        value_configs(cfg, "train.beta", [0.0, -1])
    with pytest.raises(ConfigError, match="train.betta"):
        value_configs(cfg, "train.betta", [0, 1])


def test_value_folders_are_named_after_the_key_and_value():
    assert value_name("train.beta", 0.01) == "train.beta=0.01"
    assert value_name("grid.ratio", 1.0) == "grid.ratio=1.0"
    # escaped, so names are one-to-one: "a/b c" and "a_b_c" get two folders
    assert value_name("train.prompt_template", "a/b c") == "train.prompt_template=a%2Fb%20c"
    assert value_name("train.prompt_template", "a_b_c") == "train.prompt_template=a_b_c"


def test_only_models_whose_recipe_ignores_the_key_are_shared():
    cfg = load_config(None)
    a, b = value_configs(cfg, "grid.ratio", [0.5, 1.0])
    assert recipe(a, "base") == recipe(b, "base")
    assert recipe(a, "none") == recipe(b, "none")  # clean GRPO corrupts nothing at any ratio
    assert recipe(a, "blank") != recipe(b, "blank")
    a, b = value_configs(cfg, "train.beta", [0.0, 0.1])
    assert recipe(a, "base") == recipe(b, "base")
    assert recipe(a, "none") != recipe(b, "none")
    a, b = value_configs(cfg, "eval.max_tokens", [32, 64])
    assert recipe(a, "base") != recipe(b, "base")  # the base's evaluation changes with the key


def test_dose_axis_is_numeric_only_when_values_are_evenly_spread():
    assert _positions([0.25, 0.5, 1.0]) == ([0.25, 0.5, 1.0], True)
    assert _positions([0, 0.01, 0.1]) == ([0.0, 1.0, 2.0], False)
    assert _positions(["grpo", "dr_grpo"]) == ([0.0, 1.0], False)


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def ratio_sweep_dir(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    cfg = _cfg(tiny_dir, "grid.ratios=[0.5,1.0]")
    run_sweep(cfg, "grid.ratio", [0.5, 1.0], out, quick=True, quiet=True)
    return out, cfg


@pytest.mark.slow
def test_ratio_sweep_trains_corrupted_models_per_ratio_and_shares_the_rest(ratio_sweep_dir):
    out, _ = ratio_sweep_dir
    meta = json.loads((out / runfolder.SWEEP).read_text())
    assert meta["runs"] == ["grid.ratio=0.5", "grid.ratio=1.0"] and meta["finished"]
    assert meta["shared"] == {"grid.ratio=0.5": [], "grid.ratio=1.0": ["base", "none"]}
    first, second = out / "grid.ratio=0.5", out / "grid.ratio=1.0"
    for d in (first, second):  # each value folder is a complete run folder with its own report
        assert (d / runfolder.RESULTS).is_file() and (d / "report.md").is_file()
        cfg = json.loads((d / runfolder.MANIFEST).read_text())["config"]
        assert cfg["grid"]["ratio"] == float(d.name.split("=")[1]) and cfg["grid"]["ratios"] == []
    for rel in ("eval/base/synth-test/records.jsonl", "train/none/adapter/adapters.safetensors"):
        assert (first / rel).read_bytes() == (second / rel).read_bytes()
    blank = json.loads((second / "train/blank/train_config.json").read_text())
    assert blank["corruption_ratio"] == 1.0


@pytest.mark.slow
def test_a_shared_model_equals_its_recomputation(ratio_sweep_dir, tmp_path):
    """Sharing is sound only because results are a function of the recipe: recompute the base
    of the second value on its own and compare its records with the shared copy."""
    out, cfg = ratio_sweep_dir
    (vcfg,) = value_configs(replace(cfg, grid=replace(cfg.grid, ratios=[])), "grid.ratio", [1.0])
    alone = replace(vcfg, grid=replace(vcfg.grid, train_conditions=[]))
    run_grid(alone, tmp_path, quick=True, quiet=True, report=False)
    rel = "eval/base/synth-test/records.jsonl"
    assert (tmp_path / rel).read_bytes() == (out / "grid.ratio=1.0" / rel).read_bytes()


@pytest.mark.slow
def test_sweep_report_has_the_dose_response_table_and_figure(ratio_sweep_dir):
    out, _ = ratio_sweep_dir
    report = (out / "report.md").read_text()
    assert "![Dose-response over grid.ratio](figures/dose_response.png)" in report
    assert (out / "figures/dose_response.png").stat().st_size > 10_000
    assert "[grid.ratio=0.5](grid.ratio=0.5/report.md)" in report
    rows = list(csv.DictReader((out / "tables/dose_response.csv").open()))
    # base and clean GRPO once (shared), GRPO-BI at each ratio
    assert [(r["value"], r["train_condition"]) for r in rows] == [
        ("0.5", "base"),
        ("0.5", "none"),
        ("0.5", "blank"),
        ("1.0", "blank"),
    ]
    base = next(r for r in rows if r["train_condition"] == "base")
    recs = [
        json.loads(x)
        for x in (out / "grid.ratio=0.5/eval/base/synth-test/records.jsonl").read_text().split("\n")
        if x
    ]
    clean = [r for r in recs if r["corruption"] == "none"]
    assert int(base["n"]) == len(clean)
    assert float(base["accuracy"]) == pytest.approx(sum(r["correct"] for r in clean) / len(clean))
    pts = points(load_sweep(out))
    assert {p.model for p in pts if p.shared} == {"base", "none"}


@pytest.mark.slow
def test_rerunning_a_finished_sweep_recomputes_nothing(ratio_sweep_dir):
    out, cfg = ratio_sweep_dir
    adapter = out / "grid.ratio=1.0/train/blank/adapter/adapters.safetensors"
    before = adapter.stat().st_mtime_ns
    run_sweep(cfg, "grid.ratio", [0.5, 1.0], out, quick=True, quiet=True)
    assert adapter.stat().st_mtime_ns == before


@pytest.mark.slow
def test_another_sweep_in_the_same_folder_is_refused(ratio_sweep_dir):
    out, cfg = ratio_sweep_dir
    with pytest.raises(GridError, match="--force"):
        run_sweep(cfg, "grid.ratio", [0.25, 1.0], out, quick=True, quiet=True)


@pytest.mark.slow
def test_beta_sweep_from_the_command_line(tiny_dir, tmp_path):
    res = CliRunner().invoke(
        app,
        [
            "sweep",
            "train.beta=0,0.1",
            "--quick",
            "--out",
            str(tmp_path),
            "--set",
            f"model.id={tiny_dir}",
            "--set",
            "grid.train_conditions=[none]",
            "--set",
            "grid.eval_conditions=[none,blank]",
            "--set",
            "eval.max_tokens=6",
            "--set",
            "train.max_completion_length=6",
        ],
    )
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / runfolder.SWEEP).read_text())
    assert meta["shared"]["train.beta=0.1"] == ["base"]  # the base does not depend on beta
    for v in ("0", "0.1"):
        tc = json.loads((tmp_path / f"train.beta={v}/train/none/train_config.json").read_text())
        assert tc["beta"] == float(v)
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 0 and "report.md" in res.output
    assert "| train.beta |" in (tmp_path / "report.md").read_text()


def test_sweep_command_errors_name_the_fix(tmp_path):
    res = CliRunner().invoke(app, ["sweep", "output.dir=a,b", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "cannot be swept" in res.output
    res = CliRunner().invoke(app, ["sweep", "train.beta=0", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "at least two values" in res.output
    res = CliRunner().invoke(app, ["report", str(tmp_path)])  # no sweep.json, no run: refused
    assert res.exit_code == 1
