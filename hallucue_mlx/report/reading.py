"""The plain-language reading of a run: one sentence per comparison, each with its numbers.

Only differences whose 95% CI excludes 0 are called gains or drops; the rest are "within noise".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hallucue_mlx.metrics import excludes_zero, macro_paired_diff
from hallucue_mlx.report.labels import EVAL_LONG, RANDOM_REWARD
from hallucue_mlx.report.load import RunData
from hallucue_mlx.report.tables import (
    SOURCE_HEADS,
    Cells,
    Diagnostics,
    Gaps,
    Sources,
    ci_text,
    gain_sources_all,
    pct,
    signed,
    train_test_gaps,
    version_order,
    versioned_benchmarks,
)


def _ci_words(ci: Sequence[float]) -> str:
    return f"95% CI {ci_text(ci)}"


def _negated(ci: Sequence[float]) -> list[float]:
    """The interval of -x given that of x."""
    return [-ci[1], -ci[0]]


def _vs_base(run: RunData, cells: Cells) -> list[str]:
    """Each training (and each imported model) vs base, clean test accuracy."""
    out: list[str] = []
    cols = [*run.benchmarks, "AVG"] if len(run.benchmarks) > 1 else list(run.benchmarks)
    for model in [*run.train_conditions, *run.imported]:
        for b in cols:
            c, base = cells.get((model, b)), cells.get(("base", b))
            if c is None or base is None or c.delta is None:
                continue
            where = "the average over benchmarks" if b == "AVG" else b
            d = c.delta
            nums = f"{signed(d['diff'])} points, {_ci_words(d['ci95'])}"
            if excludes_zero(d["ci95"]):
                verb = "raised" if d["diff"] > 0 else "lowered"
                out.append(
                    f"{run.label(model)} {verb} clean test accuracy on {where} from "
                    f"{pct(base.accuracy)}% to {pct(c.accuracy)}% ({nums})."
                )
            else:
                out.append(
                    f"{run.label(model)}'s clean test accuracy on {where} ({pct(c.accuracy)}% "
                    f"vs {pct(base.accuracy)}% for base) is within noise of base ({nums})."
                )
    return out


def _vs_grpo(run: RunData, model: str, key: str) -> dict[str, Any] | None:
    """Paired clean test difference of a model vs clean GRPO, on one benchmark or macro-averaged."""
    benches = run.benchmarks if key == "AVG" else [key]
    per_a = {b: run.cell(model, b, "test", "none") for b in benches}
    per_b = {b: run.cell("none", b, "test", "none") for b in benches}
    if not all(per_a.values()) or not all(per_b.values()):
        return None
    return macro_paired_diff(per_a, per_b)


def _gain_kept(run: RunData, cells: Cells) -> list[str]:
    """Share of clean GRPO's gain kept by corruption-trained models, and their difference to it."""
    out: list[str] = []
    key = "AVG" if len(run.benchmarks) > 1 else (run.benchmarks[0] if run.benchmarks else None)
    ref = cells.get(("none", key)) if key else None
    if key is None or ref is None or ref.delta is None:
        return out
    where = "on average" if key == "AVG" else f"on {key}"
    for model in run.corruption_trained:
        c = cells.get((model, key))
        if c is None or c.delta is None:
            continue
        if excludes_zero(ref.delta["ci95"]) and ref.delta["diff"] > 0:
            share = c.delta["diff"] / ref.delta["diff"]
            out.append(
                f"{run.label(model)} kept {100 * share:.0f}% of clean GRPO's gain {where} "
                f"({signed(c.delta['diff'])} vs {signed(ref.delta['diff'])} points)."
            )
        vs = _vs_grpo(run, model, key)
        if vs is not None:
            nums = f"{signed(vs['diff'])} points, {_ci_words(vs['ci95'])}"
            if excludes_zero(vs["ci95"]):
                word = "above" if vs["diff"] > 0 else "below"
                out.append(f"{run.label(model)} scored {word} clean GRPO {where} ({nums}).")
            else:
                out.append(
                    f"{run.label(model)} and clean GRPO differ {where} within noise ({nums})."
                )
    return out


def _blank_by_version(run: RunData, diag: Diagnostics) -> list[str]:
    """Blank images at inference, by modality version, for base and clean GRPO."""
    out: list[str] = []
    for model in ("base", "none"):
        for b in versioned_benchmarks(run):
            byv = (diag.get((model, b)) or {}).get("vision_gain_by_version") or {}
            parts = []
            for v in version_order(set(byv)):
                g = byv[v]
                if g is None:
                    continue
                if excludes_zero(g["ci95"]):
                    fell = g["diff"] > 0
                    ci = g["ci95"] if fell else _negated(g["ci95"])
                    word = "fell by" if fell else "rose by"
                    parts.append(
                        f"{word} {pct(abs(g['diff']))} points on {v} items ({_ci_words(ci)})"
                    )
                else:
                    parts.append(
                        f"changed within noise on {v} items ({signed(-g['diff'])} points, "
                        f"{_ci_words(_negated(g['ci95']))})"
                    )
            if parts:
                out.append(
                    f"Under blank images, {run.label(model)} accuracy on {b} (test) "
                    + "; ".join(parts)
                    + "."
                )
    return out


def _blank_raised(run: RunData, diag: Diagnostics) -> list[str]:
    """Blank images overall: only a clear rise (the paper's finding 4) gets a sentence."""
    out: list[str] = []
    for (model, b), d in diag.items():
        g = d.get("vision_gain")
        if g is None or not excludes_zero(g["ci95"]) or g["diff"] > 0:
            continue
        out.append(
            f"Blank images raised {run.label(model)}'s accuracy on {b} (test) from "
            f"{pct(g['accuracy_a'])}% to {pct(g['accuracy_b'])}% ({_ci_words(_negated(g['ci95']))})."
        )
    return out


def _answered_anyway(run: RunData, diag: Diagnostics) -> list[str]:
    """Answering anyway where the corruption removed the needed information (hallucination),
    per model, with a verdict on its answers against chance."""
    out: list[str] = []
    for (model, b), d in diag.items():
        hs = d["hallucination"]
        parts = [
            f"{pct(h['rate'])}% of the {h['n']} items {EVAL_LONG.get(c, c)} left unanswerable"
            + f" (declined {pct(h.get('declined_rate'))}%"
            + (
                f"; the answers right {pct(h.get('known_correct_rate'))}% of the time against "
                f"{pct(h['chance_rate'])}% chance: {h.get('verdict')}"
                if h.get("known_correct_rate") is not None and h["chance_rate"] is not None
                else ""
            )
            + ")"
            for c, h in hs.items()
            if h["rate"] is not None
        ]
        if parts:
            out.append(
                f"{run.label(model)} on {b} (test) still answered (hallucinated) on "
                + ", ".join(parts)
                + "."
            )
    return out


def _own_corruption(run: RunData) -> list[str]:
    """Corruption-trained models on their own corruption vs clean GRPO (finding 6)."""
    out: list[str] = []
    for model in [m for m in run.corruption_trained if m in run.eval_conditions and m in EVAL_LONG]:
        for b in run.benchmarks:
            a, r = run.cell(model, b, "test", model), run.cell("none", b, "test", model)
            g = macro_paired_diff({b: a}, {b: r}) if a and r else None
            if g is None:
                continue
            nums = f"{pct(g['accuracy_a'])}% vs {pct(g['accuracy_b'])}%, {signed(g['diff'])} points, {_ci_words(g['ci95'])}"
            if excludes_zero(g["ci95"]):
                word = "above" if g["diff"] > 0 else "below"
                out.append(
                    f"Under {EVAL_LONG[model]} on {b}, {run.label(model)} scored {word} clean GRPO ({nums})."
                )
            else:
                out.append(
                    f"Under {EVAL_LONG[model]} on {b}, {run.label(model)} is within noise of clean GRPO ({nums})."
                )
    return out


def _reward_control(run: RunData) -> list[str]:
    """Clean GRPO against its random-reward control (the same recipe, the accuracy reward a coin
    flip): whether clean GRPO's result came from the reward signal or from training alone."""
    if RANDOM_REWARD not in run.train_conditions or "none" not in run.train_conditions:
        return []
    key = "AVG" if len(run.benchmarks) > 1 else (run.benchmarks[0] if run.benchmarks else None)
    vs = _vs_grpo(run, RANDOM_REWARD, key) if key else None
    if vs is None:
        return []
    where = "on average" if key == "AVG" else f"on {key}"
    control = run.label(RANDOM_REWARD)
    diff, ci = -vs["diff"], _negated(vs["ci95"])  # clean GRPO minus the control
    nums = f"{signed(diff)} points, {_ci_words(ci)}"
    if excludes_zero(ci):
        word = "above" if diff > 0 else "below"
        return [
            f"Clean GRPO scored {word} its random-reward control ({control}) {where} on clean "
            f"test items ({nums}): the reward signal, not training alone, made that difference."
        ]
    return [
        f"Clean GRPO and its random-reward control ({control}) differ {where} within noise on "
        f"clean test items ({nums}): this run does not separate the reward signal's effect from "
        "that of training alone."
    ]


def _train_vs_test(run: RunData, gaps: Gaps) -> list[str]:
    """Train slice vs test split, clean, for the first trained model: the gap, and whether it is
    wider than base's (the two splits hold different items; each is paired with base)."""
    out: list[str] = []
    for model in run.train_conditions[:1]:
        for b, by_model in gaps.items():
            g, base = by_model.get(model), by_model.get("base")
            if g is None:
                continue
            head = (
                f"{run.label(model)} scored {pct(g['train'])}% on a {g['n_train']}-item slice of "
                f"the {b} train split against {pct(g['test'])}% on its test split"
            )
            if g["gap_vs_base"] is None or base is None:
                out.append(f"{head} (clean; different items, so no paired test).")
                continue
            nums = f"{_ci_words(g['ci95'])}; each split paired with base on its items"
            if excludes_zero(g["ci95"]):
                word = "wider" if g["gap_vs_base"] > 0 else "narrower"
                out.append(
                    f"{head} (clean): a gap of {signed(g['gap'])} points, "
                    f"{pct(abs(g['gap_vs_base']))} points {word} than base's "
                    f"{signed(base['gap'])} ({nums})."
                )
            else:
                out.append(
                    f"{head} (clean): a gap of {signed(g['gap'])} points, within noise of base's "
                    f"{signed(base['gap'])} (difference {signed(g['gap_vs_base'])} points, {nums})."
                )
    return out


def _gain_sources(run: RunData, sources: Sources) -> list[str]:
    """Which step of a traced answer moved most for clean GRPO vs base (clean test): reading,
    computing or format, among the changes whose CI excludes 0."""
    out: list[str] = []
    for (model, b), g in sources.items():
        if model != "none":
            continue
        comps = {k: g[k] for k in ("read", "compute", "format") if g.get(k)}
        if not comps:
            continue
        parts = {
            k: f"{SOURCE_HEADS[k]} ({signed(c['diff'])} points, {_ci_words(c['ci95'])})"
            for k, c in comps.items()
        }
        moved = [k for k, c in comps.items() if excludes_zero(c["ci95"])]
        label = run.label(model)
        if not moved:
            out.append(
                f"{label}'s changes vs base on {b} (test, clean) in "
                + _and([parts[k] for k in comps])
                + " are all within noise."
            )
            continue
        top = max(moved, key=lambda k: abs(comps[k]["diff"]))
        c = comps[top]
        word = "rose by" if c["diff"] > 0 else "fell by"
        ci = c["ci95"] if c["diff"] > 0 else _negated(c["ci95"])
        rest = [parts[k] for k in comps if k != top]
        out.append(
            f"Of {label}'s change vs base on {b} (test, clean), {SOURCE_HEADS[top]} moved most: "
            f"its {_RATE[top]} {word} {pct(abs(c['diff']))} points, from {pct(c['b'])}% to "
            f"{pct(c['a'])}% "
            f"({_ci_words(ci)})" + (f"; {_and(rest)} moved less." if rest else ".")
        )
    return out


_RATE = {"read": "accuracy", "compute": "accuracy", "format": "rate"}


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def reading(
    run: RunData,
    cells: Cells,
    diag: Diagnostics,
    sources: Sources | None = None,
    gaps: Gaps | None = None,
) -> list[str]:
    """Plain sentences stating what the numbers show; only CIs that exclude 0 are called gains/drops.
    `sources` and `gaps` (tables.gain_sources_all, tables.train_test_gaps) are computed here when
    not given."""
    return [
        *_vs_base(run, cells),
        *_gain_kept(run, cells),
        *_gain_sources(run, gain_sources_all(run) if sources is None else sources),
        *_blank_by_version(run, diag),
        *_blank_raised(run, diag),
        *_answered_anyway(run, diag),
        *_own_corruption(run),
        *_reward_control(run),
        *_train_vs_test(run, train_test_gaps(run) if gaps is None else gaps),
    ]
