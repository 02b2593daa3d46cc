"""Accuracy with confidence intervals, modality diagnostics and paired tests over evaluation records.

A record is one JSON object per item and condition, as written by evaluation, with at least the keys
id, version, task, corruption, response, extracted, gold, correct, format_ok, response_tokens,
truncated, grader_error, and optionally benchmark, chance (1/size of the item's answer set, null
where unknown), n_choices, declined, cluster and the step trace (trace_read, trace_computed, from
trace.py). Records of one model only: items are matched across conditions by (benchmark, id).

Everything here is a pure function returning plain dicts, lists, floats and None (never NaN), so
the result can be written as JSON as is; only table1_cells returns small frozen records.

- Accuracy intervals are Wilson score intervals (good coverage at small n and near 0 or 1, where
  the normal approximation is not).
- Differences between two conditions are paired on items present in both: a percentile bootstrap
  over items for the interval of the accuracy difference, the exact McNemar test for its p-value.
- Across benchmarks (the report's Table 1 and its AVG column), differences are macro-averaged:
  every benchmark weighs the same, items are paired within it, and several samples of one item
  count as their mean.
- Shares whose denominator depends on the response (reading accuracy counts only responses that
  state the fact) are compared as ratios: each bootstrap draw resamples the paired items (whole
  clusters) and recomputes both ratios (paired_ratio_ci).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hallucue_mlx.corrupt import CORRUPTIONS
from hallucue_mlx.trace import OUTCOMES, outcome

Record = dict[str, Any]

# Condition names (records' `corruption` field) by role: clean, blank image, random image, text removal.
CLEAN, BLANK, RANDOM, TEXT_REMOVAL = CORRUPTIONS
# Bootstrap settings of every paired interval: fixed, so reports rebuild to identical bytes.
N_BOOT = 2000
BOOT_SEED = 0

# ----------------------------------------------------------------------------- basic statistics


def wilson_ci(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (95% for z=1.96); (0, 1) when n is 0."""
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"wilson_ci needs 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, center - half)
    hi = 1.0 if k == n else min(1.0, center + half)
    return lo, hi


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for b and c discordant pairs (binomial, p=1/2)."""
    if b < 0 or c < 0:
        raise ValueError(f"mcnemar_p needs non-negative counts, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired_bootstrap_ci(
    a_correct: Sequence[float],
    b_correct: Sequence[float],
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
    level: float = 0.95,
    clusters: Sequence[Any] | None = None,
) -> tuple[float, float, float]:
    """(mean of a - b, lo, hi): percentile bootstrap over paired items, deterministic per seed.
    With `clusters` (one label per item) that repeat, whole clusters are resampled
    (cluster_bootstrap_means); all distinct, it is the item bootstrap, draw for draw."""
    a = np.asarray(a_correct, dtype=np.float64)
    b = np.asarray(b_correct, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"paired_bootstrap_ci needs two equal-length lists, got {a.shape} and {b.shape}"
        )
    if a.size == 0:
        raise ValueError("paired_bootstrap_ci needs at least one paired item")
    diff = a - b
    if _cluster_index(clusters, diff.size) is not None:
        means = cluster_bootstrap_means(diff, clusters, n_boot, seed)
        lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
        return float(diff.mean()), float(lo), float(hi)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // diff.size)  # bound memory of the index matrix
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        idx = rng.integers(0, diff.size, size=(rows, diff.size))
        means[start : start + rows] = diff[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(diff.mean()), float(lo), float(hi)


def seed_item_bootstrap_ci(
    values: Sequence[Sequence[float]],
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(mean, lo, hi) of a per-item quantity measured under several training seeds.

    values[s][i] is item i under seed s: the same items, in the same order, in every seed (a
    paired difference or a correctness, already weighted for a macro average). Each bootstrap
    draw resamples the seeds, then the items (one item draw for every drawn seed: the test set
    is shared), so the interval covers seed-to-seed and item sampling variation. With one seed
    it is the item bootstrap."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(
            f"seed_item_bootstrap_ci needs a (seeds, items) table, got shape {x.shape}"
        )
    n_seeds, n_items = x.shape
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 4_000_000 // (n_seeds * n_items))  # bound memory of the index arrays
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        si = rng.integers(0, n_seeds, size=(rows, n_seeds))
        ii = rng.integers(0, n_items, size=(rows, n_items))
        means[start : start + rows] = x[si[:, :, None], ii[:, None, :]].mean(axis=(1, 2))
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(x.mean()), float(lo), float(hi)


def _cluster_index(clusters: Sequence[Any] | None, n: int) -> np.ndarray | None:
    """Cluster number of each of n items; None when every item is its own cluster."""
    if clusters is None:
        return None
    if len(clusters) != n:
        raise ValueError(f"{len(clusters)} cluster labels for {n} items")
    codes: dict[Any, int] = {}
    idx = np.array([codes.setdefault(c, len(codes)) for c in clusters], dtype=np.int64)
    return None if len(codes) == n else idx


def cluster_bootstrap_means(
    values: Sequence[float],
    clusters: Sequence[Any] | None = None,
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
) -> np.ndarray:
    """Bootstrap means of per-item values, resampling whole clusters (items that are one
    question: synth's stated fact, MathVerse's problem) with replacement: each draw's mean is
    its items' sum over its item count. With no clusters, or all distinct, the item bootstrap."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"cluster_bootstrap_means needs a non-empty list, got shape {x.shape}")
    sums, counts = _resampled_sums(np.stack([x, np.ones_like(x)]), clusters, n_boot, seed)
    return sums / counts


def _resampled_sums(
    values: np.ndarray, clusters: Sequence[Any] | None, n_boot: int, seed: int
) -> np.ndarray:
    """(k, n_boot): the sums of k per-item quantities (rows of `values`, shape (k, items)) over
    n_boot draws of whole clusters with replacement (items, when every item is its own cluster);
    one draw serves every row, so the rows stay paired."""
    idx = _cluster_index(clusters, values.shape[1])
    rng = np.random.default_rng(seed)
    if idx is None:
        per = values
    else:
        k = int(idx.max()) + 1
        per = np.stack([np.bincount(idx, weights=row, minlength=k) for row in values])
    m = per.shape[1]
    out = np.empty((per.shape[0], n_boot))
    chunk = max(1, 2_000_000 // m)  # bound memory of the index matrix
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        draw = rng.integers(0, m, size=(rows, m))
        for j, row in enumerate(per):
            out[j, start : start + rows] = row[draw].sum(axis=1)
    return out


def seed_cluster_ci(
    values: Sequence[Sequence[float]],
    clusters: Sequence[Any] | None = None,
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(mean, lo, hi) of a per-item quantity under several training seeds, valid for few seeds.

    values[s][i] is item i under seed s (the same items in every seed). Two independent sources
    of error add: the seed-to-seed variance of the seed means, v_seed = var(seed means) / S, and
    the item sampling variance of the seed-averaged item values, v_item, from a cluster bootstrap
    (cluster_bootstrap_means: items that are one question are resampled together). The interval
    is mean +- t(df) * sqrt(v_seed + v_item) with Welch-Satterthwaite degrees of freedom
    (v_seed has S - 1, v_item one less than the clusters: df falls to S - 1 where the seeds
    disagree and rises toward the normal where items dominate), and never narrower than the t
    interval over the seed means alone, t(S - 1) * sqrt(v_seed). Simulated with 3 seeds x 600
    items (benchmarks/bench_seed_interval.py) it covers 93.5-98% at nominal 95%; t(S - 1) on the
    sum, used before, covered 97.5-100% and was up to twice as wide. With one seed (or seeds
    that agree exactly) it is the normal interval of the cluster bootstrap."""
    from scipy.stats import norm, t

    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"seed_cluster_ci needs a (seeds, items) table, got shape {x.shape}")
    n_seeds = x.shape[0]
    mean = float(x.mean())
    boot = cluster_bootstrap_means(x.mean(axis=0), clusters, n_boot, seed)
    v_item = float(np.var(boot, ddof=1)) if boot.size > 1 else 0.0
    v_seed = float(np.var(x.mean(axis=1), ddof=1)) / n_seeds if n_seeds > 1 else 0.0
    q = 1 - (1 - level) / 2
    if v_seed <= 0:
        half = float(norm.ppf(q)) * math.sqrt(v_item)
        return mean, mean - half, mean + half
    n_clusters = len(set(clusters)) if clusters is not None else x.shape[1]
    df_item = max(n_clusters - 1, 1)
    df = (v_seed + v_item) ** 2 / (v_seed**2 / (n_seeds - 1) + v_item**2 / df_item)
    half = max(
        float(t.ppf(q, df)) * math.sqrt(v_seed + v_item),
        float(t.ppf(q, n_seeds - 1)) * math.sqrt(v_seed),
    )
    return mean, mean - half, mean + half


# ----------------------------------------------------------------------------- records


def _key(r: Record) -> tuple[str, str]:
    return str(r.get("benchmark", "")), str(r["id"])


def _need(records: Sequence[Record], *keys: str) -> None:
    for i, r in enumerate(records):
        for k in keys:
            if k not in r:
                raise ValueError(
                    f"record {i} (id {r.get('id', '?')!r}) has no {k!r} field; "
                    "metrics need evaluation records with id, corruption and correct"
                )


def by_condition(records: Iterable[Record]) -> dict[str, list[Record]]:
    """Records grouped by their `corruption` field, in first-seen order."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        groups[str(r["corruption"])].append(r)
    return dict(groups)


def _index(records: Sequence[Record], what: str) -> dict[tuple[str, str], Record]:
    out: dict[tuple[str, str], Record] = {}
    for r in records:
        k = _key(r)
        if k in out:
            raise ValueError(
                f"item {k[1]!r} (benchmark {k[0]!r}) appears twice in {what}; pass the records "
                "of one model and one condition, one per item"
            )
        out[k] = r
    return out


def accuracy(records: Sequence[Record]) -> float | None:
    """Share of records marked correct; None for no records."""
    return sum(bool(r["correct"]) for r in records) / len(records) if records else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def item_chance(r: Record) -> float | None:
    """Chance accuracy of one item, the accuracy of a uniform guess over its answer set: the
    record's `chance` (evaluation writes 1/size of the answer set: 1/k for k options, synth's
    per-task sets), else 1/n_choices for a choice item; None (unknown, left out of chance
    averages and counted) for an open answer whose answer set is not known. Records written
    before `chance` existed carry n_choices 0 for open answers: unknown too, not 0."""
    if "chance" in r:
        c = r["chance"]
        return None if c is None else float(c)
    n = r.get("n_choices", r.get("choices"))
    if n is None:
        return None
    n = n if isinstance(n, int) else len(n)
    return 1.0 / n if n > 0 else None


def declined(r: Record) -> bool:
    """The response declines to answer (grading.declines): the record's `declined`, else decided
    from its extracted answer and response. Its own outcome: never correct, never answered."""
    flag = r.get("declined")
    if isinstance(flag, bool):
        return flag
    from hallucue_mlx.grading import declines  # lazily: math-verify loads with it

    ext = r.get("extracted")
    return declines(ext if isinstance(ext, str) else None, str(r.get("response") or ""))


def _groups(records: Sequence[Record], field: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        groups[str(r.get(field, ""))].append(r)
    return {k: {"n": len(v), "accuracy": accuracy(v)} for k, v in sorted(groups.items())}


def summarize(records: Sequence[Record]) -> dict[str, dict[str, Any]]:
    """Per condition: accuracy with its Wilson 95% interval, format/truncation rates, response
    length, grader errors, accuracy by version and task, the share declined, and mean chance
    accuracy.

    `chance` is the mean of item_chance over the records where it is known (None if none is);
    `chance_unknown` counts the records left out (open answers of unknown answer set).
    """
    _need(records, "id", "corruption", "correct")
    out: dict[str, dict[str, Any]] = {}
    for cond, rs in by_condition(records).items():
        k = sum(bool(r["correct"]) for r in rs)
        tokens = [float(r["response_tokens"]) for r in rs if r.get("response_tokens") is not None]
        chances = [c for c in (item_chance(r) for r in rs) if c is not None]
        out[cond] = {
            "n": len(rs),
            "accuracy": k / len(rs),
            "ci95": list(wilson_ci(k, len(rs))),
            "format_rate": _mean([float(bool(r.get("format_ok"))) for r in rs]),
            "mean_response_tokens": _mean(tokens),
            "truncated_rate": _mean([float(bool(r.get("truncated"))) for r in rs]),
            "grader_errors": sum(1 for r in rs if r.get("grader_error")),
            "by_version": _groups(rs, "version"),
            "by_task": _groups(rs, "task"),
            "declined_rate": _mean([float(declined(r)) for r in rs]),
            "chance": _mean(chances),
            "chance_unknown": len(rs) - len(chances),
        }
    return out


# ----------------------------------------------------------------------------- paired comparisons


def _paired(records_a: Sequence[Record], records_b: Sequence[Record]) -> list[tuple[bool, bool]]:
    a = _index(records_a, "the first condition")
    b = _index(records_b, "the second condition")
    return [(bool(a[k]["correct"]), bool(b[k]["correct"])) for k in a if k in b]


def record_cluster(r: Record) -> str:
    """The cluster of a record's item (evaluation's `cluster`: items that are one question),
    else the item itself."""
    c = r.get("cluster")
    return str(c) if c else f"{r.get('benchmark', '')}:{r['id']}"


def _paired_clusters(records_a: Sequence[Record], records_b: Sequence[Record]) -> list[str]:
    a = _index(records_a, "the first condition")
    b = _index(records_b, "the second condition")
    return [record_cluster(a[k]) for k in a if k in b]


def flip_table(records_a: Sequence[Record], records_b: Sequence[Record]) -> dict[str, int]:
    """How items present in both lists moved: right in both, only in a, only in b, in neither."""
    table = {"both_right": 0, "a_only": 0, "b_only": 0, "both_wrong": 0}
    for ra, rb in _paired(records_a, records_b):
        name = ("both_right" if rb else "a_only") if ra else ("b_only" if rb else "both_wrong")
        table[name] += 1
    return table


def paired_gain(
    records_a: Sequence[Record],
    records_b: Sequence[Record],
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
) -> dict[str, Any] | None:
    """Accuracy of a minus b on shared items, with bootstrap CI (whole clusters resampled where
    records name them), flips and McNemar p; None if none shared."""
    pairs = _paired(records_a, records_b)
    if not pairs:
        return None
    a = [float(x) for x, _ in pairs]
    b = [float(y) for _, y in pairs]
    clusters = _paired_clusters(records_a, records_b)
    diff, lo, hi = paired_bootstrap_ci(a, b, n_boot=n_boot, seed=seed, clusters=clusters)
    flips = flip_table(records_a, records_b)
    return {
        "n": len(pairs),
        "accuracy_a": sum(a) / len(a),
        "accuracy_b": sum(b) / len(b),
        "diff": diff,
        "ci95": [lo, hi],
        "flips": flips,
        "mcnemar_p": mcnemar_p(flips["a_only"], flips["b_only"]),
    }


# ----------------------------------------------------------------------------- hallucination


def answered(r: Record) -> bool:
    """The model committed to an answer: a non-empty extracted answer that is not a decline."""
    ext = r.get("extracted")
    return isinstance(ext, str) and ext.strip() != "" and not declined(r)


def _answer_key(text: str) -> str:
    """An answer as concentration counts it: case, blanks, $ and a final period ignored."""
    return re.sub(r"\s+", "", text.strip().strip("$").rstrip(".").lower())


def concentration(records: Sequence[Record]) -> dict[str, Any]:
    """How concentrated the answered answers are, per task: a model that reads its input spreads
    its answers as the gold answers spread; one that guesses one constant answer does not.

    Per task (records' `task`): n answered, the most common answer and its share (top_share: 1.0
    is one constant answer), the number of distinct answers, and the normalised entropy
    (entropy / log of the answer-set size where item_chance knows it, else of n; 0 is constant,
    1 uniform). Overall: top_share and entropy averaged over tasks weighted by n, and
    constant_tasks, the tasks with at least 2 answers that are all the same."""
    by: dict[str, list[str]] = defaultdict(list)
    sizes: dict[str, set[int]] = defaultdict(set)
    for r in records:
        if not answered(r):
            continue
        task = str(r.get("task", ""))
        by[task].append(_answer_key(str(r["extracted"])))
        c = item_chance(r)
        if c:
            sizes[task].add(round(1 / c))
    out: dict[str, Any] = {}
    for task, answers in sorted(by.items()):
        counts = sorted(((n, a) for a, n in _count(answers).items()), key=lambda x: (-x[0], x[1]))
        n = len(answers)
        p = np.array([k for k, _ in counts], dtype=np.float64) / n
        size = max(sizes[task]) if len(sizes[task]) == 1 else n
        size = max(size, len(counts))
        ent = float(-(p * np.log(p)).sum() / math.log(size)) if size > 1 else None
        out[task] = {
            "n": n,
            "top_answer": counts[0][1],
            "top_share": counts[0][0] / n,
            "distinct": len(counts),
            "entropy": None if ent is None else max(0.0, min(1.0, ent)),
        }
    total = sum(v["n"] for v in out.values())
    ents = [(v["n"], v["entropy"]) for v in out.values() if v["entropy"] is not None]
    return {
        "by_task": out,
        "top_share": sum(v["n"] * v["top_share"] for v in out.values()) / total if total else None,
        "entropy": sum(n * e for n, e in ents) / sum(n for n, _ in ents) if ents else None,
        "constant_tasks": sorted(t for t, v in out.items() if v["n"] >= 2 and v["distinct"] == 1),
    }


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for v in values:
        out[v] += 1
    return dict(out)


def hallucination(records: Sequence[Record]) -> dict[str, Any]:
    """On the items whose needed information the corruption removed (record "info_removed", see
    corrupt.info_removed), where no answer is supported by what the model was shown, three
    outcomes: declined (the right response; grading.declines), answered anyway (a
    hallucination), or neither (no answer found).

    - rate: the share answered, with its Wilson CI (the hallucination rate); declined_rate (with
      declined_ci95) and no_answer_rate the other two; abstained: 1 - rate (declined or none);
    - answered_correct_rate: accuracy of the answers; chance_rate: the mean per-item chance
      (item_chance: 1/size of the item's answer set) over the answered items whose chance is
      known (chance_n of them), with known_correct_rate, the accuracy on those same items, to
      compare with; chance_unknown: answered items left out (open answers, unknown set);
    - concentration: how concentrated the answers are per task (a constant answer is not
      reading; `concentration`).

    Items still answerable from what is left, or whose adapter cannot tell, are not counted:
    n is 0 (rates None) when no item qualifies."""
    pool = [r for r in records if r.get("info_removed") is True]
    hits = [r for r in pool if answered(r)]
    n_declined = sum(declined(r) for r in pool)
    lucky = sum(bool(r["correct"]) for r in hits)
    known = [(r, c) for r in hits if (c := item_chance(r)) is not None]
    n = len(pool)
    return {
        "n": n,
        "answered": len(hits),
        "rate": len(hits) / n if pool else None,
        "ci95": list(wilson_ci(len(hits), n)),
        "abstained": (n - len(hits)) / n if pool else None,
        "declined": n_declined,
        "declined_rate": n_declined / n if pool else None,
        "declined_ci95": list(wilson_ci(n_declined, n)),
        "no_answer_rate": (n - len(hits) - n_declined) / n if pool else None,
        "answered_correct": lucky,
        "answered_correct_rate": lucky / len(hits) if hits else None,
        "chance_rate": sum(c for _, c in known) / len(known) if known else None,
        "chance_n": len(known),
        "chance_unknown": len(hits) - len(known),
        "known_correct_rate": (
            sum(bool(r["correct"]) for r, _ in known) / len(known) if known else None
        ),
        "verdict": chance_verdict([bool(r["correct"]) for r, _ in known], [c for _, c in known]),
        "concentration": concentration(hits),
    }


def chance_verdict(correct: Sequence[bool], chances: Sequence[float]) -> str | None:
    """Whether answers given without the needed information are right more or less often than
    guessing would be: "above chance", "at chance" or "below chance" at the two-sided 5% level,
    comparing the number right with its distribution under per-item guessing (a sum of
    Bernoulli(chance_i): normal approximation, mean sum(p), variance sum(p(1-p))). None: no
    answer with a known chance."""
    if not correct:
        return None
    mean = sum(chances)
    var = sum(p * (1 - p) for p in chances)
    k = sum(correct)
    if var <= 0:
        return "at chance" if k == mean else ("above chance" if k > mean else "below chance")
    z = (k - mean) / var**0.5
    return "above chance" if z > 1.96 else "below chance" if z < -1.96 else "at chance"


def diagnostics(
    records: Sequence[Record],
    clean: str = CLEAN,
    blank: str = BLANK,
    random: str = RANDOM,
    text: str = TEXT_REMOVAL,
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
) -> dict[str, Any]:
    """Modality diagnostics of one model's records across conditions.

    vision_gain = clean - blank, random_image_gain = clean - random, text_gain = clean - text
    removal on the items text removal changed (text_removal_coverage: how many of how many);
    each paired, None when a condition is missing; blind_accuracy = accuracy under blank
    images; vision_gain_by_version splits the vision gain by modality version (MathVerse);
    hallucination: per corrupted condition, on the items it left unanswerable, the share answered
    anyway and their accuracy against chance (hallucination).
    """
    _need(records, "id", "corruption", "correct")
    groups = by_condition(records)
    base = groups.get(clean, [])

    def gain(other: str) -> dict[str, Any] | None:
        return paired_gain(base, groups[other], n_boot, seed) if other in groups else None

    blind = None
    if blank in groups:
        rs = groups[blank]
        k = sum(bool(r["correct"]) for r in rs)
        blind = {"n": len(rs), "accuracy": k / len(rs), "ci95": list(wilson_ci(k, len(rs)))}

    by_version: dict[str, Any] = {}
    if blank in groups:
        versions = sorted({str(r.get("version", "")) for r in base})
        for v in versions:
            a = [r for r in base if str(r.get("version", "")) == v]
            b = [r for r in groups[blank] if str(r.get("version", "")) == v]
            by_version[v] = paired_gain(a, b, n_boot, seed)

    # text removal leaves items no rule matched unchanged: its effect is measured on the changed
    # ones only, and how many those are is reported beside it
    text_gain, text_coverage = None, None
    if text in groups:
        tr = groups[text]
        changed = [r for r in tr if r.get("corruption_changed", True)]
        text_gain = paired_gain(base, changed, n_boot, seed) if changed else None
        text_coverage = {
            "changed": len({r["id"] for r in changed}),
            "n": len({r["id"] for r in tr}),
        }
    return {
        "vision_gain": gain(blank),
        "random_image_gain": gain(random),
        "text_gain": text_gain,
        "text_removal_coverage": text_coverage,
        "blind_accuracy": blind,
        "vision_gain_by_version": by_version,
        "hallucination": {c: hallucination(rs) for c, rs in groups.items() if c != clean},
    }


# ----------------------------------------------------------------------------- macro averages


def excludes_zero(ci: Sequence[float] | None) -> bool:
    """The interval lies wholly above or below 0: the difference is called a gain or a drop."""
    return ci is not None and (ci[0] > 0 or ci[1] < 0)


def first_samples(records: Sequence[Record]) -> list[Record]:
    """Sample 0 of each item: what paired record-level diagnostics use (as evaluation does)."""
    return [r for r in records if r.get("sample", 0) == 0]


def item_scores(records: Sequence[Record]) -> dict[str, float]:
    """Per item id, mean correctness over its samples (0 or 1 with one sample), in record order."""
    tot: dict[str, list[float]] = {}
    for r in records:
        tot.setdefault(str(r["id"]), []).append(float(bool(r["correct"])))
    return {k: sum(v) / len(v) for k, v in tot.items()}


def macro_paired_diff(
    per_a: Mapping[str, Sequence[Record]], per_b: Mapping[str, Sequence[Record]] | None = None
) -> dict[str, Any] | None:
    """Macro-averaged accuracy of a minus b over benchmarks, paired on shared items, with a
    bootstrap CI (paired_bootstrap_ci); without b, the accuracy of a with its CI.

    Items are weighted n_total / (n_benchmarks * n_benchmark) so that the plain mean the bootstrap
    resamples equals the unweighted mean over benchmarks (the paper's AVG); with one benchmark every
    weight is 1. None when some benchmark has no shared item. Items of one cluster (records'
    `cluster`: one question in several wordings or versions) are resampled together.
    """
    xa_by, xb_by, cl_by = {}, {}, {}
    for bench, recs in per_a.items():
        sa = item_scores(recs)
        sb = item_scores(per_b[bench]) if per_b is not None else {}
        ids = [k for k in sa if k in sb] if per_b is not None else list(sa)
        if not ids:
            return None
        xa_by[bench] = [sa[k] for k in ids]
        xb_by[bench] = [sb[k] for k in ids] if per_b is not None else [0.0] * len(ids)
        cl = {str(r["id"]): record_cluster(r) for r in recs}
        cl_by[bench] = [f"{bench}\x1f{cl[k]}" for k in ids]
    n_total = sum(len(v) for v in xa_by.values())
    xa, xb, clusters = [], [], []
    for bench in xa_by:
        w = n_total / (len(xa_by) * len(xa_by[bench]))
        xa += [w * x for x in xa_by[bench]]
        xb += [w * x for x in xb_by[bench]]
        clusters += cl_by[bench]
    diff, lo, hi = paired_bootstrap_ci(xa, xb, N_BOOT, BOOT_SEED, clusters=clusters)
    return {
        "n": n_total,
        "diff": diff,
        "ci95": [lo, hi],
        "accuracy_a": sum(xa) / n_total,
        "accuracy_b": sum(xb) / n_total,
    }


@dataclass(frozen=True)
class Table1Cell:
    """One model on one benchmark (or AVG) under one eval condition."""

    n: int
    accuracy: float
    ci95: tuple[float, float]  # Wilson for a benchmark, bootstrap for AVG
    delta: dict[str, Any] | None  # macro_paired_diff vs base (diff, ci95, n), None for base


def table1_cells(
    records: Mapping[str, Mapping[str, Sequence[Record]]],
    benchmarks: Sequence[str],
    cond: str = CLEAN,
    base: str = "base",
) -> dict[tuple[str, str], Table1Cell]:
    """(model, benchmark or 'AVG') -> accuracy, CI and paired delta vs `base` under one condition.

    `records` maps model -> benchmark -> that model's records under `cond` (empty or absent when
    not evaluated). AVG is the unweighted mean over benchmarks (as in the paper), given only when
    a model has every benchmark. Deltas are paired on shared items (per-item mean over samples).
    """
    out: dict[tuple[str, str], Table1Cell] = {}
    base_recs = records.get(base, {})
    for model, by_bench in records.items():
        per: dict[str, Sequence[Record]] = {}
        for bench in benchmarks:
            recs = by_bench.get(bench, [])
            if not recs:
                continue
            per[bench] = recs
            s = summarize(recs)[cond]
            ref = base_recs.get(bench, [])
            delta = (
                macro_paired_diff({bench: recs}, {bench: ref}) if model != base and ref else None
            )
            out[(model, bench)] = Table1Cell(s["n"], s["accuracy"], tuple(s["ci95"]), delta)
        if len(per) == 1 and len(benchmarks) == 1:
            out[(model, "AVG")] = out[(model, next(iter(per)))]  # AVG of one benchmark is itself
        elif per and len(per) == len(benchmarks):
            avg = macro_paired_diff(per)
            assert avg is not None
            ref_per = {b: base_recs.get(b, []) for b in per}
            ok = model != base and all(ref_per.values())
            delta = macro_paired_diff(per, ref_per) if ok else None
            n = sum(len(v) for v in per.values())
            out[(model, "AVG")] = Table1Cell(n, avg["diff"], tuple(avg["ci95"]), delta)
    return out


# ----------------------------------------------------------------------------- ratios of paired items


def paired_ratio_ci(
    num_a: Sequence[float],
    den_a: Sequence[float],
    num_b: Sequence[float],
    den_b: Sequence[float],
    clusters: Sequence[Any] | None = None,
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
    level: float = 0.95,
) -> tuple[float, float, float] | None:
    """(sum(num_a)/sum(den_a) - sum(num_b)/sum(den_b), lo, hi): a difference of two ratios over
    the same items (index i is one item in all four lists), with a percentile bootstrap that
    resamples items, or whole clusters where `clusters` repeat, and recomputes both ratios on
    each draw. With every denominator 1 it draws the resamples paired_bootstrap_ci draws (equal
    up to float rounding). Draws where a denominator sums to 0 are left out of the quantiles.
    None when either denominator sums to 0."""
    x = np.asarray([num_a, den_a, num_b, den_b], dtype=np.float64)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"paired_ratio_ci needs four equal-length non-empty lists, got {x.shape}")
    if x[1].sum() <= 0 or x[3].sum() <= 0:
        return None
    point = float(x[0].sum() / x[1].sum() - x[2].sum() / x[3].sum())
    s = _resampled_sums(x, clusters, n_boot, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        diffs = s[0] / s[1] - s[2] / s[3]
    diffs = diffs[np.isfinite(diffs)]
    alpha = (1 - level) / 2
    lo, hi = np.quantile(diffs, [alpha, 1 - alpha]) if diffs.size else (point, point)
    return point, float(lo), float(hi)


# ----------------------------------------------------------------------------- step traces


def has_trace(records: Iterable[Record]) -> bool:
    """Some record carries a step trace (trace.py): its reading or its additions were checked.
    False for records written before traces existed and for benchmarks without stored facts."""
    return any(
        r.get("trace_read") is not None or r.get("trace_computed") is not None for r in records
    )


def outcome_shares(records: Sequence[Record]) -> dict[str, Any]:
    """Where the records' answers stand (trace.outcome), in trace.OUTCOMES order: n, the count
    of each outcome and its share of the n records (the shares sum to 1; None when n is 0)."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for r in records:
        counts[outcome(r)] += 1
    n = len(records)
    return {
        "n": n,
        "counts": counts,
        "shares": {k: (v / n if n else None) for k, v in counts.items()},
    }


# What each component of gain_sources counts: (in the denominator, in the numerator).
SOURCE_COMPONENTS: dict[str, tuple[Any, Any]] = {
    # the visual fact stated right, among the responses that state it
    "read": (lambda r: r.get("trace_read") is not None, lambda r: r.get("trace_read") is True),
    # every addition right from the fact read, among the responses that read it right and
    # whose item asks for additions
    "compute": (
        lambda r: r.get("trace_read") is True and r.get("trace_computed") is not None,
        lambda r: r.get("trace_computed") is True,
    ),
    # a parseable boxed answer, among all responses
    "format": (lambda r: True, lambda r: bool(r.get("format_ok"))),
    # graded correct, among all responses
    "accuracy": (lambda r: True, lambda r: bool(r["correct"])),
}


def _item_counts(records: Sequence[Record]) -> dict[tuple[str, str], list[Record]]:
    out: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        out.setdefault(_key(r), []).append(r)
    return out


def gain_sources(
    records_a: Sequence[Record],
    records_b: Sequence[Record],
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
) -> dict[str, Any] | None:
    """Where model a's accuracy differs from model b's under one condition, split into the steps
    a traced response takes (SOURCE_COMPONENTS): reading accuracy, computing accuracy, format
    rate, and the accuracy itself.

    Each component is a share of records (samples of an item count one each) on the items both
    lists hold: {"a", "b": the two shares, "n_a", "n_b": records in each denominator, "diff":
    a - b, "ci95": paired_ratio_ci over items, whole clusters resampled (record_cluster)}, or
    None when either side has no record in its denominator. With one sample per item the
    accuracy component is Table 1's delta (macro_paired_diff), up to float rounding.
    "solved": on the items b solved (all its records right), the share of a's records right
    (b's is 1; diff is minus a's loss there), same shape, None when b solved none.
    Returns {"n": shared items, component: ...}; None when no item is shared."""
    _need(records_a, "id", "correct")
    _need(records_b, "id", "correct")
    a, b = _item_counts(records_a), _item_counts(records_b)
    keys = [k for k in a if k in b]
    if not keys:
        return None
    clusters = [record_cluster(a[k][0]) for k in keys]
    out: dict[str, Any] = {"n": len(keys)}
    for name, (counted, right) in SOURCE_COMPONENTS.items():
        cols = [[], [], [], []]
        for k in keys:
            for j, rs in enumerate((a[k], b[k])):
                den = [r for r in rs if counted(r)]
                cols[2 * j].append(float(sum(bool(right(r)) for r in den)))
                cols[2 * j + 1].append(float(len(den)))
        ci = paired_ratio_ci(*cols, clusters=clusters, n_boot=n_boot, seed=seed)
        if ci is None:
            out[name] = None
            continue
        out[name] = _component(cols, ci)
    # On the items b solves (every record right): the share of a's records still right. Its
    # diff is minus what a lost of what b could already do (an RL update should keep it).
    solved = [k for k in keys if all(r["correct"] for r in b[k])]
    cols = [
        [float(sum(bool(r["correct"]) for r in a[k])) for k in solved],
        [float(len(a[k])) for k in solved],
        [float(len(b[k])) for k in solved],
        [float(len(b[k])) for k in solved],
    ]
    ci = solved and paired_ratio_ci(
        *cols, clusters=[record_cluster(a[k][0]) for k in solved], n_boot=n_boot, seed=seed
    )
    out["solved"] = _component(cols, ci) if ci else None
    return out


def _component(cols: list[list[float]], ci: tuple[float, float, float]) -> dict[str, Any]:
    """gain_sources' entry of one component: (a right, a counted, b right, b counted) per item."""
    n_a, n_b = int(sum(cols[1])), int(sum(cols[3]))
    return {
        "a": sum(cols[0]) / n_a,
        "b": sum(cols[2]) / n_b,
        "n_a": n_a,
        "n_b": n_b,
        "diff": ci[0],
        "ci95": [ci[1], ci[2]],
    }


# ----------------------------------------------------------------------------- train vs test


def _paired_item_diffs(
    records_a: Sequence[Record], records_b: Sequence[Record]
) -> tuple[list[float], list[str]]:
    """Per item both lists hold: a's mean correctness minus b's, and the item's cluster."""
    sa, sb = item_scores(records_a), item_scores(records_b)
    cl = {str(r["id"]): record_cluster(r) for r in records_a}
    ids = [k for k in sa if k in sb]
    return [sa[k] - sb[k] for k in ids], [cl[k] for k in ids]


def train_test_gap(
    train: Mapping[str, Sequence[Record]],
    test: Mapping[str, Sequence[Record]],
    base: str = "base",
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
    level: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """Per model (keys of `train` with records in both mappings, one condition): accuracy on a
    slice of the training split and on the test split, and the gap (train - test).

    The two splits hold different items, so the gap itself has no paired test; but each model's
    gap minus base's gap is the difference of two paired differences (model - base on the train
    items, model - base on the test items), each from its own cluster bootstrap
    (cluster_bootstrap_means, independent draws), so "gap_vs_base" comes with "ci95". Its point
    is computed on the items both models hold, which are all of them in a finished run.
    Entries: n_train, n_test (items), train, test, gap; gap_vs_base and ci95 (None for base,
    or when base lacks either split)."""
    out: dict[str, dict[str, Any]] = {}
    for model, tr in train.items():
        te = test.get(model) or []
        if not tr or not te:
            continue
        acc_tr, acc_te = accuracy(tr), accuracy(te)
        assert acc_tr is not None and acc_te is not None
        row: dict[str, Any] = {
            "n_train": len({_key(r) for r in tr}),
            "n_test": len({_key(r) for r in te}),
            "train": acc_tr,
            "test": acc_te,
            "gap": acc_tr - acc_te,
            "gap_vs_base": None,
            "ci95": None,
        }
        btr, bte = train.get(base) or [], test.get(base) or []
        if model != base and btr and bte:
            d_tr, c_tr = _paired_item_diffs(tr, btr)
            d_te, c_te = _paired_item_diffs(te, bte)
            if d_tr and d_te:
                draws = cluster_bootstrap_means(d_tr, c_tr, n_boot, seed) - (
                    cluster_bootstrap_means(d_te, c_te, n_boot, seed + 1)
                )
                lo, hi = np.quantile(draws, [(1 - level) / 2, 1 - (1 - level) / 2])
                row["gap_vs_base"] = float(np.mean(d_tr) - np.mean(d_te))
                row["ci95"] = [float(lo), float(hi)]
        out[model] = row
    return out


# ----------------------------------------------------------------------------- headroom


def _headroom_row(items: list[tuple[list[Record], Record | None]]) -> dict[str, Any]:
    n = len(items)
    g = max((len(s) for s, _ in items), default=0)
    correct = [[bool(r["correct"]) for r in s] for s, _ in items]
    greedy = [bool(gr["correct"]) for _, gr in items if gr is not None]
    rewards = [[r.get("reward") for r in s] for s, _ in items]
    with_reward = [x for x in rewards if x and all(isinstance(v, (int, float)) for v in x)]
    return {
        "n": n,
        "samples": g,
        "greedy": sum(greedy) / len(greedy) if greedy else None,
        "pass1": sum(sum(c) / len(c) for c in correct) / n if n else None,
        "pass_at_g": sum(any(c) for c in correct) / n if n else None,
        "spread": sum(any(c) and not all(c) for c in correct) / n if n else None,
        "reward_spread": (
            sum(len(set(x)) > 1 for x in with_reward) / len(with_reward) if with_reward else None
        ),
    }


def headroom(sampled: Sequence[Record], greedy: Sequence[Record] | None = None) -> dict[str, Any]:
    """How much a sampling policy could learn on its items (what GRPO sees): per item, its G
    sampled records (`sampled`, several `sample`s of one item under one condition) and
    optionally its greedy record.

    Each row: n items; samples (G, the most per item); greedy (greedy accuracy, pass@1 at
    temperature 0; None without `greedy`); pass1 (sampled pass@1: the mean over samples, then
    items); pass_at_g (some sample right); spread (the share of items whose samples are some
    right, some wrong: the groups whose accuracy reward has spread, i.e. those GRPO learns
    from); reward_spread (the share whose records' `reward` values are not all equal, format
    included; None when the records carry no reward). Returns {"overall": row, "by_task":
    {task: row}, "by_version": {version: row}}, keys sorted."""
    _need(sampled, "id", "correct")
    per = _item_counts(sampled)
    gr = _index(first_samples(greedy), "the greedy records") if greedy is not None else {}
    items = {k: (rs, gr.get(k)) for k, rs in per.items()}

    def rows(field: str) -> dict[str, dict[str, Any]]:
        groups: dict[str, list[tuple[list[Record], Record | None]]] = defaultdict(list)
        for rs, g in items.values():
            groups[str(rs[0].get(field) or "")].append((rs, g))
        return {k: _headroom_row(v) for k, v in sorted(groups.items())}

    return {
        "overall": _headroom_row(list(items.values())),
        "by_task": rows("task"),
        "by_version": rows("version"),
    }
