"""A newcomer's first day: one recipe for `train`, `train()` and the grid; plain, ordered help;
`plan`'s total; smoke reports that say so; figures on a fixed scale; progress where no live bar
can be drawn; `--report-to`; labs whose times come from one source. All fast (no model runs)."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import pytest
import yaml
from fake_run import make_fake_run
from typer.testing import CliRunner

from hallucue_mlx import config as C
from hallucue_mlx.cli import ORDER, app, train_settings
from hallucue_mlx.config import ConfigError, load_config, train_config_for

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "120"})


# ---------------------------------------------------------------- one recipe


def test_train_command_train_function_and_grid_share_the_recipe():
    grid = train_config_for(load_config(None), "blank")
    for form in (
        None,
        "default",
        str(ROOT / "configs" / "default.yaml"),
        str(C.default_config_path()),
    ):
        _, tcfg = train_settings(form, [], {"corruption": "blank"})
        assert tcfg == grid, form
    # the recipe is the default config's, not the dataclass's paper defaults
    assert (grid.num_generations, grid.prompts_per_step, grid.steps) == (8, 16, 20)
    assert grid.drop_zero_std_groups and grid.temperature == 1.0 and grid.learning_rate == 2e-3


def test_train_settings_take_run_keys_bare_keys_and_flags():
    cfg, t = train_settings(
        "default",
        ["train.beta=0.05", "steps=3"],
        {"model": "org/vlm", "corruption_ratio": 0.5, "corruption": "random", "lora_rank": 4},
    )
    assert (t.beta, t.steps, t.lora_rank) == (0.05, 3, 4)
    assert (t.model, cfg.model.id, t.corruption, t.corruption_ratio) == (
        "org/vlm",
        "org/vlm",
        "random",
        0.5,
    )
    _, q = train_settings(None, [], {}, quick=True)
    assert q.steps == 2


def test_a_flat_train_config_file_is_read_over_the_default_recipe(tmp_path):
    flat = tmp_path / "train.yaml"
    flat.write_text("steps: 7\nbeta: 0.1\n")
    _, t = train_settings(str(flat), [], {})
    assert (t.steps, t.beta, t.num_generations) == (7, 0.1, 8)


def test_train_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="train.steps: expected an integer"):
        train_settings(None, ["steps=ten"], {})
    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        train_settings(None, ["train.stepz=3"], {})


def test_unknown_run_config_key_suggests_the_close_one():
    res = _cli("run", "--set", "train.lerning_rate=1e-3", "--print-config")
    assert res.exit_code == 2
    assert "did you mean 'learning_rate'" in res.output


# ---------------------------------------------------------------- help


def test_help_lists_commands_in_newcomer_order_without_boxes():
    res = _cli("--help")
    assert res.exit_code == 0
    assert not set("╭╮╰╯│") & set(res.output)
    listed = [ln.split()[0] for ln in res.output.split("Commands:")[1].splitlines() if ln.strip()]
    assert listed == list(ORDER)
    for ln in res.output.split("Commands:")[1].splitlines():  # one line a command
        assert not ln.strip() or ln.split()[0] in ORDER, ln


def test_train_help_is_plain_and_shows_the_grid_defaults():
    res = _cli("train", "--help")
    assert res.exit_code == 0
    assert "<bool>" not in res.output and "<list[str]>" not in res.output
    assert "╭" not in res.output
    text = " ".join(res.output.split())
    assert re.search(r"--steps INTEGER .*?\[default: 20\]", text)
    assert re.search(r"--num-generations INTEGER .*?\[default: 8\]", text)


def test_a_usage_error_is_plain_text():
    res = _cli("train", "--loss-type", "ppo")
    assert res.exit_code == 2
    assert "╭" not in res.output and "'ppo' is not valid" in res.output


# ---------------------------------------------------------------- plan's total


def test_plan_counts_the_whole_run():
    from hallucue_mlx.plan import run_units

    u = run_units(load_config(None))
    # 4 trainings of 20 steps; 5 models x (600 test + 100 train-slice items) x 4 conditions,
    # plus the periodic evaluation: 3 points (steps 0, 10, 20) x 32 items x (1 + 2 x 3) conditions
    assert (u["trainings"], u["steps"], u["models"]) == (4, 80, 5)
    assert u["eval_items"] == 5 * 700 * 4 + 3 * 32 * 7
    sweep = run_units(load_config("ratio-sweep"))
    # clean GRPO once, GRPO-BI and GRPO-TR at three ratios; the base model once
    assert (sweep["trainings"], sweep["models"]) == (7, 8)


def test_plan_prints_a_total_per_machine():
    from rich.console import Console

    from hallucue_mlx.plan import render_total

    speed = types.SimpleNamespace(name="M9 Test")
    timing = types.SimpleNamespace(step_s=2.0, eval_item_s=0.1)
    plan = types.SimpleNamespace(times=[(speed, timing, None)])
    console = Console(record=True, width=200)
    render_total(plan, load_config(None), console)  # type: ignore[arg-type]
    text = console.export_text()
    # 80 steps x 2 s + 14,672 item-conditions x 0.1 s = 1,627 s
    assert "Whole run" in text and "M9 Test: about 27.1 min in all" in text


# ---------------------------------------------------------------- reports


def _quick(run: Path) -> Path:
    m = json.loads((run / "manifest.json").read_text())
    m["quick"] = True
    (run / "manifest.json").write_text(json.dumps(m))
    return run


@pytest.mark.slow
def test_a_smoke_report_says_so_and_reads_no_numbers(tmp_path):
    from hallucue_mlx.report import write_report

    run = _quick(make_fake_run(tmp_path / "q", n_test={"synth": 40}, n_train=8, steps=4))
    md = write_report(run).read_text()
    assert md.index("Smoke run (`--quick`)") < md.index("## Run")
    reading = md[md.index("## Reading") : md.index("## Table 1")]
    bullets = [ln for ln in reading.splitlines() if ln.startswith("- ")]
    top = reading.split("### In detail:")[0]
    assert top.count("\n- ") == 1 and "Smoke run" in top  # one bullet above the fold
    assert len(bullets) > 5  # the rest is folded
    html = (run / "report.html").read_text()
    assert "<details>" in html and "<summary>" in html


@pytest.mark.slow
def test_comparisons_within_noise_fold_into_one_bullet(tmp_path):
    from hallucue_mlx.report import write_report

    run = make_fake_run(
        tmp_path / "flat", n_test={"synth": 60}, skill={"none": 0.48, "blank": 0.48}
    )
    md = write_report(run).read_text()
    reading = md[md.index("## Reading") : md.index("## Table 1")]
    top = reading.split("### In detail:")[0]
    assert "comparisons" in top and "are within noise" in top
    assert not any("is within noise of base" in ln for ln in top.splitlines())


def test_the_run_time_reads_as_words():
    from hallucue_mlx.report.write import _time_line

    line = _time_line({"total_s": 168.0, "train_s": {"none": 60.0}, "eval_s": {"base": 90.0}})
    assert line == "- Time: 2.8 min of work (trainings 60 s, evaluations 90 s)"
    assert "total_s" not in line


def test_the_matrix_uses_one_fixed_scale(tmp_path, monkeypatch):
    from hallucue_mlx.report import figures
    from hallucue_mlx.report.load import load_run

    run = load_run(make_fake_run(tmp_path / "m", n_test={"synth": 30, "mathvista": 20}))
    seen = {}
    monkeypatch.setattr(figures, "save_figure", lambda fig, d, stem: seen.setdefault("fig", fig))
    figures.fig_matrix(run, tmp_path)
    fig = seen["fig"]
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 2 and all(im.get_clim() == (0, 100) for im in images)
    assert sum(1 for ax in fig.axes if ax.get_label() == "<colorbar>") == 1
    titles = [ax.get_title() for ax in fig.axes if ax.get_images()]
    assert all("n=" in t and "95% CI" in t for t in titles)


# ---------------------------------------------------------------- progress and tables


def test_plain_progress_where_no_live_bar_can_be_drawn(capsys):
    from hallucue_mlx.views import GridView, PlainProgress

    with GridView([("train", 4), ("eval", 10)], quiet=False) as view:  # stderr is not a tty
        assert view.plain is not None
        for step in range(1, 5):
            view.show(f"GRPO under none: step {step}/4", step / 4)
        view.finish_task("[green]done[/green] train none (4 steps)")
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("[grid 0:00:00] GRPO under none: step 1/4")
    assert len(err) == 2 and "done train none (4 steps)" in err[1]  # throttled, no markup
    p = PlainProgress("x", every=0)
    p.show("a: 1")
    p.show("a: 2")
    assert len(capsys.readouterr().err.splitlines()) == 2


def test_the_terminal_summary_uses_the_report_labels(tmp_path, capsys):
    from hallucue_mlx.views import print_grid_summary

    res = {
        "models": ["base", "none"],
        "eval_conditions": ["none"],
        "labels": {"base": "base", "none": "GRPO†"},
        "label_note": "† a note",
        "cells": [
            {"train": m, "benchmark": "synth", "eval": "none", "split": "test", "accuracy": 0.5}
            for m in ("base", "none")
        ],
        "timing": {"total_s": 3.0},
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(res))
    print_grid_summary(path)
    out = capsys.readouterr().out
    assert "GRPO†" in out and "† a note" in out


# ---------------------------------------------------------------- --report-to


def test_report_targets_are_checked_before_anything_runs(monkeypatch):
    from hallucue_mlx import trackers

    assert trackers.report_targets(None) == () and trackers.report_targets("none") == ()
    with pytest.raises(ConfigError, match="choose from tensorboard, wandb"):
        trackers.report_targets("comet")
    monkeypatch.setattr(trackers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install -e \".\[tensorboard\]\""):
        trackers.report_targets("tensorboard")


def test_metrics_take_trl_names():
    from hallucue_mlx.trackers import metric_items

    assert metric_items({"step": 3, "reward": 0.5, "kl": 0.01, "warning": "x"}) == {
        "train/reward": 0.5,
        "train/kl": 0.01,
    }
    assert metric_items({"step": 4, "event": "eval", "eval/none/accuracy": 0.7}) == {
        "eval/none/accuracy": 0.7
    }
    assert metric_items({"step": 1, "event": "corruption_unchanged", "n": 3}) == {}


class _Writer:
    def __init__(self, logdir: str) -> None:
        self.logdir, self.scalars, self.closed = logdir, [], False

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


class _WandbRun:
    def __init__(self, **kw):
        self.kw, self.logged, self.finished = kw, [], False

    def log(self, data, step):
        self.logged.append((step, data))

    def finish(self):
        self.finished = True


def test_a_mirror_copies_new_lines_to_tensorboard_and_wandb(tmp_path, monkeypatch):
    from hallucue_mlx.trackers import Mirror, mirror_run

    writers: list[_Writer] = []
    runs: list[_WandbRun] = []
    monkeypatch.setitem(
        sys.modules,
        "tensorboardX",
        types.SimpleNamespace(
            SummaryWriter=lambda logdir: writers.append(_Writer(logdir)) or writers[-1]
        ),
    )
    monkeypatch.setitem(
        sys.modules,
        "wandb",
        types.SimpleNamespace(init=lambda **kw: runs.append(_WandbRun(**kw)) or runs[-1]),
    )
    folder = tmp_path / "train" / "blank"
    folder.mkdir(parents=True)
    metrics = folder / "metrics.jsonl"
    metrics.write_text(json.dumps({"step": 1, "reward": 0.1}) + "\n")
    # a resumed training: lines already there were mirrored by the earlier session
    m = Mirror(folder, ("tensorboard", "wandb"))
    with metrics.open("a") as f:
        f.write(json.dumps({"step": 2, "reward": 0.2}) + "\n")
        f.write(json.dumps({"step": 2, "event": "eval", "eval/none/accuracy": 0.5}) + "\n")
    m.sync()
    m.sync()  # nothing twice
    m.close()
    assert writers[0].scalars == [("train/reward", 0.2, 2), ("eval/none/accuracy", 0.5, 2)]
    assert writers[0].logdir == str(folder / "tensorboard") and writers[0].closed
    assert runs[0].logged == [(2, {"train/reward": 0.2}), (2, {"eval/none/accuracy": 0.5})]
    assert runs[0].kw["id"] == (folder / "wandb_id.txt").read_text().strip() and runs[0].finished
    # a grid: a training that starts while mirroring is mirrored from its first line
    writers.clear()
    with mirror_run(tmp_path / "run", ("tensorboard",), every=3600):
        new = tmp_path / "run" / "train" / "none"
        new.mkdir(parents=True)
        (new / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 0.0}) + "\n")
    assert writers[0].scalars == [("train/loss", 0.0, 1)]


# ---------------------------------------------------------------- labs


def test_lab_times_come_from_one_source():
    expected = json.loads((ROOT / "labs" / "expected.json").read_text())
    readme = (ROOT / "README.md").read_text()
    labs_readme = (ROOT / "labs" / "README.md").read_text()
    for lab, stem in (("lab1", "lab1_"), ("lab2", "lab2_"), ("lab3", "lab3_")):
        time = expected[lab]["time"]
        for text in (readme, labs_readme):
            row = next(ln for ln in text.splitlines() if ln.startswith("|") and stem in ln)
            assert row.rstrip(" |").endswith(time), (lab, row)
        nb = next((ROOT / "labs").glob(f"{stem}*.ipynb")).read_text()
        assert f"compute {time}" in nb.lower().replace('compute "\n', "compute ") or time in nb


def test_labs_have_a_visible_small_switch():
    # labs 1-3 (the embedded model); lab 4 is already a scaled-down real-model run on a Mac
    for path in sorted((ROOT / "labs").glob("lab[123]_*.ipynb")):
        nb = json.loads(path.read_text())
        code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
        assert "SMALL = False" in code[0], path.name


def test_readme_installs_from_a_clone_and_puts_the_cost_first():
    readme = (ROOT / "README.md").read_text()
    assert "pip install hallucue-mlx" not in readme
    quick = readme[readme.index("## Quick start") : readme.index("## What the default")]
    assert "git clone" in quick and "run --quick" in quick and "minutes" in quick
    mac = readme[readme.index("## Real models on a Mac") :]
    assert (
        mac.index("pip install -e .")
        < mac.index("hallucue-mlx plan")
        < mac.index("hallucue-mlx run")
    )
    assert len(readme.splitlines()) < 350


def test_the_configs_are_valid_yaml_run_configs():
    for p in (ROOT / "configs").glob("*.yaml"):
        assert isinstance(yaml.safe_load(p.read_text()), dict)


@pytest.mark.slow
def test_every_command_with_settings_takes_config_in_the_same_forms():
    for command in ("run", "sweep", "train", "eval", "plan", "doctor", "export"):
        args = [command, "--config", "no-such-config"]
        if command == "sweep":
            args.insert(1, "train.beta=0,0.1")
        if command == "export":
            args = ["export", "easyr1", "--out", "x", "--config", "no-such-config"]
        res = _cli(*args)
        assert res.exit_code == 2, (command, res.output)
        assert "shipped config by its bare name" in " ".join(res.output.split()), command
