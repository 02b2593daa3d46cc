"""Evaluation under corruption: item -> (corruption) -> batched answer -> per-item record -> summary.

For each condition the items are corrupted as a pool (corrupt.apply), each prompt is encoded once
(image features included), and a batch of prompts is decoded together after one prefill per prompt
(rollout.generate). Every response is graded with rewards.grade against the original item's gold.

Output folder layout (all writes are atomic: a temp file, then a rename):

    records.jsonl         one JSON object per item x condition x sample, conditions in run order
    summary.json          {"<condition>": metrics.summarize(...) + coverage, "diagnostics": ...,
                           "meta": {...}}
    parts/<cond>.jsonl    the records of one finished condition
    parts/<cond>.done.json  its done-marker: record count and the fingerprint of the settings

A rerun with the same folder skips every condition whose part is complete and was made with the
same model, items and settings; a part made with other settings is an error, never silently mixed.

`greedy_eval` is the same path (records of one greedy answer per item, all items corrupted) for the
quick evaluations of training (`mean_scores` of its records) and of the hallucue-tiny warm-up.

Determinism: corruption choices and sampling keys derive from `seed` (sampling keys per condition
and batch, so with temperature > 0 the samples also depend on batch_size). Greedy decoding does not
depend on batch_size up to float rounding.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx

from hallucue_mlx import atomic
from hallucue_mlx.config import EvalConfig
from hallucue_mlx.corrupt import Corruption, CorruptionRecord, apply, coverage, info_removed
from hallucue_mlx.data.bench import load_benchmark
from hallucue_mlx.data.item import Item
from hallucue_mlx.data.item import chance as item_chance
from hallucue_mlx.data.item import cluster as item_cluster
from hallucue_mlx.data.subset import content_hash
from hallucue_mlx.forward import encode_prompt
from hallucue_mlx.metrics import diagnostics, summarize
from hallucue_mlx.models.load import load_model, resolve_model_dir
from hallucue_mlx.rewards import Reward, check_golds, grade
from hallucue_mlx.rollout import Completion, generate
from hallucue_mlx.runfolder import (
    RECORDS_FILE,
    SUMMARY_EXTRA_KEYS,
    SUMMARY_FILE,
    part_done_file,
    part_file,
    weights_fingerprint,
)
from hallucue_mlx.trace import trace
from hallucue_mlx.views import eval_progress, print_table

# rollout.generate's signature: (model, processor, prompts, n, temperature, max_tokens, key, top_p)
GenerateFn = Callable[..., list[list[Completion]]]
# A reward of one response to the item as shown (rewards.score with its config bound)
RewardFn = Callable[[str, Item], Reward]


# ================================================================ results


class UnchangedCorruptionWarning(UserWarning):
    """A corruption that changed none of the items it was applied to (unchanged_warning)."""


@dataclass
class EvalResult:
    """What `evaluate` returns: every record, the summary (as in summary.json) and timing."""

    records: list[dict[str, Any]]
    summary: dict[str, Any]
    out_dir: Path | None = None
    seconds: float = 0.0  # wall time of the conditions actually run (not the skipped ones)
    items_evaluated: int = 0  # item x condition pairs generated in this call
    skipped: list[str] = field(default_factory=list)  # conditions resumed from out_dir

    @property
    def by_condition(self) -> dict[str, dict[str, Any]]:
        """{condition: its summary (n, accuracy, ci95, ...)}, in evaluation order."""
        return {k: v for k, v in self.summary.items() if k not in SUMMARY_EXTRA_KEYS}

    @property
    def items_per_s(self) -> float:
        return self.items_evaluated / self.seconds if self.seconds > 0 else 0.0

    @property
    def grader_errors(self) -> int:
        return sum(1 for r in self.records if r.get("grader_error"))


# ================================================================ files


def _jsonl(records: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of a records.jsonl file, or of an evaluation folder holding one."""
    p = Path(path)
    if p.is_dir():
        p = p / RECORDS_FILE
    if not p.is_file():
        raise FileNotFoundError(f"no evaluation records at {p}; run `hallucue-mlx eval --out DIR`")
    out = []
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{p} line {i} is not JSON ({e}); rerun the evaluation") from e
    return out


def unchanged_warning(cond: str, n_applied: int, n_changed: int, what: str) -> str | None:
    """The warning for a corruption that was applied but changed no item (random images on a
    one-item pool, blank or random on text-only items, text_removal where no rule matches): its
    results are those of the unchanged items, not of the corruption. None when it changed some."""
    if cond == "none" or n_changed or not n_applied:
        return None
    return (
        f"corruption {cond!r} changed none of the {n_applied} {what} it was applied to, so what "
        "is reported under its name is the unchanged items (random needs 2+ items with images, "
        "blank and random need images, text_removal a removable cue); use more or other items"
    )


def unchanged_corruptions(records: Sequence[dict[str, Any]], what: str = "items") -> dict[str, str]:
    """{condition: warning} for the conditions whose corruption changed no item (sample 0)."""
    out = {}
    for cond in dict.fromkeys(r["corruption"] for r in records):
        rs = [r for r in records if r["corruption"] == cond and r.get("sample", 0) == 0]
        applied = sum(bool(r.get("corruption_applied")) for r in rs)
        changed = sum(bool(r.get("corruption_changed")) for r in rs)
        w = unchanged_warning(cond, applied, changed, what)
        if w:
            out[cond] = w
    return out


def build_summary(
    records: Sequence[dict[str, Any]], meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    """summary.json's content: per condition metrics.summarize plus corruption coverage, the
    modality diagnostics, and meta (settings, grader errors)."""

    if not records:
        return {"diagnostics": None, "meta": dict(meta or {})}
    summary: dict[str, Any] = summarize(records)
    for cond, s in summary.items():
        rs = [r for r in records if r["corruption"] == cond]
        applied = [r for r in rs if r.get("corruption_applied")]
        s["corruption_applied_rate"] = len(applied) / len(rs)
        s["corruption_changed_rate"] = sum(bool(r.get("corruption_changed")) for r in rs) / len(rs)
    unchanged = unchanged_corruptions(records)
    for cond, w in unchanged.items():
        summary[cond]["warning"] = w
    # Diagnostics pair items across conditions: one record per item, so sample 0 only.
    first = [r for r in records if r.get("sample", 0) == 0]
    summary["diagnostics"] = diagnostics(first)
    summary["meta"] = {
        **(meta or {}),
        "grader_errors": sum(1 for r in records if r.get("grader_error")),
        "diagnostics_note": "paired on sample 0 of each item",
        **({"warnings": list(unchanged.values())} if unchanged else {}),
    }
    return summary


def summarize_dir(out_dir: str | Path, write: bool = True) -> dict[str, Any]:
    """Recompute the summary of an evaluation folder from its records.jsonl (and rewrite it)."""
    out = Path(out_dir)
    records = load_records(out)
    meta: dict[str, Any] = {}
    old = out / SUMMARY_FILE
    if old.is_file():
        meta = {
            k: v
            for k, v in json.loads(old.read_text()).get("meta", {}).items()
            if k not in ("grader_errors", "warnings")  # recomputed from the records
        }
    summary = build_summary(records, meta)
    if write:
        atomic.write_json(old, summary, indent=2)
    return summary


def _fingerprint(
    items: Sequence[Item],
    cfg: EvalConfig,
    model_name: str,
    weights: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Everything that changes a condition's records; a part made with another is not reused.

    Items count by content (ids, questions, choices, golds, image pixels), and `weights` (the
    content fingerprints of the model and adapter, when the caller knows their files) by content
    too: the same path holding other data or weights is another input."""
    ids = hashlib.sha256("\x1f".join(f"{it.benchmark}/{it.id}" for it in items).encode())
    # batch_size matters only when sampling (keys are drawn per batch), top_p likewise
    skip = {"conditions"} | ({"batch_size", "top_p"} if cfg.temperature == 0 else set())
    fp = {
        # the weights' content when known (a moved or copied model is the same model), else the name
        **({"model": model_name} if weights is None else {}),
        "items": f"{len(items)} items, sha256 {ids.hexdigest()[:16]}",
        "item_content": f"sha256 {content_hash(items)[:16]}",
        **{f"{role}_weights": v for role, v in (weights or {}).items()},
        **{k: v for k, v in asdict(cfg).items() if k not in skip},
    }
    return json.loads(json.dumps(fp))  # tuples -> lists, so it compares equal to a reloaded one


# What a changed fingerprint key means, in the refusal message
_CHANGED = {
    "items": "the item ids changed",
    "item_content": "the items' content (questions, choices, golds or images) changed",
    "model_weights": "the model weights changed",
    "adapter_weights": "the adapter weights changed",
}


def _done_part(out_dir: Path, cond: str, fp: dict[str, Any], expected: int) -> list | None:
    """The records of a finished condition made with the same settings, else None."""
    part, done = part_file(out_dir, cond), part_done_file(out_dir, cond)
    if not (part.is_file() and done.is_file()):
        return None
    marker = json.loads(done.read_text())
    old = marker.get("fingerprint", {})
    if old != fp:
        diff = [
            f"{_CHANGED[k]}: {old.get(k)} there, {fp.get(k)} now"
            if k in _CHANGED
            else f"{k}: {old.get(k)!r} there vs {fp.get(k)!r} now"
            for k in fp
            if old.get(k) != fp[k]
        ]
        raise ValueError(
            f"{out_dir} already holds {cond!r} records made with other inputs "
            f"({'; '.join(diff) or 'different keys'}); use another --out folder or delete "
            f"{part.parent}"
        )
    records = load_records(part)
    if len(records) != expected or marker.get("n_records") != expected:
        return None  # incomplete or damaged: redo the condition
    return records


def _save_part(out_dir: Path, cond: str, records: list, fp: dict[str, Any]) -> None:
    part_file(out_dir, cond).parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(part_file(out_dir, cond), _jsonl(records))
    marker = {"condition": cond, "n_records": len(records), "fingerprint": fp}
    atomic.write_json(part_done_file(out_dir, cond), marker, indent=2)


# ================================================================ records


def _n_choices(item: Item) -> int | None:
    """Options of the item: 0 for open answers, None when a choice item's options are only in
    the image. Chance accuracy is the record's `chance` (data.item.chance), not 1/n_choices."""
    if item.choices:
        return len(item.choices)
    return None if item.answer_kind == "choice" else 0


def make_record(
    item: Item,
    shown: Item,
    crec: CorruptionRecord,
    sample: int,
    completion: Any,
    model_name: str = "",
) -> dict[str, Any]:
    """One evaluation record: the original item's gold, the shown (corrupted) question, the grade."""
    g = grade(completion.text, item)
    # tokens of the answer itself: the final EOS of a finished response is not counted
    n_tokens = len(completion.ids) - (0 if completion.truncated else 1)
    return {
        "id": item.id,
        "benchmark": item.benchmark,
        "split": item.split,
        "version": item.version,
        "task": item.task,
        "answer_kind": item.answer_kind,
        "corruption": crec.corruption,
        "corruption_applied": crec.applied,
        "corruption_changed": crec.changed,
        "corruption_detail": crec.detail,
        "info_removed": info_removed(item, crec),
        "question": shown.question,
        "sample": sample,
        "response": completion.text,
        "extracted": g.extracted,
        "gold": item.answer,
        "correct": g.correct,
        "format_ok": g.format_ok,
        "response_tokens": n_tokens,
        "truncated": completion.truncated,
        "grader_error": g.grader_error,
        "n_choices": _n_choices(item),
        "chance": item_chance(item),
        "declined": g.declined,
        "cluster": item_cluster(item),
        "model": model_name,
        # reading and each addition scored against the item's facts (synth; None elsewhere)
        **trace(completion.text, item).as_record(),
    }


def _batch_key(seed: int, cond: str, batch: int) -> mx.array:
    digest = hashlib.sha256(f"eval\x1f{seed}\x1f{cond}\x1f{batch}".encode()).digest()
    return mx.random.key(int.from_bytes(digest[:4], "big"))


@dataclass(frozen=True)
class Decoding:
    """How the answers of an evaluation are produced: prompt, sampling, batching, seed."""

    template: str
    max_tokens: int
    batch_size: int
    samples: int = 1
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int = 0  # corruption choices and the per-batch sampling keys


def condition_records(
    model: Any,
    processor: Any,
    items: Sequence[Item],
    cond: str,
    decoding: Decoding,
    *,
    ratio: float = 1.0,
    model_name: str = "",
    reward_fn: RewardFn | None = None,
    generate_fn: GenerateFn = generate,
    on_batch: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Records of one condition: corrupt the pool, encode each prompt once, generate in batches.

    With `reward_fn`, each record also carries "reward": the reward of the response to the item
    as shown. `on_batch(n_items)` is called after each batch (progress)."""
    d = decoding
    pool = apply(items, Corruption(cond, ratio, d.seed))
    records: list[dict[str, Any]] = []
    for b, start in enumerate(range(0, len(pool), d.batch_size)):
        chunk = pool[start : start + d.batch_size]
        prompts = [
            encode_prompt(processor, model, shown, template=d.template) for shown, _ in chunk
        ]
        outs = generate_fn(
            model,
            processor,
            prompts,
            n=d.samples,
            temperature=d.temperature,
            max_tokens=d.max_tokens,
            key=_batch_key(d.seed, cond, b),
            top_p=d.top_p,
        )
        for (shown, crec), item, group in zip(chunk, items[start : start + len(chunk)], outs):
            for s, completion in enumerate(group):
                rec = make_record(item, shown, crec, s, completion, model_name)
                if reward_fn is not None:
                    rec["reward"] = reward_fn(completion.text, shown).total
                records.append(rec)
        if on_batch is not None:
            on_batch(len(chunk))
    return records


def evaluate_condition(
    model: Any,
    processor: Any,
    items: Sequence[Item],
    cfg: EvalConfig,
    cond: str,
    *,
    model_name: str = "",
    generate_fn: GenerateFn = generate,
    on_batch: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Records of one condition under an EvalConfig (`hallucue-mlx eval`, the grid)."""
    decoding = Decoding(
        template=cfg.template,
        max_tokens=cfg.max_tokens,
        batch_size=cfg.batch_size,
        samples=cfg.samples_per_item,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        seed=cfg.seed,
    )
    return condition_records(
        model,
        processor,
        items,
        cond,
        decoding,
        ratio=cfg.ratio,
        model_name=model_name,
        generate_fn=generate_fn,
        on_batch=on_batch,
    )


def greedy_eval(
    model: Any,
    processor: Any,
    items: Sequence[Item],
    conditions: Sequence[str],
    decoding: Decoding,
    *,
    reward_fn: RewardFn | None = None,
    generate_fn: GenerateFn = generate,
) -> dict[str, list[dict[str, Any]]]:
    """The quick evaluation of training and the warm-up: every item under each condition (ratio
    1), answered as `decoding` says (greedy by default); {condition: records}."""
    if decoding.temperature != 0 or decoding.samples != 1:
        raise ValueError("greedy_eval decodes one greedy answer per item")
    return {
        cond: condition_records(
            model, processor, items, cond, decoding, reward_fn=reward_fn, generate_fn=generate_fn
        )
        for cond in conditions
    }


def mean_scores(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Accuracy, format rate and (when the records carry one) mean reward: the training log's
    eval/<condition>/... numbers. 0.0 for no records."""
    n = max(len(records), 1)
    out = {
        "accuracy": sum(float(r["correct"]) for r in records) / n,
        "format": sum(float(r["format_ok"]) for r in records) / n,
    }
    if records and "reward" in records[0]:
        out["reward"] = sum(r["reward"] for r in records) / n
    return out


# ================================================================ the entry point


def evaluate(
    model: Any,
    processor: Any,
    items: list[Item],
    cfg: EvalConfig,
    *,
    out_dir: Path | None = None,
    model_name: str = "",
    progress: bool = True,
    console: Any = None,
    generate_fn: GenerateFn = generate,
    weights: dict[str, str] | None = None,
) -> EvalResult:
    """Evaluate `model` on `items` under each of cfg.conditions.

    With `out_dir`, records and summary are written there and finished conditions from an earlier
    call with the same settings are reused (resume); `weights` ({"model": ..., "adapter": ...},
    runfolder.weights_fingerprint) joins that check. With `progress`, a rich progress bar runs and
    the results table is printed at the end.
    """
    from rich.console import Console

    if not items:
        raise ValueError("evaluate needs at least one item; check --benchmark, --split and --n")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise ValueError("item ids must be unique within an evaluation pool")
    console = console or Console()
    out = Path(out_dir) if out_dir is not None else None
    fp = _fingerprint(items, cfg, model_name, weights)
    expected = len(items) * cfg.samples_per_item

    done: dict[str, list] = {}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for cond in cfg.conditions:
            recs = _done_part(out, cond, fp, expected)
            if recs is not None:
                done[cond] = recs
    todo = [c for c in cfg.conditions if c not in done]
    if done and progress:
        console.print(f"resuming: {', '.join(done)} already done in {out}")

    by_cond: dict[str, list] = dict(done)
    t0 = time.perf_counter()
    with eval_progress(console, enabled=progress and bool(todo)) as bar:
        task = bar.add_task("eval", total=len(items) * len(todo))
        for cond in todo:
            bar.update(task, description=f"eval [bold]{cond}[/bold]")
            recs = evaluate_condition(
                model,
                processor,
                items,
                cfg,
                cond,
                model_name=model_name,
                generate_fn=generate_fn,
                on_batch=lambda k: bar.advance(task, k),
            )
            by_cond[cond] = recs
            if out is not None:
                _save_part(out, cond, recs, fp)
    seconds = time.perf_counter() - t0

    records = [r for cond in cfg.conditions for r in by_cond[cond]]
    meta = {
        "model": model_name,
        "n_items": len(items),
        "benchmarks": sorted({it.benchmark for it in items}),
        "config": json.loads(json.dumps(asdict(cfg))),
        "text_removal_coverage": _tr_coverage(by_cond),
    }
    summary = build_summary(records, meta)
    if out is not None:
        atomic.write_text(out / RECORDS_FILE, _jsonl(records))
        atomic.write_json(out / SUMMARY_FILE, summary, indent=2)
    result = EvalResult(records, summary, out, seconds, len(items) * len(todo), list(done))
    for w in summary["meta"].get("warnings", []):
        if progress:
            console.print(f"[yellow]warning:[/yellow] {w}", soft_wrap=True)
        else:
            warnings.warn(w, UnchangedCorruptionWarning, stacklevel=2)
    if progress:
        print_table(summary, console=console, title=_title(model_name, items))
        if todo:
            console.print(
                f"{result.items_evaluated} item-conditions in {seconds:.1f} s "
                f"({result.items_per_s:.2f} items/s)"
                + (f"; records in {out / RECORDS_FILE}" if out is not None else ""),
                soft_wrap=True,
            )
    return result


def evaluate_benchmark(
    model: str,
    benchmark: str,
    cfg: EvalConfig,
    *,
    adapter: str | None = None,
    split: str | None = None,
    data: str | None = None,
    n: int | None = None,
    out_dir: Path | None = None,
    progress: bool = True,
) -> EvalResult:
    """`hallucue-mlx eval`: load the model (and adapter) and the benchmark items, then evaluate.

    Items are a seeded subset of n (cfg.seed), stratified as data.bench.load_benchmark does."""

    if n is not None and n <= 0:
        raise ValueError(
            f"n = {n} is invalid; valid: an integer >= 1 (or none for the whole split)"
        )
    items = load_benchmark(benchmark, split, path=data, n=n, seed=cfg.seed)
    check_golds(items, data or "")
    loaded, processor = load_model(model, adapter)
    name = str(model) + (f" + {adapter}" if adapter else "")
    weights = {"model": weights_fingerprint(resolve_model_dir(model))}
    if adapter:
        weights["adapter"] = weights_fingerprint(adapter)
    return evaluate(
        loaded,
        processor,
        items,
        cfg,
        out_dir=out_dir,
        model_name=name,
        progress=progress,
        weights=weights,
    )


def default_eval_dir(
    benchmark: str, split: str | None, model: str, data: str | None = None
) -> Path:
    """`eval`'s folder when --out is not given: runs/eval/<benchmark>-<split>-<model>, plus the
    local copy's name and a digest of its location with --data, so evaluations of different data
    never share a folder."""
    name = f"{benchmark}-{split or 'all'}-{Path(model).name}"
    if data:
        where = hashlib.sha256(str(Path(data).expanduser().resolve()).encode()).hexdigest()[:8]
        name += f"-{Path(data).stem or 'data'}-{where}"
    return Path("runs/eval") / name


def _tr_coverage(by_cond: dict[str, list]) -> float | None:
    recs = by_cond.get("text_removal")
    if not recs:
        return None
    return coverage(
        [
            CorruptionRecord(
                r["id"], r["corruption"], r["corruption_applied"], r["corruption_changed"]
            )
            for r in recs
            if r.get("sample", 0) == 0
        ]
    )


def _title(model_name: str, items: Sequence[Item]) -> str:
    benches = ", ".join(sorted({it.benchmark for it in items}))
    return f"{model_name or 'model'} on {benches} ({len(items)} items)"
