"""Hostile inputs fail fast with a one-line message naming the item, key or file: every bounded
thing is bounded. The matrix, by class (instances per class in the parametrisations):

- settings that break training (non-finite floats, out-of-range values, empty names and paths)
- report records whose fields have the wrong type; doctor --reps 0
- grading that never ends (responses and golds): a killable worker with a hard limit
- YAML aliases and oversized configs; special files given as images; decompression bombs;
  prompts longer than the model's context
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image
from reliability_helpers import picture

from hallucue_mlx import rewards
from hallucue_mlx.config import ConfigError, load_config, load_yaml
from hallucue_mlx.data.common import BenchmarkError, RowContext, read_image
from hallucue_mlx.data.item import Item
from hallucue_mlx.report.load import load_run

LIMIT_S = 0.5  # the grader's limit in these tests: short, the hostile cases run to it


def bounded(fn, seconds: float = 20.0):
    """fn() in a thread; fail (instead of hanging the suite) when it does not end in time."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the test
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s: not bounded"
    return box


# ---------------------------------------------------------------- case 7: settings


BAD_SETTINGS = [
    ("train.min_lr_ratio=-0.5", "train.min_lr_ratio", "in [0, 1]"),
    ("train.min_lr_ratio=1.5", "train.min_lr_ratio", "in [0, 1]"),
    ("train.temperature=.nan", "train.temperature", "finite"),
    ("train.temperature=.inf", "train.temperature", "finite"),
    ("train.beta=nan", "train.beta", "finite"),
    ("train.learning_rate=inf", "train.learning_rate", "finite"),
    ("train.accuracy_weight=-inf", "train.accuracy_weight", "finite"),
    ("eval.temperature=nan", "eval.temperature", "finite"),
    ("grid.ratio=nan", "grid.ratio", "finite"),
    ("train.epsilon=-0.1", "train.epsilon", ">= 0"),
    ("train.weight_decay=-0.01", "train.weight_decay", ">= 0"),
    ("train.top_p=0", "train.top_p", "(0, 1]"),
    ("train.lora_dropout=-0.2", "train.lora_dropout", "[0, 0.99]"),
    ("train.format_weight=-1", "train.format_weight", ">= 0"),
    ("train.importance_sampling_level=tokens", "train.importance_sampling_level", "sequence"),
    ("output.dir=''", "output.dir", "is empty"),
    ("output.dir='  '", "output.dir", "is empty"),
    ("model.id=''", "model.id", "is empty"),
    ("model.adapter=''", "model.adapter", "is empty"),
    ("data.train.path=''", "data.train.path", "is empty"),
    ("data.eval.0.path=''", "data.eval[0].path", "is empty"),
]


@pytest.mark.parametrize("setting,key,why", BAD_SETTINGS, ids=[s for s, _, _ in BAD_SETTINGS])
def test_settings_that_break_training_fail_validation(setting, key, why, said):
    with pytest.raises(ConfigError) as e:
        load_config(None, [setting])
    said("7", str(e.value), key, why)
    assert "\n" not in str(e.value)


def test_train_flags_refuse_non_finite_and_negative(said):
    from hallucue_mlx.config import TrainConfig, build

    for data, key in (
        ({"min_lr_ratio": -0.1}, "train.min_lr_ratio"),
        ({"beta": float("nan")}, "train.beta"),
        ({"temperature": "inf"}, "train.temperature"),
        ({"weight_decay": -1.0}, "train.weight_decay"),
    ):
        with pytest.raises(ConfigError) as e:
            build(TrainConfig, data, "train")
        said("7", str(e.value), key)


# ---------------------------------------------------------------- case 9: records, doctor


def _record(i: int, **over) -> dict:
    r = {"id": f"q{i}", "benchmark": "synth", "corruption": "none", "correct": True}
    r.update({"format_ok": True, "truncated": False, "sample": 0, "grader_error": None})
    r.update(over)
    return r


WRONG_TYPES = [
    ("correct", "false"),
    ("correct", 1),
    ("correct", None),
    ("format_ok", "true"),
    ("truncated", "no"),
    ("sample", "0"),
    ("sample", 1.5),
    ("corruption", 3),
    ("grader_error", 7),
    ("id", [1]),
]


@pytest.mark.parametrize("field,value", WRONG_TYPES, ids=[f"{f}={v!r}" for f, v in WRONG_TYPES])
def test_report_refuses_record_fields_of_the_wrong_type(tmp_path, field, value, said):
    cell = tmp_path / "eval" / "base" / "synth-test"
    cell.mkdir(parents=True)
    rows = [_record(0), _record(1, **{field: value}), _record(2)]
    (cell / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = load_run(tmp_path)
    ids = [r["id"] for r in run.records[("base", "synth", "test")]]
    assert ids == ["q0", "q2"], "the record with a wrongly typed field was used"
    problem = next(p for p in run.problems if "records.jsonl:2" in p)
    said("9", problem, "eval/base/synth-test/records.jsonl:2", repr(field), "expected")


@pytest.mark.parametrize("reps", ["0", "-3"])
def test_doctor_refuses_zero_reps(reps, said):
    from typer.testing import CliRunner

    from hallucue_mlx.cli import app

    result = CliRunner().invoke(app, ["doctor", "--reps", reps])
    assert result.exit_code == 2, result.output
    said("9", " ".join(result.output.split()), "--reps", "greater than or equal to 1")
    assert "GFLOPS" not in result.output


# ---------------------------------------------------------------- case 10: the grader's limit


def _item(answer: str, kind: str = "number", **over) -> Item:
    return Item(
        id=over.pop("id", "bomb-1"),
        benchmark="synth",
        split="test",
        question="?",
        answer=answer,
        image=None,
        answer_kind=kind,
        **over,
    )


HANGING_RESPONSES = [
    ("power tower, number item", "10^{10^{10^{10}}}", _item("5")),
    ("power tower, free item", "10^{10^{10^{10}}}", _item("x^2", "free")),
    ("factorial tower", "(10^{10^{10}})!", _item("5")),
    ("unit backtracking", "5 " + "a" * 40 + "!", _item("5")),
    ("choice by option text", "10^{10^{10^{10}}}", _item("A", "choice", choices=("1", "2"))),
]


@pytest.mark.parametrize(
    "response,item", [c[1:] for c in HANGING_RESPONSES], ids=[c[0] for c in HANGING_RESPONSES]
)
@pytest.mark.slow
def test_grading_is_killed_at_its_limit_and_counted(response, item, said):
    rewards.reset_grader_error_count()
    start = time.monotonic()
    box = bounded(lambda: rewards.grade(f"\\boxed{{{response}}}", item, timeout_s=LIMIT_S))
    g = box["value"]
    assert g.grader_error is not None and not g.correct
    said("10", g.grader_error, "timeout", f"{LIMIT_S:g} s")
    assert rewards.grader_error_count() == 1
    # nothing keeps grading in the background: this process's CPU time stays flat
    cpu = time.process_time()
    time.sleep(0.3)
    assert time.process_time() - cpu < 0.15
    # the worker is restarted: ordinary grading goes on, with the same results
    assert rewards.grade("\\boxed{x^2}", _item("x^{2}", "free"), timeout_s=30).correct
    assert rewards.grade("\\boxed{5}", _item("5")).correct
    assert time.monotonic() - start < 60


HANGING_GOLDS = [
    ("power tower gold", _item("10^{10^{10^{10}}}")),
    ("factorial gold", _item("(10^{10^{10}})!")),
    ("backtracking gold", _item("5 " + "a" * 40 + "!")),
]


@pytest.mark.parametrize("item", [c[1] for c in HANGING_GOLDS], ids=[c[0] for c in HANGING_GOLDS])
def test_gold_check_at_load_shares_the_limit_and_names_the_item(item, said):
    ok = _item("7", id="fine-1")
    box = bounded(lambda: rewards.check_golds([ok, item], "items.jsonl", timeout_s=LIMIT_S))
    err = box.get("error")
    assert isinstance(err, BenchmarkError), box
    said("10", str(err), "bomb-1", "items.jsonl", f"took over {LIMIT_S:g} s")


def test_ordinary_answers_take_the_fast_path_with_the_same_results():
    cases = [
        ("B", _item("B", "choice", choices=("1", "2", "3"))),
        ("(A)", _item("B", "choice", choices=("1", "2", "3"))),
        ("12.50", _item("12.5")),
        ("25%", _item("0.25")),
        ("3 cm", _item("3", unit="cm")),
        ("7", _item("5", "free")),
    ]
    for pred, item in cases:
        assert rewards._fast_is_correct(pred, item) == rewards.is_correct(pred, item)


@pytest.mark.slow
def test_ctrl_c_stops_a_hanging_grading(tmp_path):
    script = textwrap.dedent(
        """
        import signal
        import sys
        # Ctrl-C as a terminal delivers it: a job started in the background by a
        # non-interactive shell inherits SIGINT ignored, and Python then installs no handler
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from hallucue_mlx import rewards
        from hallucue_mlx.data.item import Item
        item = Item(id="x", benchmark="b", split="test", question="?", answer="5", image=None,
                    answer_kind="number")
        rewards.grade("\\\\boxed{x^2}", item.with_(answer="x^2", answer_kind="free"))
        print("grading", flush=True)
        rewards.grade("\\\\boxed{10^{10^{10^{10}}}}", item, timeout_s=600)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout.readline().strip() == b"grading"
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        proc.wait(60)  # generous: on a loaded 2-core CI machine start-up alone is slow
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            pytest.fail(
                "Ctrl-C did not stop a hanging grading within 60 s (the grading itself would run 600 s)"
            )
    assert b"KeyboardInterrupt" in proc.stderr.read()


# ---------------------------------------------------------------- case 11: YAML


LAUGHS = "\n".join(
    ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 7)]
)
HOSTILE_YAML = [
    ("billion laughs", LAUGHS, "anchor &a0"),
    ("alias of a value", "seed: &s 1\ntrain: {seed: *s}\n", "anchor &s"),
    ("alias of a section", "model: &m {id: hallucue-tiny}\nx: *m\n", "anchor &m"),
    ("merge key", "base: &b {steps: 2}\ntrain:\n  <<: *b\n", "anchor &b"),
    ("too large", "# " + "x" * 1_100_000 + "\nseed: 1\n", "bytes, over the"),
]


@pytest.mark.parametrize(
    "text,why", [c[1:] for c in HOSTILE_YAML], ids=[c[0] for c in HOSTILE_YAML]
)
def test_hostile_yaml_is_refused(tmp_path, text, why, said):
    p = tmp_path / "hostile.yaml"
    p.write_text(text)
    box = bounded(lambda: load_config(p), 10)
    err = box.get("error")
    assert isinstance(err, ConfigError), box
    said("11", str(err), str(p), why)


def test_plain_yaml_still_loads(tmp_path):
    p = tmp_path / "ok.yaml"
    p.write_text("seed: 3\ntrain: {steps: 2}\n")
    assert load_yaml(p) == {"seed": 3, "train": {"steps": 2}}


# ---------------------------------------------------------------- case 11: special files


def _ctx(base: Path | None = None) -> RowContext:
    return RowContext(benchmark="local", index=4, base_dir=base)


def _special_files(tmp_path: Path) -> list[tuple[str, object]]:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.png"
    folder.mkdir()
    link = tmp_path / "zero.png"
    link.symlink_to("/dev/zero")
    return [
        ("fifo", str(fifo)),
        ("fifo as dict path", {"path": str(fifo), "bytes": None}),
        ("directory", str(folder)),
        ("relative directory", "folder.png"),
        ("/dev/zero", "/dev/zero"),
        ("/dev/null", "/dev/null"),
        ("link to /dev/zero", str(link)),
    ]


def test_special_files_given_as_images_are_refused_before_opening(tmp_path, said):
    for name, value in _special_files(tmp_path):
        box = bounded(lambda v=value: read_image(v, _ctx(tmp_path), "q4", "image"), 10)
        err = box.get("error")
        assert isinstance(err, BenchmarkError), (name, box)
        said("11", str(err), "row 4 (id q4)", "not a regular file")


# ---------------------------------------------------------------- case 11: decompression bombs


def _png_header(w: int, h: int) -> bytes:
    """A PNG whose header declares w x h (no pixel data: Image.open reads only the header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_small_png_that_decodes_to_a_huge_image_is_refused(tmp_path, said):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (9000, 8000)).save(bomb)  # 72 million pixels in a few KB
    assert bomb.stat().st_size < 100_000
    values = [
        ("real bomb file", str(bomb)),
        ("real bomb bytes", bomb.read_bytes()),
        ("header 9000x9000", _png_header(9000, 9000)),
        ("header 20000x20000 as dict", {"bytes": _png_header(20000, 20000)}),
        ("header 1x100000000", _png_header(1, 100_000_000)),
    ]
    for name, value in values:
        box = bounded(lambda v=value: read_image(v, _ctx(), "q4", "image"), 10)
        err = box.get("error")
        assert isinstance(err, BenchmarkError), (name, box)
        said("11", str(err), "row 4 (id q4)", "over the limit", "Downscale it")


def test_the_pixel_limit_is_configurable(tmp_path, monkeypatch, said):
    img = picture((64, 48))
    assert read_image(img, _ctx(), "q1", "image") is img
    monkeypatch.setenv("HALLUCUE_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(BenchmarkError) as e:
        read_image(img, _ctx(), "q1", "image")
    said("11", str(e.value), "64x48 = 3072 pixels", "limit of 1000")
    monkeypatch.setenv("HALLUCUE_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(BenchmarkError, match="HALLUCUE_MAX_IMAGE_PIXELS"):
        read_image(img, _ctx(), "q1", "image")


# ---------------------------------------------------------------- case 11: prompt length


@pytest.mark.parametrize("limit,n", [(64, 64), (64, 500), (8, 9)])
def test_prompt_length_is_checked_against_the_context(limit, n, said):
    from hallucue_mlx.forward import check_prompt_length

    model = SimpleNamespace(config=SimpleNamespace(text_config={"max_position_embeddings": limit}))
    with pytest.raises(ValueError) as e:
        check_prompt_length(n, model, "long-1")
    said("11", str(e.value), "item long-1", f"{n} tokens", f"holds {limit}")
    check_prompt_length(limit - 1, model, "short-1")  # fits


def test_a_question_longer_than_the_context_is_refused_before_the_forward(tiny, monkeypatch, said):
    from hallucue_mlx.forward import encode_prompt

    model, processor = tiny
    text_config = getattr(model.config, "text_config", None) or model.config
    monkeypatch.setattr(text_config, "max_position_embeddings", 64)
    item = Item(
        id="long-q",
        benchmark="synth",
        split="test",
        question="How many sides? " * 200,
        answer="3",
        image=picture(),
    )
    with pytest.raises(ValueError) as e:
        encode_prompt(processor, model, item, template="short")
    said("11", str(e.value), "item long-q", "holds 64", "shorten the question")
