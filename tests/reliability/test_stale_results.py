"""Never reuse a result whose inputs changed: fingerprints of content, not of paths.

An evaluation folder, a run folder and a training checkpoint each remember what made them (the
items' content, the model and adapter weights, the settings); continuing with other inputs is
refused with the changed inputs named. Adapters and config files are taken whole or not at all."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlx.core as mx
import pytest
from reliability_helpers import picture, row, train_tiny, write_items

from hallucue_mlx.config import ConfigError, EvalConfig, build, load_config, load_yaml
from hallucue_mlx.evaluate import evaluate_benchmark

EVAL = dict(conditions="none", max_tokens=2, batch_size=4, template="short")


def _data(root: Path, golds: tuple[str, ...] = ("3", "3")) -> Path:
    rows = [row(i, answer=g) for i, g in enumerate(golds)]
    return write_items(root, rows, {f"q{i}.png": picture() for i in range(len(golds))})


def _eval(model: Path, data: Path, out: Path, adapter: Path | None = None):
    cfg = build(EvalConfig, EVAL, "eval")
    return evaluate_benchmark(
        str(model),
        "local",
        cfg,
        adapter=str(adapter) if adapter else None,
        data=str(data),
        out_dir=out,
        progress=False,
    )


def _refused(fn) -> str:
    with pytest.raises(ValueError) as e:
        fn()
    return str(e.value)


def _adapter(model_dir: Path, out: Path, value: float) -> Path:
    """A LoRA adapter of the tiny model on every layer, its B matrices filled with `value`."""
    from hallucue_mlx.models.load import load_model
    from hallucue_mlx.models.lora import LoraConfig, apply_lora, lora_layers, save_adapter

    model, _ = load_model(str(model_dir))
    apply_lora(model, LoraConfig())
    for layer in lora_layers(model):
        layer.lora_b = mx.full(layer.lora_b.shape, value)
    return save_adapter(model, out)


def _rewrite_weights(model_dir: Path) -> None:
    """The same file name, tensor names and shapes, other values (a fine-tune saved in place)."""
    path = model_dir / "model.safetensors"
    weights = mx.load(str(path))
    name = sorted(k for k, v in weights.items() if v.dtype in (mx.float32, mx.bfloat16))[0]
    weights[name] = weights[name] + 1
    mx.save_safetensors(str(path), weights)


# ---------------------------------------------------------------- case 3: eval resumes


def test_eval_refuses_to_resume_when_a_gold_changed(tiny_dir, tmp_path, said):
    data, out = _data(tmp_path / "data"), tmp_path / "ev"
    _eval(tiny_dir, data, out)
    _data(tmp_path / "data", golds=("3", "4"))  # same ids, same questions: one gold changed
    msg = _refused(lambda: _eval(tiny_dir, data, out))
    said(
        "eval: golds changed",
        msg,
        str(out),
        "the items' content (questions, choices, golds or images) changed",
        "another --out",
    )


def test_eval_refuses_to_resume_when_an_image_changed(tiny_dir, tmp_path, said):
    data, out = _data(tmp_path / "data"), tmp_path / "ev"
    _eval(tiny_dir, data, out)
    picture((64, 49)).save(data / "images" / "q1.png")
    msg = _refused(lambda: _eval(tiny_dir, data, out))
    said(
        "eval: image changed",
        msg,
        "the items' content (questions, choices, golds or images) changed",
    )


def test_eval_refuses_to_resume_when_the_adapter_at_the_same_path_changed(tiny_dir, tmp_path, said):
    data, out, ad = _data(tmp_path / "data"), tmp_path / "ev", tmp_path / "adapter"
    _adapter(tiny_dir, ad, 0.0)
    _eval(tiny_dir, data, out, adapter=ad)
    _adapter(tiny_dir, ad, 0.01)  # retrained into the same folder: same shapes and sizes
    msg = _refused(lambda: _eval(tiny_dir, data, out, adapter=ad))
    said("eval: adapter changed", msg, "the adapter weights changed", str(out))


def test_eval_refuses_to_resume_when_the_model_weights_changed(tiny_dir, tmp_path, said):
    model = tmp_path / "model"
    shutil.copytree(tiny_dir, model)
    data, out = _data(tmp_path / "data"), tmp_path / "ev"
    _eval(model, data, out)
    _rewrite_weights(model)
    msg = _refused(lambda: _eval(model, data, out))
    said("eval: model weights changed", msg, "the model weights changed")


def test_eval_resumes_with_the_same_inputs_elsewhere(tiny_dir, tmp_path):
    """Content, not paths: a copy of the same model and data resumes the folder."""
    data, out = _data(tmp_path / "data"), tmp_path / "ev"
    _eval(tiny_dir, data, out)
    model = tmp_path / "model"
    shutil.copytree(tiny_dir, model)
    shutil.copytree(data, tmp_path / "data2")
    again = _eval(model, tmp_path / "data2", out)
    assert again.skipped == ["none"]


def test_eval_of_other_data_gets_its_own_default_folder(tiny_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from hallucue_mlx.cli import app

    monkeypatch.chdir(tmp_path)
    outs = []
    for name, golds in (("a", ("3", "3")), ("b", ("4", "4"))):
        d = _data(tmp_path / name / "set", golds)
        args = ["eval", "--model", str(tiny_dir), "-b", "local", "--data", str(d)]
        args += ["--corruption", "none", "--max-tokens", "2", "--template", "short"]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        outs.append({p.parent for p in (tmp_path / "runs" / "eval").rglob("records.jsonl")})
    assert len(outs[0]) == 1 and len(outs[1]) == 2, outs  # the second did not reuse the first


# ---------------------------------------------------------------- case 4: run keeps cells


def test_run_refuses_finished_cells_after_the_model_weights_changed(tiny_dir, tmp_path, said):
    from reliability_helpers import grid_yaml

    from hallucue_mlx.grid import GridError, GridInterrupted, run_grid

    model = tmp_path / "model"
    shutil.copytree(tiny_dir, model)
    cfg = load_config(grid_yaml(tmp_path / "run.yaml", model))
    out = tmp_path / "run"
    with pytest.raises(GridInterrupted):  # the manifest is written, then it stops
        run_grid(cfg, out, quiet=True, report=False, stop_after_tasks=0)
    with pytest.raises(GridInterrupted):  # same weights: resumable
        run_grid(cfg, out, quiet=True, report=False, stop_after_tasks=0)
    _rewrite_weights(model)
    with pytest.raises(GridError) as e:
        run_grid(cfg, out, quiet=True, report=False, stop_after_tasks=0)
    said("run: model weights changed", str(e.value), "model weights changed", "--force", "--out")


# ---------------------------------------------------------------- case 5: train --resume


def test_train_resume_with_new_settings_is_refused_naming_each(tiny_dir, tmp_path, said):
    out = tmp_path / "t"
    train_tiny(tiny_dir, out, steps=1)
    with pytest.raises(ValueError) as e:
        train_tiny(tiny_dir, out, resume=True, steps=2, corruption="blank", learning_rate=0.5)
    msg = said(
        "train --resume: settings changed",
        str(e.value),
        "corruption: 'none' -> 'blank'",
        "learning_rate:",
        "-> 0.5",
        "new --out",
    )
    assert "steps" not in msg.replace("only --steps", "")
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["learning_rate"] != 0.5  # refused before anything was written


def test_train_resume_may_extend_the_steps(tiny_dir, tmp_path):
    out = tmp_path / "t"
    train_tiny(tiny_dir, out, steps=1)
    assert train_tiny(tiny_dir, out, resume=True, steps=2).steps_done == 2


# ---------------------------------------------------------------- case 6: no-op corruption


def test_eval_warns_when_a_corruption_changed_no_item(tiny_dir, tmp_path, said):
    data = _data(tmp_path / "data", golds=("3",))  # one item: no other image to swap in
    cfg = build(EvalConfig, {**EVAL, "conditions": "none,random"}, "eval")
    with pytest.warns(UserWarning, match="changed none") as w:
        res = evaluate_benchmark(
            str(tiny_dir), "local", cfg, data=str(data), out_dir=tmp_path / "ev", progress=False
        )
    said("eval: corruption changed nothing", str(w[0].message), "'random' changed none of the 1")
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["random"]["corruption_changed_rate"] == 0.0
    assert "changed none" in summary["random"]["warning"]
    assert summary["meta"]["warnings"] == [summary["random"]["warning"]]
    assert "warning" not in summary["none"] and res.summary["random"]["warning"]


def test_training_warns_when_its_corruption_changed_no_item(tiny_dir, tmp_path, said):
    from hallucue_mlx.grid import _training_summary

    with pytest.warns(UserWarning, match="changed none") as w:
        train_tiny(tiny_dir, tmp_path / "t", n_items=1, corruption="random", steps=1)
    said("train: corruption changed nothing", str(w[0].message), "changed none of the 1")
    lines = [json.loads(x) for x in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    assert [d["event"] for d in lines if "event" in d] == ["warning"]
    assert _training_summary(tmp_path / "t")["warnings"] == [str(w[0].message)]


def test_a_corruption_that_changes_items_does_not_warn(tiny_dir, tmp_path, recwarn):
    train_tiny(tiny_dir, tmp_path / "t", n_items=2, corruption="random", steps=1)
    assert not [w for w in recwarn if "changed none" in str(w.message)]


# ---------------------------------------------------------------- case 8: adapters, configs


def test_adapter_whose_config_lists_fewer_layers_is_refused(tiny_dir, tmp_path, said):
    from hallucue_mlx.models.load import ModelLoadError, load_model
    from hallucue_mlx.models.lora import attach_adapter

    ad = _adapter(tiny_dir, tmp_path / "adapter", 0.01)
    cfg = json.loads((ad / "adapter_config.json").read_text())
    last = max(int(k.split(".layers.")[1].split(".")[0]) for k in cfg["lora_parameters"]["keys"])
    keys = [k for k in cfg["lora_parameters"]["keys"] if f".layers.{last}." in k]
    cfg["lora_parameters"]["keys"] = keys
    cfg["num_layers"] = cfg["hallucue_lora"]["num_layers"] = 1
    (ad / "adapter_config.json").write_text(json.dumps(cfg))
    n = len(mx.load(str(ad / "adapters.safetensors")))
    with pytest.raises(ModelLoadError) as e:
        load_model(str(tiny_dir), adapter=str(ad))
    said("adapter: fewer layers", str(e.value), f"{2 * len(keys)} of {n} tensors", "num_layers")
    model, _ = load_model(str(tiny_dir))
    with pytest.raises(ValueError) as e2:
        attach_adapter(model, ad)
    said("adapter: fewer layers (resume)", str(e2.value), f"only {2 * len(keys)} of them")


@pytest.mark.parametrize(
    "given", ["nowhere/default.yaml", "default.yaml", "./default", "configs/default.yaml"]
)
def test_missing_config_path_never_falls_back_to_a_shipped_one(tmp_path, monkeypatch, said, given):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        load_config(given)
    said("config path not found", str(e.value), f"config {given} not found", "bare name")


def test_shipped_config_by_bare_name_still_loads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config("default").seed == load_config(None).seed


@pytest.mark.parametrize(
    "text, line, part",
    [
        ("seed: 1\ntrain:\n  steps: 3\n  steps: 5\n", 4, "duplicate key 'steps'"),
        ("seed: 1\nseed: 2\n", 2, "duplicate key 'seed'"),
        ("base: &b {steps: 3}\ntrain: *b\n", 1, "anchor &b"),
        ("train:\n  <<: {steps: 3}\n  beta: 0.0\n", 2, "merge key <<"),
    ],
)
def test_yaml_shapes_that_lose_data_are_refused(tmp_path, said, text, line, part):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_yaml(p)
    said("yaml shape", str(e.value), str(p), f"line {line}", part, "not allowed")


def test_a_list_where_a_mapping_belongs_is_refused(tmp_path, said):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  - steps: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    said("yaml list for mapping", str(e.value), "train: expected a mapping")
