"""Benchmark adapters to Item, and `load_benchmark`, the one entry point other modules call.

Sources: a hub id through `datasets` (cached by it), or a local path: a folder saved with
`save_to_disk`, a parquet/json/jsonl file or a folder of them, or a folder in the local format
(items.jsonl + images, as written by `hallucue-mlx data prepare`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hallucue_mlx.data import local
from hallucue_mlx.data.bench import geometry3k, mathverse, mathvision, mathvista, wemath
from hallucue_mlx.data.common import (
    Adapter,
    BenchmarkError,
    Row,
    RowContext,
    _read_data_file,
    check_item,
    decode_utf8,
    image_budget,
    read_jsonl,
    require_columns,
)
from hallucue_mlx.data.item import Item
from hallucue_mlx.data.subset import stratified_pick
from hallucue_mlx.data.synth import load_synth

SYNTH = Adapter(
    name="synth",
    hub_id=None,
    splits=("sft", "train", "validation", "test"),
    default_split="test",
    answer_kinds=("choice", "number"),
    description="Procedural offline benchmark (count, digit, bars, colour) with exact condition spans.",
)


# Listed here; rows are read by hallucue_mlx.data.local.
LOCAL = Adapter(
    name="local",
    hub_id=None,
    splits=(),
    default_split="",
    answer_kinds=("choice", "number", "free"),
    description="Your own data or a prepared subset: items.jsonl + an image folder.",
)


BENCHMARKS: dict[str, Adapter] = {
    a.name: a
    for a in (
        SYNTH,
        geometry3k.ADAPTER,
        mathverse.ADAPTER,
        mathvista.ADAPTER,
        mathvision.ADAPTER,
        wemath.ADAPTER,
        LOCAL,
    )
}


def get_adapter(name: str) -> Adapter:
    if name not in BENCHMARKS:
        raise BenchmarkError(f"unknown benchmark {name!r}; choose one of {sorted(BENCHMARKS)}")
    return BENCHMARKS[name]


# ---------------------------------------------------------------- row sources


class _Rows:
    """Rows of one split: column names, cheap text-only rows, and full rows on demand."""

    def __init__(self, columns: list[str], source: str, base_dir: Path | None) -> None:
        self.columns, self.source, self.base_dir = columns, source, base_dir

    def text_rows(self, image_columns: tuple[str, ...]) -> list[Row]:
        raise NotImplementedError

    def row(self, i: int) -> Row:
        raise NotImplementedError


class _ListRows(_Rows):
    def __init__(self, rows: list[Row], source: str, base_dir: Path | None) -> None:
        columns = sorted({k for r in rows for k in r}) if rows else []
        super().__init__(columns, source, base_dir)
        self.rows = rows

    def text_rows(self, image_columns: tuple[str, ...]) -> list[Row]:
        return self.rows

    def row(self, i: int) -> Row:
        return self.rows[i]


class _DatasetRows(_Rows):
    def __init__(self, ds: Any, source: str, base_dir: Path | None) -> None:
        super().__init__(list(ds.column_names), source, base_dir)
        self.ds = _no_image_decoding(ds)

    def text_rows(self, image_columns: tuple[str, ...]) -> list[Row]:
        keep = [c for c in self.columns if c not in image_columns]
        return self.ds.select_columns(keep).to_list()

    def row(self, i: int) -> Row:
        return self.ds[i]


def _no_image_decoding(ds: Any) -> Any:
    """Images stay {'bytes', 'path'} so a broken one gives our error, naming its row."""
    import datasets

    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Image) and feature.decode:
            ds = ds.cast_column(name, datasets.Image(decode=False))
        elif isinstance(feature, (datasets.List, datasets.Sequence)) and isinstance(
            getattr(feature, "feature", None), datasets.Image
        ):
            ds = ds.cast_column(name, datasets.List(datasets.Image(decode=False)))
    return ds


def _split_files(files: list[Path], split: str) -> list[Path]:
    """Files named for the split (testmini-0000.parquet, data/test-*.parquet), else all files."""
    # hub shards are '<split>-00000-of-00001.parquet'; 'test' must not pick 'testmini'
    pattern = re.compile(rf"^{re.escape(split)}(-\d+(-of-\d+)?)?(-[0-9a-f]+)?$")
    named = [f for f in files if pattern.match(f.stem) or f.parent.name == split]
    return named or files


def _from_path(adapter: Adapter, path: str, split: str) -> _Rows:
    import datasets
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.exists():
        raise BenchmarkError(
            f"{adapter.name}: data path {path} does not exist; pass a folder saved with "
            f"save_to_disk, a parquet/json file or folder, or a `hallucue-mlx data prepare` folder."
        )
    base = p if p.is_dir() else p.parent
    if p.is_dir() and ((p / "dataset_dict.json").exists() or (p / "state.json").exists()):
        ds = datasets.load_from_disk(str(p))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise BenchmarkError(
                    f"{adapter.name}: split {split!r} is not in {path}; it holds {sorted(ds)}. "
                    f"Pass --split with one of those."
                )
            ds = ds[split]
        return _DatasetRows(ds, f"{path} (split {split})", base)
    files = sorted(p.rglob("*")) if p.is_dir() else [p]
    parquet = [f for f in files if f.suffix == ".parquet"]
    if parquet:
        tables = [pq.read_table(f) for f in _split_files(parquet, split)]
        import pyarrow as pa

        # The 'huggingface' schema metadata carries the features (Image, List(Image) ...).
        ds = datasets.Dataset(pa.concat_tables(tables, promote_options="default"))
        return _DatasetRows(ds, str(path), base)
    jsons = [f for f in files if f.suffix in (".json", ".jsonl")]
    if jsons:
        rows: list[Row] = []
        for f in _split_files(jsons, split):
            if f.suffix == ".jsonl":
                rows.extend(row for _, row in read_jsonl(f))
                continue
            try:
                data = json.loads(decode_utf8(_read_data_file(f), f))
            except json.JSONDecodeError as err:
                raise BenchmarkError(f"{f} is not valid JSON ({err}); fix the file.") from err
            rows.extend(data if isinstance(data, list) else data.get(split, []))
        bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
        if bad is not None:
            raise BenchmarkError(
                f"{adapter.name}: row {bad} of {path} is {type(rows[bad]).__name__}, not an "
                f"object of columns; each row must be a JSON object."
            )
        return _ListRows(rows, str(path), base)
    raise BenchmarkError(
        f"{adapter.name}: found no dataset in {path} (no save_to_disk folder, parquet or json); "
        f"pass one of those, or run `hallucue-mlx data prepare {adapter.name}` while online."
    )


def _from_hub(adapter: Adapter, split: str) -> _Rows:
    import datasets

    assert adapter.hub_id is not None
    config = adapter.config_for(split)
    try:
        ds = datasets.load_dataset(adapter.hub_id, config, split=split)
    except Exception as err:  # offline, not cached, gated, renamed: all end the same way
        raise BenchmarkError(
            f"{adapter.name}: cannot load {adapter.hub_id}"
            + (f" (config {config})" if config else "")
            + f" split {split!r} from the hub or its cache ({type(err).__name__}: {err}). "
            f"Run `hallucue-mlx data prepare {adapter.name} --n N --split {split}` once while "
            f"online and pass its output folder with --data, or pass --data PATH to a local copy."
        ) from err
    return _DatasetRows(ds, f"{adapter.hub_id} split {split}", None)


# ---------------------------------------------------------------- the entry point


def load_benchmark(
    name: str,
    split: str | None = None,
    *,
    path: str | None = None,
    n: int | None = None,
    seed: int = 0,
) -> list[Item]:
    """Items of a benchmark split: all of them, or a seeded subset of n stratified by
    (question type, version). `path` is a local copy (any format in this module's docstring)."""
    adapter = get_adapter(name)
    split = split or adapter.default_split
    if adapter.splits and split not in adapter.splits and path is None:
        raise BenchmarkError(
            f"{name}: unknown split {split!r}; choose one of {list(adapter.splits)}."
        )
    local_file = local.items_file(path) if path else None
    if name == "local" and local_file is None:
        raise BenchmarkError(
            f"local: {path!r} is not a folder with {local.ITEMS_FILE} nor such a file; write one "
            f"(see hallucue_mlx/data/local.py) or run `hallucue-mlx data prepare`."
        )
    if local_file is not None:
        rows = local.read_rows(local_file)
        if name != "local":
            _check_local_benchmark(name, rows, local_file)
        return _build(
            local.ADAPTER,
            _local_split(rows, split, local_file),
            split,
            n,
            seed,
            str(local_file),
            local_file.parent,
            name,
        )
    if name == "synth":
        if path is not None:
            raise BenchmarkError(
                "synth: is generated, not read; --data must be a `hallucue-mlx data prepare` folder."
            )
        return load_synth(split, n=n, seed=seed)
    source = _from_path(adapter, path, split) if path else _from_hub(adapter, split)
    return _build_rows(adapter, source, split, n, seed)


def _check_local_benchmark(name: str, rows: list[Row], path: Path) -> None:
    found = sorted({str(r.get("benchmark") or "local") for r in rows})
    if found and found != [name]:
        raise BenchmarkError(
            f"{name}: {path} holds items of {found}, not {name}; pass the matching --benchmark "
            f"or use --benchmark local."
        )


def _local_split(rows: list[Row], split: str, path: Path) -> list[Row]:
    tagged = {str(r["split"]) for r in rows if r.get("split")}
    if not tagged or not split:
        return rows
    if split not in tagged:
        raise BenchmarkError(
            f"local: {path} holds splits {sorted(tagged)}, not {split!r}; pass --split with one "
            f"of those."
        )
    return [r for r in rows if r.get("split") == split]


def _build(
    adapter: Adapter,
    rows: list[Row],
    split: str,
    n: int | None,
    seed: int,
    source: str,
    base_dir: Path | None,
    name: str,
) -> list[Item]:
    return _build_rows(adapter, _ListRows(rows, source, base_dir), split, n, seed, name)


def _build_rows(
    adapter: Adapter, rows: _Rows, split: str, n: int | None, seed: int, name: str | None = None
) -> list[Item]:
    bench = name or adapter.name
    require_columns(bench, rows.columns, adapter.required, rows.source)
    if isinstance(rows, _ListRows):  # JSON rows may each lack a column the others have
        for i, r in enumerate(rows.rows):
            missing = [c for c in adapter.required if c not in r]
            if missing:
                raise BenchmarkError(
                    f"{bench}: row {i} of {rows.source} has no {missing[0]!r} column; every row "
                    f"needs {list(adapter.required)}. Add it or drop that row."
                )
    assert adapter.key is not None and adapter.to_item is not None
    keys = [adapter.key(r, i) for i, r in enumerate(rows.text_rows(adapter.image_columns))]
    seen: dict[str, int] = {}
    ids = []
    for raw, _ in keys:  # ids must be unique: repeats get '#<row>'
        ids.append(raw if raw not in seen else f"{raw}#{len(ids)}")
        seen.setdefault(raw, len(ids) - 1)
    keys = [(i, stratum) for i, (_, stratum) in zip(ids, keys)]
    chosen = stratified_pick(keys, n, seed)
    items = []
    with image_budget():  # the images of one load are bounded together, not only each
        for i in chosen:
            item = adapter.to_item(rows.row(i), ids[i], split, RowContext(bench, i, rows.base_dir))
            check_item(item, f"{bench}: row {i} (id {ids[i]}) of {rows.source}")
            items.append(item)
    return items


__all__ = [
    "BENCHMARKS",
    "Adapter",
    "BenchmarkError",
    "get_adapter",
    "load_benchmark",
    "print_benchmarks",
]


def print_benchmarks() -> None:
    """A rich table of the benchmarks: name, hub id, splits, answer kinds, description."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Benchmarks (load with --benchmark NAME; --data PATH for a local copy)")
    table.add_column("name", no_wrap=True)
    for col in ("hub id", "splits", "answer kinds"):
        table.add_column(col, overflow="fold")
    table.add_column("description", ratio=1, min_width=24)
    for a in BENCHMARKS.values():
        table.add_row(
            a.name,
            a.hub_id or "-",
            ", ".join(a.splits) or "-",
            ", ".join(a.answer_kinds),
            a.description,
        )
    Console().print(table)
