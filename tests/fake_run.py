"""A small, realistic run folder with known correctness patterns, so the report can be tested
without training or evaluating anything.

Layout (as the grid writes it): manifest.json; results.json; train/<condition>/metrics.jsonl;
eval/<model>/<benchmark>-<split>/records.jsonl and summary.json.

Who is right is fixed by a rule with no randomness: item i of a cell has the rank
u_i = ((i * 37) % n) / n (a permutation of 0, 1/n, ... for n not divisible by 37) and is correct
when u_i < skill(model) * factor(eval condition, version). Skill sets are nested, so clean GRPO is
right on every item the base model is right on, plus more; tests count correct records themselves.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hallucue_mlx.corrupt import CORRUPTIONS
from hallucue_mlx.metrics import summarize

TRAIN_CONDITIONS = CORRUPTIONS
EVAL_CONDITIONS = CORRUPTIONS
MODELS = ("base", *TRAIN_CONDITIONS)
SYNTH_VERSIONS = ("text_dominant", "text_lite", "vision_dominant", "vision_only")

# Clean test skill per model: GRPO gains ~10 points, BI/RI keep part of it, TR about nothing.
SKILL = {"base": 0.48, "none": 0.58, "blank": 0.54, "random": 0.55, "text_removal": 0.49}
# How much of the skill survives each evaluation corruption, by modality version ("" = no versions).
FACTOR = {
    "none": {},
    "blank": {
        "text_dominant": 0.97,
        "text_lite": 0.8,
        "vision_dominant": 0.5,
        "vision_only": 0.2,
        "": 0.6,
    },
    "random": {
        "text_dominant": 0.97,
        "text_lite": 0.85,
        "vision_dominant": 0.55,
        "vision_only": 0.3,
        "": 0.65,
    },
    "text_removal": {
        "text_dominant": 0.6,
        "text_lite": 0.7,
        "vision_dominant": 0.9,
        "vision_only": 1.0,
        "": 0.8,
    },
}
CONTROL, SKILL_CONTROL = "random_reward", 0.49  # the random-reward control: about base's skill
TRAIN_SPLIT_BONUS = 0.06  # trained models score higher on the slice of their own training split


def rank(i: int, n: int) -> float:
    return ((i * 37) % n) / n


def is_correct(
    model: str,
    cond: str,
    i: int,
    n: int,
    version: str,
    split: str = "test",
    skill: dict | None = None,
) -> bool:
    s = (skill or SKILL)[model]
    skill_here = s + (TRAIN_SPLIT_BONUS if split == "train" and model != "base" else 0.0)
    return rank(i, n) < skill_here * FACTOR[cond].get(version, 1.0)


def _record(
    model: str, bench: str, split: str, cond: str, i: int, n: int, skill: dict | None
) -> dict[str, Any]:
    versions = SYNTH_VERSIONS if bench == "synth" else ("",)
    version = versions[i % len(versions)]
    choice = bench != "synth" or i % 2 == 0
    gold = "ABCD"[i % 4] if choice else str(3 + i % 5)
    ok = is_correct(model, cond, i, n, version, split, skill)
    if ok:
        extracted: str | None = gold
    elif cond != "none" and i % 5 == 0:
        extracted = "cannot be determined"  # an abstention: not a hallucination
    elif i % 7 == 0:
        extracted = None  # no boxed answer
    else:
        extracted = "ABCD"[(i + 1) % 4] if choice else str(9 + i % 3)
    return {
        "id": f"{bench}-{split}-{i:04d}",
        "benchmark": bench,
        "version": version,
        "task": ("count", "digit", "bars", "color")[i % 4] if bench == "synth" else "geometry",
        "corruption": cond,
        "response": f"<think>...</think> \\boxed{{{extracted}}}" if extracted else "I think",
        "extracted": extracted,
        "gold": gold,
        "correct": ok,
        "format_ok": extracted is not None,
        "response_tokens": 20 + (i * 13) % 30 + (5 if model != "base" else 0),
        "truncated": False,
        "grader_error": None,
        "n_choices": 4 if choice else 0,
        # text removal finds no condition in a vision-only question: such items stay unchanged
        "corruption_changed": cond != "none"
        and not (cond == "text_removal" and version == "vision_only"),
        # synth's rule (corrupt.info_removed): vision-dominant/-only items need the image; real
        # benchmarks here say nothing
        "info_removed": (
            cond in ("blank", "random") and version in ("vision_dominant", "vision_only")
        )
        if bench == "synth"
        else None,
    }


def _curve(cond: str, steps: int) -> list[dict[str, Any]]:
    target = {"none": 0.75, "blank": 0.6, "random": 0.65, "text_removal": 0.55}.get(cond, 0.45)
    order = TRAIN_CONDITIONS.index(cond) if cond in TRAIN_CONDITIONS else len(TRAIN_CONDITIONS)
    rows: list[dict[str, Any]] = []
    for s in range(1, steps + 1):
        acc = 0.4 + (target - 0.4) * (1 - math.exp(-s / 12)) + 0.04 * math.sin(s * 1.7 + len(cond))
        fmt = min(1.0, 0.8 + s / 100)
        rows.append(
            {
                "step": s,
                "reward": 0.9 * acc + 0.1 * fmt,
                "reward_std": 0.3,
                "frac_reward_zero_std": 0.2,
                "reward/accuracy/mean": acc,
                "reward/format/mean": fmt,
                "accuracy": acc,
                "format": fmt,
                "loss": 0.0,
                "kl": 0.002 * s * (1 + 0.15 * order),
                "entropy": 0.9,
                "completions/mean_length": 60 - (0.3 + 0.03 * len(cond)) * s + 3 * math.cos(s),
            }
        )
        if s % 10 == 0:
            ev = {"step": s, "event": "eval", "eval/none/accuracy": acc - 0.05}
            if cond in TRAIN_CONDITIONS and cond != "none":
                ev[f"eval/{cond}/accuracy"] = acc - 0.1
            rows.append(ev)
    return rows


def make_fake_run(
    root: Path,
    *,
    n_test: dict[str, int] | None = None,
    n_train: int = 80,
    steps: int = 40,
    missing_train: tuple[str, ...] = (),
    missing_eval: tuple[tuple[str, str], ...] = (),
    results: bool = True,
    skill: dict[str, float] | None = None,
    group_filter: bool = False,
    control: bool = False,
) -> Path:
    """Write a run folder under root and return it.

    missing_train: train conditions with neither training metrics nor evaluation (as if not run);
    missing_eval: (model, eval condition) pairs left out of every records file of that model;
    skill: clean test skill per model, replacing SKILL. group_filter: the config trains with
    train.drop_zero_std_groups (the report marks such models). control: the random-reward
    control (model random_reward, skill SKILL_CONTROL unless `skill` names it) is trained too.
    """
    skill = {**SKILL, **(skill or {})}
    n_test = n_test or {"synth": 200, "mathvista": 120}
    benches = list(n_test)
    root.mkdir(parents=True, exist_ok=True)
    trained = [c for c in TRAIN_CONDITIONS if c not in missing_train]
    if control:
        skill.setdefault(CONTROL, SKILL_CONTROL)
        trained.append(CONTROL)
    manifest = {
        "config": {
            "model": "hallucue-tiny",
            "seed": 0,
            "benchmarks": benches,
            "train": {"drop_zero_std_groups": group_filter},
        },
        "train_conditions": list(TRAIN_CONDITIONS),
        "eval_conditions": list(EVAL_CONDITIONS),
        "versions": {"hallucue_mlx": "0.1.0"},
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    for cond in trained:
        d = root / "train" / cond
        d.mkdir(parents=True, exist_ok=True)
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _curve(cond, steps)))
    cells: list[dict[str, Any]] = []
    for model in ("base", *trained):
        splits = [(b, "test", n) for b, n in n_test.items()] + [("synth", "train", n_train)]
        for bench, split, n in splits:
            recs = [
                _record(model, bench, split, cond, i, n, skill)
                for cond in EVAL_CONDITIONS
                if (model, cond) not in missing_eval
                for i in range(n)
            ]
            d = root / "eval" / model / f"{bench}-{split}"
            d.mkdir(parents=True, exist_ok=True)
            (d / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
            summary = summarize(recs)
            (d / "summary.json").write_text(json.dumps(summary, indent=2))
            for cond, s in summary.items():
                cells.append(
                    {
                        "train": model,
                        "eval": cond,
                        "benchmark": bench,
                        "split": split,
                        **{
                            k: s[k]
                            for k in (
                                "n",
                                "accuracy",
                                "ci95",
                                "format_rate",
                                "mean_response_tokens",
                            )
                        },
                    }
                )
    if results:
        out = {
            "model": "hallucue-tiny",
            "benchmarks": benches,
            "train_conditions": list(TRAIN_CONDITIONS),
            "eval_conditions": list(EVAL_CONDITIONS),
            **({"models": ["base", *TRAIN_CONDITIONS, CONTROL]} if control else {}),
            "cells": cells,
            "timing": {"total_s": 1234.5, "cells": {"base/synth": 12.0}},
        }
        (root / "results.json").write_text(json.dumps(out, indent=2))
    return root
