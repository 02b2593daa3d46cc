"""scripts/grader_agreement.py: our grader vs mathruler (EasyR1's) on a run's responses and on
the real-format fixtures, with disagreements counted by kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("mathruler.grader", reason='the graders extra: pip install -e ".[graders]"')

ROOT = Path(__file__).resolve().parents[1]


def _record(i, response, gold, kind, correct):
    return {
        "id": f"synth-test-{i:06d}",
        "answer_kind": kind,
        "response": response,
        "gold": gold,
        "correct": correct,
    }


def test_a_run_and_the_fixtures_are_compared_by_kind(tmp_path, capsys, load_script):
    run = tmp_path / "run"
    (run / "eval/base/synth-test").mkdir(parents=True)
    (run / "manifest.json").write_text("{}")
    records = [
        _record(0, "<think>3 + 4 = 7.</think> \\boxed{7}", "7", "number", True),  # both right
        _record(1, "<think>.</think> \\boxed{8}", "7", "number", False),  # both wrong
        _record(2, "<think>.</think> \\boxed{bar B}", "B", "choice", True),  # ours only
    ]
    (run / "eval/base/synth-test/records.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records)
    )
    assert load_script("grader_agreement").main([str(run), "--fixtures"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["sources"]["eval"] == {
        "n": 3,
        "agree": 2,
        "ours_correct": 2,
        "mathruler_correct": 1,
    }
    kinds = result["disagreements"]
    assert kinds["ours only / choice / choice answered with option text or extra words"] >= 1
    # every real-format fixture item was graded, its boxed gold accepted by both graders
    fixture = result["sources"]["fixture"]
    assert fixture["n"] > 50 and fixture["mathruler_correct"] <= fixture["ours_correct"]


def test_not_a_run_folder_is_refused(tmp_path, capsys, load_script):
    assert load_script("grader_agreement").main([str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
