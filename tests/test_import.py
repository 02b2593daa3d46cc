"""`hallucue-mlx import`: a checkpoint in Hugging Face layout is converted by mlx-vlm, evaluated
into a finished quick run's corruption matrix, and kept as a row by results.json, the report and
a resumed run; rerunning does no work; an MLX folder is used as is; every refusal names its fix.

The Hugging Face checkpoint is the shared tiny Qwen2.5-VL with mlx-vlm's conversion undone (the
key names and the patch embedding's layout Qwen's own releases use), so the imported model has
the base model's weights and must answer every item exactly as base does."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import mlx.core as mx  # noqa: E402

from hallucue_mlx.cli import app  # noqa: E402
from hallucue_mlx.config import ConfigError, load_config  # noqa: E402
from hallucue_mlx.grid import run_grid  # noqa: E402
from hallucue_mlx.importer import MLX, convert_checkpoint, import_checkpoint  # noqa: E402
from hallucue_mlx.models.hf_layout import to_hf_layout  # noqa: E402
from hallucue_mlx.models.load import ModelLoadError, load_model  # noqa: E402
from hallucue_mlx.runfolder import GridError  # noqa: E402

NAME = "GRPO-BI-7B"
CONDS = ["none", "blank"]
TARGETS = ["synth-test", "synth-train"]


# Every test here shares a converted-and-evaluated run (about 10 s to build): the slow lane.
pytestmark = pytest.mark.slow


def _cfg(tiny_dir: Path):
    return load_config(
        None,
        [
            f"model.id={tiny_dir}",
            "grid.train_conditions=[blank]",
            f"grid.eval_conditions=[{', '.join(CONDS)}]",
            "train.steps=1",
            "train.max_completion_length=6",
            "eval.max_tokens=6",
        ],
    )


def _records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def run(tiny_dir, tmp_path_factory):
    """A finished quick run (base and GRPO-BI), then the Hugging Face checkpoint imported:
    (run folder, checkpoint, ImportResult)."""
    root = tmp_path_factory.mktemp("import")
    out = root / "run"
    run_grid(_cfg(tiny_dir), out, quick=True, quiet=True, report=False)
    hf = to_hf_layout(tiny_dir, root / "hf")
    return out, hf, import_checkpoint(out, hf, NAME, quiet=True)


def test_import_converts_evaluates_and_adds_the_row(tiny_dir, run):
    out, hf, result = run
    assert result.converted and result.evaluated == TARGETS
    # the fixture is in Hugging Face layout: PyTorch names, channels-first patch embedding
    given = {k: v for f in hf.glob("*.safetensors") for k, v in mx.load(str(f)).items()}
    assert given and all(k.startswith(("model.", "visual.")) for k in given)
    assert given["visual.patch_embed.proj.weight"].shape[1] == 3
    # converted by mlx-vlm into the run folder: MLX names and layout
    model_dir = out / "imported" / NAME / "model"
    assert result.model_dir == model_dir
    converted = {k: v for f in model_dir.glob("*.safetensors") for k, v in mx.load(str(f)).items()}
    assert any(k.startswith("language_model.model.layers.") for k in converted)
    assert not any(k.startswith(("model.", "visual.")) for k in converted)
    # and exactly the weights the fixture was made from (every name, layout and value)
    original = mx.load(str(tiny_dir / "model.safetensors"))
    assert converted.keys() == original.keys()
    assert all(mx.array_equal(converted[k], original[k]).item() for k in original)
    # evaluated on the run's items under every condition: base's weights, base's answers
    # (for a tiny random model, often the same token over and over: the weights check above is
    # the strong one)
    for target in TARGETS:
        mine = _records(out / "eval" / NAME / target / "records.jsonl")
        base = _records(out / "eval" / "base" / target / "records.jsonl")
        assert {r["corruption"] for r in mine} == set(CONDS) and len(mine) == len(base)
        key = lambda r: (r["id"], r["corruption"])  # noqa: E731
        assert sorted((key(r), r["response"]) for r in mine) == sorted(
            (key(r), r["response"]) for r in base
        )
    res = json.loads((out / "results.json").read_text())
    assert res["models"] == ["base", "blank", NAME] and res["train_conditions"] == ["blank"]
    assert res["imported"][NAME]["format"] == "huggingface" and res["imported"][NAME]["done"]
    rows = [c for c in res["cells"] if c["train"] == NAME]
    assert {(c["eval"], c["split"]) for c in rows} == {
        (e, s) for e in CONDS for s in ("test", "train")
    }
    for c in rows:
        twin = next(
            b
            for b in res["cells"]
            if b["train"] == "base" and (b["eval"], b["split"]) == (c["eval"], c["split"])
        )
        assert c["n"] == twin["n"] and c["accuracy"] == twin["accuracy"]
    report = (out / "report.md").read_text()
    table1 = report.split("## Table 1")[1].split("## ")[0]
    matrix = report.split("## Train × eval corruption matrix")[1].split("## ")[0]
    assert f"| {NAME} | " in table1 and f"| synth | {NAME} | " in matrix
    assert f"GRPO-{NAME}" not in report
    assert f"{NAME},{NAME},synth" in (out / "tables" / "table1.csv").read_text()
    assert (out / "figures" / "matrix.png").is_file()


def test_rerunning_the_import_does_no_work(run):
    out, hf, _ = run
    files = [*(out / "eval" / NAME).glob("*/records.jsonl"), out / "imported" / NAME / "model"]
    stamps = [f.stat().st_mtime_ns for f in files]
    results = (out / "results.json").read_bytes()
    again = import_checkpoint(out, hf, NAME, quiet=True)
    assert not again.converted and again.evaluated == []
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert (out / "results.json").read_bytes() == results


def test_a_resumed_run_keeps_the_imported_row(tiny_dir, run):
    out, _, _ = run
    stamp = (out / "eval" / "blank" / "synth-test" / "records.jsonl").stat().st_mtime_ns
    path = run_grid(_cfg(tiny_dir), out, quick=True, quiet=True)
    assert (out / "eval" / "blank" / "synth-test" / "records.jsonl").stat().st_mtime_ns == stamp
    res = json.loads(path.read_text())
    assert NAME in res["models"] and len([c for c in res["cells"] if c["train"] == NAME]) == 4
    assert f"| {NAME} | " in (out / "report.md").read_text()


def test_an_mlx_folder_is_used_as_is(tiny_dir, run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run[0], out)
    result = import_checkpoint(out, tiny_dir, "tiny-mlx", quiet=True)
    assert not result.converted and result.model_dir == tiny_dir.resolve()
    assert not (out / "imported" / "tiny-mlx").exists()
    entry = json.loads((out / "imported.json").read_text())["models"]["tiny-mlx"]
    assert entry["format"] == MLX and entry["done"]
    res = json.loads((out / "results.json").read_text())
    assert res["models"][-2:] == [NAME, "tiny-mlx"]


def test_dtype_and_quantize_reach_mlx_vlm(run, tmp_path):
    hf = run[1]
    convert_checkpoint(hf, tmp_path / "q4", quantize=4)
    config = json.loads((tmp_path / "q4" / "config.json").read_text())
    assert config["quantization"] == {"group_size": 64, "bits": 4, "mode": "affine"}
    assert any(k.endswith(".scales") for k in mx.load(str(tmp_path / "q4" / "model.safetensors")))
    load_model(tmp_path / "q4")
    convert_checkpoint(hf, tmp_path / "bf16", dtype="bfloat16")
    weights = mx.load(str(tmp_path / "bf16" / "model.safetensors"))
    assert {v.dtype for v in weights.values()} == {mx.bfloat16}
    assert not (tmp_path / ".q4.converting").exists()


# ---------------------------------------------------------------- refusals, each naming the fix


def test_not_a_run_folder(run, tmp_path):
    hf = run[1]
    with pytest.raises(GridError, match="does not exist"):
        import_checkpoint(tmp_path / "nowhere", hf, "x", quiet=True)
    with pytest.raises(GridError, match="not a run folder.*hallucue-mlx run"):
        import_checkpoint(tmp_path, hf, "x", quiet=True)
    (tmp_path / "sweep.json").write_text("{}")
    with pytest.raises(GridError, match="sweep folder"):
        import_checkpoint(tmp_path, hf, "x", quiet=True)


@pytest.mark.parametrize("name", ["blank", "base", "GRPO-BI", "grpo", "text_removal"])
def test_a_name_of_the_run_is_refused(run, name):
    out, hf, _ = run
    with pytest.raises(GridError, match=f"--name '{name}' clashes with .*pick another name"):
        import_checkpoint(out, hf, name, quiet=True)


def test_bad_names_and_options(run):
    out, hf, _ = run
    with pytest.raises(GridError, match="letters, digits"):
        import_checkpoint(out, hf, "../x", quiet=True)
    with pytest.raises(ConfigError, match="--quantize 7 is not one of 2, 3, 4"):
        import_checkpoint(out, hf, "x", quantize=7, quiet=True)
    # the same name with other options: refused, not mixed with the first import's results
    with pytest.raises(GridError, match=f"'{NAME}' is already imported.*template"):
        import_checkpoint(out, hf, NAME, template="easyr1", quiet=True)


def test_bad_checkpoints(run, tmp_path):
    out, hf, _ = run
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        import_checkpoint(out, bare, "x", quiet=True)
    shutil.copy(hf / "config.json", bare / "config.json")
    with pytest.raises(ModelLoadError, match=r"no \*\.safetensors"):
        import_checkpoint(out, bare, "x", quiet=True)
    (tmp_path / "model_world_size_2_rank_0.pt").write_bytes(b"x")  # EasyR1's actor/ folder
    with pytest.raises(ModelLoadError, match="merge the shards.*model_merger"):
        import_checkpoint(out, bare, "x", quiet=True)
    part = tmp_path / "part"
    shutil.copytree(hf, part)
    (part / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="lacks 1 weight shard"):
        import_checkpoint(out, part, "x", quiet=True)
    other = tmp_path / "other"
    shutil.copytree(hf, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "llava_next"}))
    with pytest.raises(ModelLoadError, match="'llava_next' is not supported.*Qwen2.5-VL"):
        import_checkpoint(out, other, "x", quiet=True)


def test_weights_mlx_vlm_cannot_map_are_refused_and_leave_no_model(tiny_dir, run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run[0], out)
    newer = to_hf_layout(tiny_dir, tmp_path / "newer", newer_names=True)
    with pytest.raises(ModelLoadError, match="could not convert.*newer module names.*re-save it"):
        import_checkpoint(out, newer, "newer", quiet=True)
    assert not (out / "imported" / "newer" / "model").exists()
    # the name is free again for the fixed checkpoint, under other options
    import_checkpoint(out, run[1], "newer", template="easyr1", quiet=True, report=False)


def test_the_command_line(run, tmp_path):
    out, hf, _ = run
    runner = CliRunner()
    args = ["import", "--model", str(hf), "--into", str(out)]
    done = runner.invoke(app, [*args, "--name", NAME])
    assert done.exit_code == 0, done.output
    assert "nothing to do" in done.output
    refused = runner.invoke(app, [*args, "--name", "blank"])
    assert refused.exit_code == 1 and "error: --name 'blank' clashes" in refused.output
    bad = runner.invoke(app, [*args, "--name", "x", "--dtype", "int8"])
    assert bad.exit_code == 2 and "float16, bfloat16, float32" in bad.output
