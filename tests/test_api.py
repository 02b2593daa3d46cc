"""The Python API as a notebook uses it, on the embedded hallucue-tiny and a few synth items:
settings (a mapping of overrides takes the --set path), a quick grid and its report, items and
corruptions, evaluation under two conditions, one training and a model that generates; and the
package: its API names load lazily (no MLX on import) and are the api module's functions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hallucue_mlx as hm
from hallucue_mlx import api
from hallucue_mlx.cli import app
from hallucue_mlx.config import ConfigError
from hallucue_mlx.config import load_config as config_load_config
from hallucue_mlx.runfolder import GridError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_EVAL = {"max_tokens": 8}


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )


# ---------------------------------------------------------------- the package


def test_import_loads_no_mlx_and_names_come_from_api():
    # a fresh interpreter: importing the package (its names listed, its version read) loads no
    # MLX; the first API name loads the api, and a submodule imported first does not hide the
    # function of the same name
    done = _python(
        "import sys, hallucue_mlx\n"
        "assert 'mlx.core' not in sys.modules\n"
        "assert 'run' in dir(hallucue_mlx) and hallucue_mlx.__version__\n"
        "assert 'mlx.core' not in sys.modules and 'hallucue_mlx.api' not in sys.modules\n"
        "import hallucue_mlx.train\n"
        "from hallucue_mlx.train import TrainResult\n"
        "assert hallucue_mlx.run is hallucue_mlx.api.run\n"
        "assert hallucue_mlx.train is hallucue_mlx.api.train\n"
        "assert hallucue_mlx.report is hallucue_mlx.api.report\n"
        "assert TrainResult is hallucue_mlx.TrainResult\n"
    )
    assert done.returncode == 0, done.stderr


def test_package_names_are_the_api():
    names = set(hm.__all__) - {"__version__"}
    assert names == set(api.__all__)
    assert all(getattr(hm, n) is getattr(api, n) for n in names)
    assert {"run", "train", "evaluate", "corrupt", "report"} <= names
    assert not any(callable(getattr(api, n)) and not getattr(api, n).__doc__ for n in names)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hm.nope  # noqa: B018


# ---------------------------------------------------------------- settings


def test_mapping_overrides_take_the_set_path():
    mapping = {
        "train.steps": 20,
        "grid.eval_conditions": ("none", "blank"),
        "model.adapter": None,
        "grid.include_base": False,
        "output.dir": Path("runs") / "mine",
    }
    strings = [
        "train.steps=20",
        "grid.eval_conditions=[none, blank]",
        "model.adapter=null",
        "grid.include_base=false",
        "output.dir=runs/mine",
    ]
    cfg = hm.load_config(None, mapping)
    assert cfg == hm.load_config(None, strings) == config_load_config(None, strings)
    assert cfg.train.steps == 20 and cfg.grid.eval_conditions == ["none", "blank"]
    assert cfg != hm.load_config()
    # a text value stays text (as YAML, 2024 would be a number)
    assert hm.load_config(overrides={"output.dir": "2024"}).output.dir == "2024"
    # a RunConfig takes overrides too, and is not changed by them
    assert hm.load_config(cfg, {"train.steps": 5}).train.steps == 5 and cfg.train.steps == 20


@pytest.mark.parametrize(
    "mapping, setting",
    [({"train.stepz": 3}, "train.stepz=3"), ({"train.steps": -1}, "train.steps=-1")],
)
def test_a_bad_override_gives_the_set_error(mapping, setting):
    with pytest.raises(ConfigError) as from_mapping:
        hm.load_config(None, mapping)
    with pytest.raises(ConfigError) as from_strings:
        hm.load_config(None, [setting])
    assert str(from_mapping.value) == str(from_strings.value)
    assert f"--set {setting}" in str(from_mapping.value)
    cli = CliRunner().invoke(app, ["run", "--set", setting, "--print-config"])
    assert cli.exit_code == 2 and str(from_mapping.value) in " ".join(cli.output.split())


def test_an_override_that_is_no_config_value_is_refused():
    with pytest.raises(ConfigError, match="train.steps: .* is not a value a config holds"):
        hm.load_config(overrides={"train.steps": object()})


# ---------------------------------------------------------------- the grid and its report


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> Path:
    """An evaluation-only quick grid of the embedded model: base under none and blank."""
    out = tmp_path_factory.mktemp("api") / "run"
    overrides = {
        "grid.train_conditions": [],
        "grid.eval_conditions": ["none", "blank"],
        "data.train_slice_n": 2,
        "eval.max_tokens": 8,
    }
    folder = hm.run(overrides=overrides, out=out, quick=True, quiet=True)
    assert folder == out
    return folder


@pytest.mark.slow
def test_run_writes_results_and_report(quick_run):
    res = json.loads((quick_run / "results.json").read_text())
    cells = {(c["train"], c["eval"], c["split"]) for c in res["cells"]}
    assert cells == {("base", e, s) for e in ("none", "blank") for s in ("test", "train")}
    assert (quick_run / "report.md").read_text().startswith("#")


@pytest.mark.slow
def test_run_refuses_other_settings_in_the_same_folder(quick_run):
    with pytest.raises(GridError):
        hm.run(overrides={"grid.train_conditions": [], "seed": 1}, out=quick_run, quick=True)


@pytest.mark.slow
def test_report_rebuilds_report_md(quick_run):
    path = quick_run / "report.md"
    before = path.read_bytes()
    path.unlink()
    assert hm.report(quick_run) == path
    assert path.read_bytes() == before


# ---------------------------------------------------------------- items and corruptions


def test_load_benchmark_and_corrupt():
    items = hm.load_benchmark("synth", "test", n=4)
    assert len(items) == 4 and {it.split for it in items} == {"test"}
    item = items[0]
    shown, record = hm.corrupt(item, "blank")
    assert record.changed and shown.image.size == item.image.size
    assert shown.image.getextrema() == ((255, 255),) * 3 != item.image.convert("RGB").getextrema()
    assert shown.question == item.question
    # random takes another item's image from the donors; with none there is no other image
    other, rec = hm.corrupt(item, "random", donors=items)
    assert rec.changed and rec.detail.startswith("image of ") and item.id not in rec.detail
    assert not hm.corrupt(item, "random")[1].changed
    with pytest.raises(ValueError, match="unknown corruption"):
        hm.corrupt(item, "blur")


def test_gallery_of_items(tmp_path):
    items = hm.load_benchmark(n=2)
    path = hm.gallery(items, tmp_path / "g.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- evaluation, training, models


def test_evaluate_four_items_under_two_conditions(tmp_path):
    res = hm.evaluate(
        n=4, conditions=["none", "blank"], config=TINY_EVAL, out=tmp_path / "eval", quiet=True
    )
    assert list(res.by_condition) == ["none", "blank"]
    for s in res.by_condition.values():
        assert s["n"] == 4 and 0 <= s["accuracy"] <= 1
        assert s["ci95"][0] <= s["accuracy"] <= s["ci95"][1]
    assert len(res.records) == 8 and {r["corruption"] for r in res.records} == {"none", "blank"}
    assert res.summary["meta"]["config"]["template"] == "short-decline"  # hallucue-tiny's prompt
    assert (tmp_path / "eval" / "summary.json").is_file()


def test_evaluate_refuses_a_bad_setting_before_loading():
    with pytest.raises(ConfigError, match="eval.conditions"):
        hm.evaluate(conditions=["none", "blur"])
    with pytest.raises(ConfigError, match="eval.max_tokenz"):
        hm.evaluate(config={"max_tokenz": 8})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "train"
    overrides = {"train.steps": 1, "train.max_completion_length": 8}
    result = hm.train(None, "blank", out, overrides=overrides, quick=True, quiet=True)
    return out, overrides, result


@pytest.mark.slow
def test_train_one_condition(trained):
    out, overrides, result = trained
    assert result.steps_done == 1 and not result.interrupted
    assert result.adapter_dir == out / "adapter"
    assert (result.adapter_dir / "adapters.safetensors").is_file()
    assert result.last_metrics["corrupted_fraction"] == 1.0  # trained on blank images
    # called again, it continues the finished training (no step left); without resume, refused
    again = hm.train(None, "blank", out, overrides=overrides, quick=True, quiet=True)
    assert again.steps_done == 1
    with pytest.raises(GridError, match="already holds a training"):
        hm.train(None, "blank", out, overrides=overrides, quick=True, resume=False, quiet=True)


@pytest.mark.slow
def test_load_model_generates(trained):
    from hallucue_mlx.forward import encode_prompt
    from hallucue_mlx.rollout import generate

    item = hm.load_benchmark(n=1)[0]
    for adapter in (None, trained[2].adapter_dir):
        model, processor = hm.load_model(adapter=adapter)
        prompt = encode_prompt(processor, model, item, template="short")
        completion = generate(model, processor, [prompt], max_tokens=8)[0][0]
        assert completion.ids and completion.text.strip()


def test_evaluate_takes_an_eval_config():
    cfg = replace(hm.EvalConfig(template="short", max_tokens=8), conditions=("text_removal",))
    res = hm.evaluate(n=2, config=cfg, quiet=True)
    assert list(res.by_condition) == ["text_removal"] and len(res.records) == 2


@pytest.mark.slow
def test_run_on_two_processes_shows_their_output_and_gives_one_process_results(tmp_path, capsys):
    """A notebook's `run` on a 2-core CPU: two processes, whose progress reaches the notebook's
    own stdout, and whose results equal one process's."""
    overrides = {
        "grid.train_conditions": ["none", "blank"],
        "grid.eval_conditions": ["none", "blank"],
        "grid.include_base": False,
    }
    one = hm.run(
        overrides={**overrides, "grid.processes": 1}, out=tmp_path / "one", quick=True, quiet=True
    )
    capsys.readouterr()
    two = hm.run(overrides={**overrides, "grid.processes": 2}, out=tmp_path / "two", quick=True)
    shown = capsys.readouterr().out
    assert "GRPO under none" in shown and "GRPO under blank" not in shown  # process 0's view
    assert "results:" in shown  # process 0's summary, after process 1's models came in
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (one, two))
    ra.pop("timing"), rb.pop("timing")
    assert ra == rb


@pytest.mark.slow
def test_a_config_sweep_runs_on_two_processes_and_force_starts_it_over(tmp_path, capsys):
    """Lab 3's call, `run(config="ratio-sweep")`, on a 2-core CPU: two processes share each
    ratio's grid; the sweep report is written, and force=True clears the sweep before its
    processes start (the value folders computed again)."""
    overrides = {
        "grid.ratios": [0.5, 1.0],
        "grid.train_conditions": ["none", "blank"],
        "grid.eval_conditions": ["none"],
        "grid.processes": 2,
    }
    out = tmp_path / "sweep"
    folder = hm.run(config="ratio-sweep", overrides=overrides, out=out, quick=True)
    shown = capsys.readouterr().out
    assert "sweep report:" in shown
    sweep = json.loads((folder / "sweep.json").read_text())
    assert sweep["finished"] and (folder / "report.html").is_file()

    def trained() -> dict[str, int]:  # a finished training is skipped, not rewritten, on resume
        return {
            v: (folder / v / "train/blank/metrics.jsonl").stat().st_mtime_ns for v in sweep["runs"]
        }

    first = trained()
    assert hm.run(config="ratio-sweep", overrides=overrides, out=out, quick=True) == folder
    assert trained() == first  # continued: nothing computed again
    again = hm.run(config="ratio-sweep", overrides=overrides, out=out, quick=True, force=True)
    assert again == folder
    later = trained()
    assert all(later[v] > first[v] for v in first)
