"""How often our grader and mathruler (EasyR1's grader) agree, response by response.

    python scripts/grader_agreement.py RUN_DIR [RUN_DIR ...] [--fixtures] [--show 5]

For every response of each run (evaluation records under eval/, training rollouts under train/),
our verdict (what the run recorded) is compared with mathruler's
`grade_answer(extract_boxed_content(response), gold)`, EasyR1's math accuracy. `--fixtures` also
grades, for every item of the real-format benchmark fixtures (tests/bench_rows), the answers a
model typically writes: the gold in \\boxed{}, a multiple-choice item answered with its option
text, a number with its unit, the gold without a box. Disagreements are counted by kind and the
first few of each kind are printed. Needs the `graders` extra (pip install -e ".[graders]").

mathruler compares boxed strings: a letter gold cannot match an answer given as option text, and
it does not know an item's unit or options. Our grader reads them (hallucue_mlx.grading), so
"ours right, mathruler wrong" on such kinds is expected and listed, not hidden.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Verdict:
    source: str  # "eval", "train" or "fixture"
    item_id: str
    answer_kind: str
    response: str
    gold: str
    ours: bool
    theirs: bool


def mathruler_correct(response: str, gold: str) -> bool:
    from mathruler.grader import extract_boxed_content, grade_answer

    return bool(grade_answer(extract_boxed_content(response), gold))


def kind_of(v: Verdict) -> str:
    """A disagreement's kind: which grader said yes, the answer kind, and a likely reason."""
    from hallucue_mlx.grading import extract_answer

    who = "ours only" if v.ours else "mathruler only"
    pred = extract_answer(v.response)
    if "\\boxed" not in v.response:
        why = "no \\boxed{}"
    elif pred is None or not pred.strip():
        why = "empty box"
    elif v.answer_kind == "choice" and pred.strip().upper() != v.gold.strip().upper():
        why = "choice answered with option text or extra words"
    elif v.answer_kind == "number" and any(c.isalpha() for c in pred.replace("\\", "")):
        why = "number with a unit or words"
    elif v.answer_kind == "number":
        why = "number format (LaTeX, fraction, rounding)"
    else:
        why = "other"
    return f"{who} / {v.answer_kind} / {why}"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def run_verdicts(run: Path) -> list[Verdict]:
    """Every evaluation record and training rollout of a run folder, with both verdicts."""
    out: list[Verdict] = []
    for rec_path in sorted(run.glob("eval/*/*/records.jsonl")):
        for r in _jsonl(rec_path):
            out.append(
                Verdict(
                    "eval",
                    r["id"],
                    r.get("answer_kind", "free"),
                    r["response"],
                    str(r["gold"]),
                    bool(r["correct"]),
                    mathruler_correct(r["response"], str(r["gold"])),
                )
            )
    rollouts = sorted(run.glob("train/*/rollouts.jsonl"))
    if rollouts:
        items = _training_items(run)
        for path in rollouts:
            for r in _jsonl(path):
                item = items.get(r["item_id"])
                if item is None:
                    continue
                out.append(
                    Verdict(
                        "train",
                        item.id,
                        item.answer_kind,
                        r["text"],
                        item.answer,
                        bool(r["accuracy"] > 0),
                        mathruler_correct(r["text"], item.answer),
                    )
                )
    return out


def _training_items(run: Path) -> dict[str, Any]:
    """The run's training items by id, loaded as the grid loaded them (its manifest's config)."""
    from hallucue_mlx.config import from_dict
    from hallucue_mlx.grid import load_spec

    manifest = json.loads((run / "manifest.json").read_text())
    cfg = from_dict(manifest["config"])
    spec = cfg.data.train
    items = load_spec(spec, spec.split or "train", "data.train", cfg.data.seed)
    return {it.id: it for it in items}


def fixture_verdicts() -> list[Verdict]:
    """Typical answers to every item of the real-format fixtures, graded by both graders."""
    import datasets

    from hallucue_mlx.data.bench import load_benchmark
    from hallucue_mlx.grading import is_correct

    datasets.disable_progress_bars()
    sys.path.insert(0, str(ROOT / "tests"))
    import bench_rows  # the fixtures' builders (tests/bench_rows)

    out: list[Verdict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (build, split) in bench_rows.BUILDERS.items():
            path = build(Path(tmp) / name)
            for item in load_benchmark(name, split or None, path=str(path)):
                answers = [f"<think>...</think> \\boxed{{{item.answer}}}", item.answer]
                if item.answer_kind == "choice" and item.choices:
                    letter = item.answer.strip().upper()
                    idx = ord(letter) - ord("A")
                    if 0 <= idx < len(item.choices):
                        answers.append(f"\\boxed{{{item.choices[idx]}}}")
                if item.unit:
                    answers.append(f"\\boxed{{{item.answer} {item.unit}}}")
                for resp in answers:
                    ours = is_correct(_extract(resp), item)
                    theirs = mathruler_correct(resp, item.answer)
                    out.append(
                        Verdict(
                            "fixture",
                            f"{name}/{item.id}",
                            item.answer_kind,
                            resp,
                            item.answer,
                            ours,
                            theirs,
                        )
                    )
    return out


def _extract(response: str) -> str | None:
    from hallucue_mlx.grading import extract_answer

    return extract_answer(response)


def summarize(verdicts: list[Verdict]) -> dict[str, Any]:
    """Agreement per source, and the disagreements grouped by kind."""
    by_source: dict[str, list[Verdict]] = defaultdict(list)
    for v in verdicts:
        by_source[v.source].append(v)
    sources = {
        s: {
            "n": len(vs),
            "agree": sum(v.ours == v.theirs for v in vs),
            "ours_correct": sum(v.ours for v in vs),
            "mathruler_correct": sum(v.theirs for v in vs),
        }
        for s, vs in by_source.items()
    }
    kinds = Counter(kind_of(v) for v in verdicts if v.ours != v.theirs)
    return {"sources": sources, "disagreements": dict(kinds.most_common())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*", type=Path, help="run folders (hallucue-mlx run's output)")
    ap.add_argument("--fixtures", action="store_true", help="also grade the real-format fixtures")
    ap.add_argument("--show", type=int, default=3, help="examples printed per disagreement kind")
    args = ap.parse_args(argv)
    try:
        import mathruler.grader  # noqa: F401
    except ImportError as e:
        print(
            f'error: {e}; install the graders extra: pip install -e ".[graders]"', file=sys.stderr
        )
        return 2
    if not args.runs and not args.fixtures:
        ap.error("give a run folder, --fixtures, or both")
    verdicts: list[Verdict] = []
    for run in args.runs:
        if not (run / "manifest.json").is_file():
            print(f"error: {run} is not a run folder (no manifest.json)", file=sys.stderr)
            return 2
        verdicts += run_verdicts(run)
    if args.fixtures:
        verdicts += fixture_verdicts()
    result = summarize(verdicts)
    print(f"{'source':<8} {'responses':>9} {'agree':>7} {'ours right':>10} {'mathruler right':>15}")
    for s, d in result["sources"].items():
        pct = 100 * d["agree"] / max(d["n"], 1)
        print(
            f"{s:<8} {d['n']:>9} {pct:>6.1f}% {d['ours_correct']:>10} {d['mathruler_correct']:>15}"
        )
    print("\ndisagreements by kind:")
    examples: dict[str, list[Verdict]] = defaultdict(list)
    for v in verdicts:
        if v.ours != v.theirs:
            examples[kind_of(v)].append(v)
    for kind, n in result["disagreements"].items():
        print(f"  {n:>6}  {kind}")
        for v in examples[kind][: args.show]:
            resp = v.response.replace("\n", " ")[-90:]
            print(f"          {v.item_id}: gold {v.gold!r}; ...{resp!r}")
    if not result["disagreements"]:
        print("  none")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
