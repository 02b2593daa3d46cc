"""Adapters read tiny fixture copies built with the real column names and storage types;
subsets are seeded and stratified; prepared subsets load back offline; errors say what to do."""

from __future__ import annotations

from pathlib import Path

import bench_rows
import datasets
import pytest
from PIL import Image

from hallucue_mlx.data.bench import BENCHMARKS, BenchmarkError, load_benchmark
from hallucue_mlx.data.item import ANSWER_KINDS, VERSIONS
from hallucue_mlx.data.prepare import prepare_subset
from hallucue_mlx.data.subset import SubsetManifest, content_hash, stratified_pick


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fixtures")
    return {name: build(root) for name, (build, _) in bench_rows.BUILDERS.items()}


def _load(fx, name, **kw):
    return load_benchmark(name, bench_rows.BUILDERS[name][1] or None, path=str(fx[name]), **kw)


@pytest.mark.parametrize("name", list(bench_rows.BUILDERS))
def test_adapters_read_fixtures_into_items(fx, name):
    items = _load(fx, name)
    assert len(items) >= 4 and len({it.id for it in items}) == len(items)
    for it in items:
        assert it.question.strip() and it.answer
        assert it.answer_kind in ANSWER_KINDS
        assert "<image" not in it.question
        if it.image is not None:
            assert isinstance(it.image, Image.Image) and it.image.mode == "RGB"
        if it.answer_kind == "choice" and it.choices:
            assert it.answer in "ABCDEFGH"[: len(it.choices)]


def test_geometry3k_list_of_pil_images_and_free_answers(fx):
    items = _load(fx, "geometry3k")
    assert items[0].question == "Find x." and items[0].answer_kind == "number"
    assert items[0].image.size == (96, 64)
    assert {it.answer_kind for it in items} == {"number", "free"}  # '2\sqrt{3}' is free-form
    train = load_benchmark("geometry3k", "train", path=str(fx["geometry3k"]))
    assert {it.id for it in train}.isdisjoint({it.id for it in items})


def test_mathverse_versions_choices_and_text_only(fx):
    items = _load(fx, "mathverse")
    assert [it.version for it in items[:5]] == list(VERSIONS)
    td = items[0]
    assert td.choices == ("60°", "70°", "80°", "90°") and td.answer == "B"
    assert "Choices" not in td.question
    assert items[4].question == "Answer the question shown in the image."  # empty Vision Only
    text_only = load_benchmark("mathverse", "testmini_text_only", path=str(fx["mathverse"]))
    assert len(text_only) == 2 and all(it.image is None for it in text_only)


def test_mathvista_answer_becomes_letter_with_precision_and_unit(fx):
    by_id = {it.id: it for it in _load(fx, "mathvista")}
    assert by_id["4"].answer == "B" and by_id["4"].choices[1] == "50°"
    assert by_id["3"].unit == "years" and by_id["3"].answer_kind == "number"
    assert by_id["8"].precision == 1 and by_id["8"].answer == "3.5"


def test_mathvision_raw_bytes_and_split_files(fx):
    mini = _load(fx, "mathvision")
    test = load_benchmark("mathvision", "test", path=str(fx["mathvision"]))
    assert len(mini) == 6 and len(test) == 2  # 'test' does not pick up the testmini shard
    assert {it.answer_kind for it in mini} == {"choice", "number"}


def test_wemath_option_string_and_path_images(fx):
    items = _load(fx, "wemath")
    assert items[0].choices == ("8 cm", "12 cm", "16 cm", "20 cm", "No correct answer")
    assert len({it.id for it in items}) == 5  # ID repeats across sub-questions; ids do not


def test_local_choices_as_list_or_string(fx):
    by_id = {it.id: it for it in _load(fx, "local")}
    assert by_id["q2"].choices == ("circle", "square", "star")
    assert by_id["q4"].choices == ("5", "6", "7") and by_id["q4"].image is None
    assert by_id["q3"].answer_kind == "number" and by_id["q2"].version == "vision_only"


def test_subset_is_seeded_stratified_and_same_across_calls(fx):
    a = _load(fx, "mathverse", n=5, seed=1)
    b = _load(fx, "mathverse", n=5, seed=1)
    c = _load(fx, "mathverse", n=5, seed=2)
    assert [it.id for it in a] == [it.id for it in b] and len(a) == 5
    assert [it.id for it in a] != [it.id for it in c]
    keys = [(f"i{i}", ("a" if i < 30 else "b",)) for i in range(40)]
    picked = stratified_pick(keys, 8, 0)
    assert sum(i < 30 for i in picked) == 6 and sum(i >= 30 for i in picked) == 2


def test_prepare_then_load_offline_keeps_content(fx, tmp_path):
    manifest = prepare_subset("mathvista", 5, tmp_path / "mv", seed=3, path=str(fx["mathvista"]))
    saved = SubsetManifest.load(tmp_path / "mv" / "manifest.json")
    assert saved == manifest and len(saved.ids) == 5
    back = load_benchmark("mathvista", "testmini", path=str(tmp_path / "mv"))
    also = load_benchmark("local", "testmini", path=str(tmp_path / "mv"))
    assert tuple(it.id for it in back) == manifest.ids
    assert content_hash(back) == manifest.content_hash == content_hash(also)
    assert back[0].benchmark == "mathvista"
    with pytest.raises(BenchmarkError, match="mathvista"):
        load_benchmark("wemath", "testmini", path=str(tmp_path / "mv"))


def test_prepare_synth_round_trip(tmp_path):
    manifest = prepare_subset("synth", 6, tmp_path / "s", split="test", seed=0)
    back = load_benchmark("local", "test", path=str(tmp_path / "s"))
    assert content_hash(back) == manifest.content_hash
    assert [it.condition_spans for it in back] == [
        it.condition_spans for it in load_benchmark("synth", "test", n=6)
    ]


def test_missing_column_error_names_benchmark_column_and_fix(tmp_path):
    ds = datasets.Dataset.from_dict(
        {"images": [[bench_rows.picture(0)]], "answer": ["3"]},
        features=datasets.Features(
            {"images": datasets.List(datasets.Image()), "answer": datasets.Value("string")}
        ),
    )
    ds.save_to_disk(str(tmp_path / "g"))
    with pytest.raises(BenchmarkError) as err:
        load_benchmark("geometry3k", "test", path=str(tmp_path / "g"))
    msg = str(err.value)
    assert "geometry3k" in msg and "'problem'" in msg and "Columns present" in msg
    assert "rename" in msg


def test_unreadable_image_bytes_in_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table(
            {
                "id": ["1"],
                "question": ["Q"],
                "options": [[]],
                "decoded_image": [b"\x89PNG broken"],
                "answer": ["3"],
            }
        ),
        tmp_path / "testmini.parquet",
    )
    with pytest.raises(BenchmarkError, match=r"mathvision: row 0 \(id 1\).*decoded_image"):
        load_benchmark("mathvision", "testmini", path=str(tmp_path))


def test_offline_hub_error_says_to_prepare(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(BenchmarkError, match="data prepare wemath"):
        load_benchmark("wemath", "testmini")


def test_registry_lists_every_benchmark():
    assert set(BENCHMARKS) == {
        "synth",
        "geometry3k",
        "mathverse",
        "mathvista",
        "mathvision",
        "wemath",
        "local",
    }
    with pytest.raises(BenchmarkError, match="unknown benchmark"):
        load_benchmark("mmmu", "test")
