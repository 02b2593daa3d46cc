"""The third round of hostile probes, one test per class of defect (lost work, wrong results,
unbounded, tracebacks, security): state files opened without following links, --force walking its
own files, value folders one-to-one, numbers range-checked where settings are read, input files
checked for kind and size, prompts counted whole, report names shown as text, adapters with
non-finite weights refused. Each test failed before these rules were enforced."""

from __future__ import annotations

import base64
import errno
import json
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from reliability_helpers import picture, row, write_items
from typer.testing import CliRunner

from hallucue_mlx.cli import app
from hallucue_mlx.config import ConfigError, load_config, load_yaml

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/fake_run.py

from fake_run import make_fake_run  # noqa: E402


def _cli(args: list[str]):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def _one_error(r, code: int) -> str:
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert r.exit_code == code and len(lines) == 1 and "Traceback" not in r.output, r.output
    return lines[0]


@contextmanager
def _within(seconds: int):
    """Fail (instead of hanging the suite) when the block blocks, as a FIFO used to."""

    def stop(*_):
        raise TimeoutError(f"blocked for {seconds} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# ================================================================ lost work


def test_lost_work_state_files_and_force(tmp_path, said):
    from hallucue_mlx.runfolder import FolderBusy, GridError, folder_lock
    from hallucue_mlx.sweep import _check_folder

    # 1. a lock that is a link: refused, its target untouched
    target = tmp_path / "precious.txt"
    target.write_text("mine")
    busy = tmp_path / "linked"
    busy.mkdir()
    (busy / ".hallucue.lock").symlink_to(target)
    with pytest.raises(FolderBusy) as e, folder_lock(busy, "test"):
        pass
    said("lock that is a link", str(e.value), "symbolic link", "remove the link")
    assert target.read_text() == "mine"

    # 2. a lock that is a FIFO: refused at once, never blocks
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / ".hallucue.lock")
    with _within(10), pytest.raises(FolderBusy) as e, folder_lock(fifo, "test"):
        pass
    said("lock that is a FIFO", str(e.value), "FIFO", "not a regular file")

    # 3. sweep --force where sweep.json names '..' as a value folder: the parent stays
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "manifest.json").write_text(json.dumps({"config_hash": "x"}))
    (parent / "results.json").write_text("{}")
    sweep = parent / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text(json.dumps({"key": "train.beta", "runs": [".."]}))
    before = _tree(parent)
    new = {"key": "train.beta", "values": [0, 1], "config_hash": "y", "quick": False}
    with pytest.raises(GridError) as e:
        _check_folder(sweep, new, force=True)
    said("sweep.json naming '..'", str(e.value), "'..'", "not a folder name inside")
    assert _tree(parent) == before


def test_lost_work_export_force(tmp_path, said):
    from hallucue_mlx.export.easyr1 import ExportError, _prepare_out

    # export --force: only the export's own files go; a linked data/ is never followed
    out = tmp_path / "export"
    for rel, text in {
        "export.json": "{}",
        "data/train-none.parquet": "old",
        "data/mine.csv": "user data",
        "configs/none.yaml": "old",
        "configs/my-own.yaml": "user config",
    }.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    _prepare_out(out, True, lambda _msg: None)
    assert _tree(out) == {"data/mine.csv": b"user data", "configs/my-own.yaml": b"user config"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "train-none.parquet").write_text("not the export's")
    linked = tmp_path / "export2"
    linked.mkdir()
    (linked / "export.json").write_text("{}")
    (linked / "data").symlink_to(elsewhere)
    with pytest.raises(ExportError) as e:
        _prepare_out(linked, True, lambda _msg: None)
    said("export with a linked data/", str(e.value), "never follows a link")
    assert (elsewhere / "train-none.parquet").read_text() == "not the export's"


def test_lost_work_train_force_keeps_other_tools_folders(tmp_path):
    from hallucue_mlx.train import check_new_folder

    # train --force keeps a folder another tool wrote under checkpoints/
    t = tmp_path / "t"
    (t / "checkpoints" / "step_000001").mkdir(parents=True)
    (t / "checkpoints" / "step_000001" / "state.json").write_text("{}")
    (t / "checkpoints" / "latest").write_text("{}")
    (t / "checkpoints" / "epoch1").mkdir()
    (t / "checkpoints" / "epoch1" / "model.pt").write_text("another tool's")
    (t / "metrics.jsonl").write_text("{}\n")
    kept = check_new_folder(t, resume=False, force=True)
    assert kept == ["checkpoints/epoch1/"], kept
    assert (t / "checkpoints" / "epoch1" / "model.pt").read_text() == "another tool's"
    assert not (t / "checkpoints" / "step_000001").exists() and not (t / "metrics.jsonl").exists()


def test_run_into_a_sweep_folder_refuses_and_keeps_its_report(tmp_path, tiny_dir, said):
    from reliability_helpers import grid_yaml

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text(json.dumps({"key": "train.beta", "runs": []}))
    (sweep / "report.md").write_text("the sweep's report")
    before = _tree(sweep)
    cfg = grid_yaml(tmp_path / "c.yaml", tiny_dir)
    r = _cli(["run", "--config", cfg, "--out", sweep, "--quick"])
    said("run --out on a sweep folder", _one_error(r, 1), "is a sweep folder", "new --out")
    assert _tree(sweep) == before


# ================================================================ wrong results


def test_wrong_results_sweep_values(said):
    from hallucue_mlx.sweep import check_sweep, value_name

    # value folders are one-to-one: '/' and '_' (and every other pair below) never share one
    values = ["a/b", "a_b", "a b", "a%2Fb", "1", 1, 1.0, True, "true", None, "null", "x" * 300]
    names = [value_name("model.id", v) for v in values]
    assert len(set(names)) == len(names), names
    assert all("/" not in n and len(n) <= 120 for n in names)
    # equal numbers are one value
    with pytest.raises(ConfigError) as e:
        check_sweep("train.beta", [0, 0.0])
    said("sweep of 0 and 0.0", str(e.value), "lists a value twice", "0 and 0.0")

    # a learning rate that overflows every update is refused where settings are read
    with pytest.raises(ConfigError) as e:
        load_config(None, ["train.learning_rate=1e308"])
    said("learning_rate 1e308", str(e.value), "train.learning_rate must be at most 1")


def test_wrong_results_adapters_with_nan_or_absurd_weights(tmp_path, tiny_dir, said):
    import mlx.core as mx

    from hallucue_mlx.models.load import ModelLoadError, load_model
    from hallucue_mlx.models.lora import BadAdapterWeights, LoraConfig, apply_lora, save_adapter

    # an adapter whose weights are NaN or absurdly scaled is refused, naming a tensor
    model, _ = load_model(str(tiny_dir))
    apply_lora(model, LoraConfig(rank=2))
    good = tmp_path / "good"
    save_adapter(model, good)
    weights = mx.load(str(good / "adapters.safetensors"))
    for case, change in (("NaN", lambda v: v * float("nan")), ("x1e6", lambda v: v + 1e6)):
        bad = tmp_path / case
        bad.mkdir()
        (bad / "adapter_config.json").write_text((good / "adapter_config.json").read_text())
        mx.save_safetensors(
            str(bad / "adapters.safetensors"), {k: change(v) for k, v in weights.items()}
        )
        with pytest.raises(ModelLoadError) as e:
            load_model(str(tiny_dir), adapter=str(bad))
        said(f"adapter with {case} weights", str(e.value), "is not usable", "lora_")
    # and a model whose LoRA weights are not finite is never saved as an adapter
    name = next(k for k in weights if k.endswith("lora_a"))
    model.load_weights([(name, weights[name] * float("inf"))], strict=False)
    with pytest.raises(BadAdapterWeights):
        save_adapter(model, tmp_path / "never")
    assert not (tmp_path / "never").exists()


# ================================================================ unbounded


def test_unbounded_inputs_are_bounded(tmp_path, tiny, monkeypatch, said):
    from hallucue_mlx.data.bench import load_benchmark
    from hallucue_mlx.data.common import BenchmarkError
    from hallucue_mlx.data.item import Item
    from hallucue_mlx.forward import check_prompt_length, encode_prompt
    from hallucue_mlx.rollout import generate

    # the prompt check counts the prompt and the answer it may grow to
    model = SimpleNamespace(config=SimpleNamespace(text_config={"max_position_embeddings": 32768}))
    with pytest.raises(ValueError) as e:
        check_prompt_length(32761, model, "long-1", 64)
    said("prompt of 32761 tokens + 64", str(e.value), "32761 tokens", "64 answer tokens")
    check_prompt_length(32700, model, "fits", 64)
    m, processor = tiny
    item = Item(
        id="q", benchmark="synth", split="test", question="How many?", answer="3", image=None
    )
    prompt = encode_prompt(processor, m, item, template="short")
    text_config = getattr(m.config, "text_config", None) or m.config
    monkeypatch.setattr(text_config, "max_position_embeddings", prompt.length + 4)
    with pytest.raises(ValueError, match="item q: its prompt is"):
        generate(m, processor, [prompt], max_tokens=16)

    # images are bounded together, each checked from its header before it is decoded
    monkeypatch.setenv("HALLUCUE_MAX_TOTAL_PIXELS", "7000")
    rows = [row(i) for i in range(3)]
    data = write_items(tmp_path / "d", rows, {f"q{i}.png": picture() for i in range(3)})
    with pytest.raises(BenchmarkError) as e:
        load_benchmark("local", "test", path=str(data))
    said("images over the total", str(e.value), "9216 pixels", "HALLUCUE_MAX_TOTAL_PIXELS")


def test_unbounded_records_that_are_a_fifo_or_a_device(tmp_path, said):
    # a records file that is a FIFO or a device: one line, at once
    run = make_fake_run(tmp_path / "run", n_test={"synth": 10}, n_train=5, steps=2)
    recs = run / "eval" / "base" / "synth-test" / "records.jsonl"
    recs.unlink()
    os.mkfifo(recs)
    with _within(20):
        r = _cli(["report", run])
    said("records that are a FIFO", _one_error(r, 1), "records.jsonl", "FIFO")
    recs.unlink()
    recs.symlink_to("/dev/zero")
    with _within(20):
        r = _cli(["report", run])
    said("records linked to /dev/zero", _one_error(r, 1), "a device")


def test_unbounded_counts(tmp_path, said):
    # counts that size a run have an upper bound
    for key, value in (
        ("grid.seeds", 10**6),
        ("train.prompts_per_step", 10**6),
        ("data.eval.synth.n", 10**12),
    ):
        with pytest.raises(ConfigError) as e:
            load_config(None, [f"{key}={value}"])
        said(f"{key}={value}", str(e.value), "must be at most")
    r = _cli(["data", "prepare", "synth", "--n", 10**12, "--out", tmp_path / "p"])
    assert r.exit_code == 2 and "too many" in r.output, r.output


# ================================================================ tracebacks


@pytest.mark.parametrize(
    "key",
    [
        "train.steps",
        "train.max_completion_length",
        "eval.max_tokens",
        "eval.samples_per_item",
        "train.lora_rank",
        "train.num_generations",
        "train.lora_layers",
        "train.warmup_steps",
    ],
)
def test_huge_integers_are_refused_where_settings_are_read(key, said):
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"{key}={2**40}"])
    said(f"{key}=2**40", str(e.value), key, "at most")


def test_tracebacks_full_disk_in_mlx_writes(tmp_path, monkeypatch, said):
    from hallucue_mlx import atomic
    from hallucue_mlx.cli import os_error_message

    # a full disk seen by MLX ("[write] Unable to write") is an OSError naming the file
    def mlx_write(_p):
        raise RuntimeError("[write] Unable to write 4096 bytes to file.")

    monkeypatch.setattr(
        os, "statvfs", lambda _p: SimpleNamespace(f_bavail=0, f_frsize=4096), raising=True
    )
    with pytest.raises(OSError) as e:
        atomic.write_with(tmp_path / "adapters.safetensors", mlx_write)
    assert e.value.errno == errno.ENOSPC
    said("MLX write on a full disk", os_error_message(e.value), "adapters.safetensors", "is full")


def test_tracebacks_damaged_adapters_and_pointers(tmp_path, tiny_dir, said):
    from hallucue_mlx.models.load import ModelLoadError, load_model
    from hallucue_mlx.runfolder import GridError, latest_checkpoint

    # truncated and empty adapter files
    for case, data in (("empty", b""), ("truncated", b"\x40\x00\x00\x00\x00\x00\x00\x00{")):
        d = tmp_path / f"adapter-{case}"
        d.mkdir()
        (d / "adapters.safetensors").write_bytes(data)
        (d / "adapter_config.json").write_text("{}")
        with pytest.raises(ModelLoadError) as e:
            load_model(str(tiny_dir), adapter=str(d))
        said(f"{case} adapter file", str(e.value), "is damaged")

    # a torn checkpoint pointer, and one naming a folder outside checkpoints/
    t = tmp_path / "t"
    (t / "checkpoints").mkdir(parents=True)
    for text in ('{"checkpoint": "step_0', '{"checkpoint": "../..", "step": 2}'):
        (t / "checkpoints" / "latest").write_text(text)
        with pytest.raises(GridError) as e:
            latest_checkpoint(t)
        said("torn checkpoint pointer", str(e.value), "checkpoint pointer", "damaged")


def test_tracebacks_yaml_plan_and_lora_targets(tmp_path, said):
    # YAML types a config has not, and deep nesting
    for name, text in (
        ("date", "seed: 0\nwhen: 2024-01-01\n"),
        ("binary", "x: !!binary aGVsbG8=\n"),
        ("set", "x: !!set {a, b}\n"),
        ("deep", "x: " + "[" * 2000 + "]" * 2000 + "\n"),
    ):
        p = tmp_path / f"{name}.yaml"
        p.write_text(text)
        with pytest.raises(ConfigError) as e:
            load_yaml(p)
        said(f"YAML {name}", str(e.value), "is not allowed", "line")

    # lora_targets empty or unknown: refused with the settings, before any model loads
    for value, part in (("[]", "is empty"), ("[q_proj, qq_proj]", "'qq_proj' is not valid")):
        with pytest.raises(ConfigError) as e:
            load_config(None, [f"train.lora_targets={value}"])
        said(f"lora_targets={value}", str(e.value), "train.lora_targets", part)


@pytest.mark.slow  # plan measures this machine's speed first
def test_tracebacks_plan_on_damaged_model_folders(tmp_path, said):
    # plan on a list-shaped, damaged or sparse model folder
    for case, content in (
        ("list", b"[1, 2]"),
        ("damaged", b"\xff\xfe{"),
        ("sparse", json.dumps({"model_type": "qwen2_vl"}).encode()),
    ):
        d = tmp_path / f"model-{case}"
        d.mkdir()
        (d / "config.json").write_bytes(content)
        r = _cli(["plan", "--set", f"model.id={d}"])
        said(f"plan on a {case} model folder", _one_error(r, 2), "config.json")


@pytest.mark.slow
def test_tracebacks_report_on_damaged_files(tmp_path, said):
    # report on a damaged or non-UTF-8 sweep.json, manifest or records
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    for text in (b"\xff\xfe not utf-8", b'{"runs": "x"}', b"[]"):
        (sweep / "sweep.json").write_bytes(text)
        r = _cli(["report", sweep])
        said("report on a damaged sweep.json", _one_error(r, 1), "sweep.json")
    run = make_fake_run(tmp_path / "run", n_test={"synth": 10}, n_train=5, steps=2)
    (run / "manifest.json").write_bytes(b"\xff\xfe{")
    recs = run / "eval" / "base" / "synth-test" / "records.jsonl"
    recs.write_bytes(recs.read_bytes() + b'{"id": "\xff\xfe"}\n')
    r = _cli(["report", run])
    assert r.exit_code == 0, r.output
    report = (run / "report.md").read_text()
    assert "manifest.json" in report and "not UTF-8" in report
    assert "1 unreadable line(s) skipped" in report


# ================================================================ security


def test_names_in_a_report_are_text_never_links(tmp_path, said):
    from hallucue_mlx.report import write_html

    secret = tmp_path / "secret.txt"
    secret.write_text("the user's private file")
    link = f"[x]({secret})"
    image = f"![x]({secret})"
    run = make_fake_run(tmp_path / "run", n_test={"synth": 10}, n_train=5, steps=2)
    res = json.loads((run / "results.json").read_text())
    res["model"] = image
    (run / "results.json").write_text(json.dumps(res))
    (run / "imported.json").write_text(json.dumps({"models": {image: {"source": link}}}))
    recs = run / "eval" / "base" / "synth-test" / "records.jsonl"
    lines = recs.read_text().splitlines()
    odd = json.loads(lines[0])
    odd["corruption"] = image
    recs.write_text("\n".join([json.dumps(odd), *lines[1:]]) + "\n")
    inner = run / "inner.txt"  # a link to it would be inside the report's folder
    inner.write_text("a file in the run folder, never linked by a name")
    bench = run / "eval" / "base" / "![b](inner.txt)-test"
    bench.mkdir(parents=True, exist_ok=True)
    (bench / "records.jsonl").write_text(lines[1] + "\n")
    r = _cli(["report", run])
    assert r.exit_code == 0, r.output
    md = (run / "report.md").read_text()
    html = write_html(run / "report.md").read_text()
    for f in (secret, inner):
        assert base64.b64encode(f.read_bytes()).decode() not in html

    assert f'href="{secret}' not in html and f'src="{secret}' not in html
    # every occurrence of the names is inside a code span: no link or image is formed
    for bad in (f"]({secret})", "](inner.txt)"):
        for line in md.splitlines():
            at = line.find(bad)
            while at >= 0:
                assert line[:at].count("`") % 2 == 1, line  # inside a code span
                at = line.find(bad, at + 1)
    said("report names with links", md.splitlines()[0], "report: `")


@pytest.mark.slow
def test_an_update_that_overflows_the_weights_is_undone(tmp_path, tiny_dir, monkeypatch):
    """A finite gradient whose update makes the LoRA weights non-finite (a huge learning rate or
    scale): the update is undone and counted, and no adapter with NaN weights is ever saved."""
    import mlx.core as mx
    import mlx.optimizers as optim
    from mlx.utils import tree_map
    from reliability_helpers import train_tiny

    original = optim.AdamW.apply_gradients

    def overflowing(self, gradients, parameters):
        return tree_map(lambda x: x * float("inf"), original(self, gradients, parameters))

    monkeypatch.setattr(optim.AdamW, "apply_gradients", overflowing)
    out = tmp_path / "run"
    result = train_tiny(tiny_dir, out, steps=2, max_bad_steps=5)
    weights = mx.load(str(result.adapter_dir / "adapters.safetensors"))
    assert weights and all(bool(mx.all(mx.isfinite(v)).item()) for v in weights.values())
    assert all(float(mx.abs(v).max().item()) == 0 for k, v in weights.items() if "lora_b" in k)
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [ln.get("skipped_updates") for ln in lines if "step" in ln and "event" not in ln] == [
        1,
        1,
    ]


def test_tracebacks_import_of_damaged_model_folders(tmp_path, said):
    import mlx.core as mx

    from hallucue_mlx.importer import inspect_checkpoint
    from hallucue_mlx.models.load import ModelLoadError

    sparse = json.dumps({"model_type": "qwen2_vl"})
    for case, config, index in (
        ("list", "[1, 2]", None),
        ("damaged", b"\xff\xfe{", None),
        ("list-shaped index", sparse, "[1]"),
        ("index leaving the folder", sparse, '{"weight_map": {"a": "../x.safetensors"}}'),
    ):
        d = tmp_path / case.replace(" ", "-")
        d.mkdir()
        (d / "config.json").write_bytes(config if isinstance(config, bytes) else config.encode())
        mx.save_safetensors(str(d / "model.safetensors"), {"x": mx.zeros((2,))})
        if index is not None:
            (d / "model.safetensors.index.json").write_text(index)
        with pytest.raises(ModelLoadError) as e:
            inspect_checkpoint(d)
        said(f"import of a {case} model folder", str(e.value), str(d))
