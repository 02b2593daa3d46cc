"""scripts/working.py: does a model write its additions out, and how often is it right when it does."""

import json


def _rec(chain, response, correct, read=True):
    return {"trace_chain": chain, "response": response, "correct": correct, "trace_read": read}


def test_working_summary_splits_written_from_skipped(load_script):
    summary = load_script("working").working_summary
    recs = [
        _rec(1, "<think>The digit is 7. 7 + 4 = 11.</think> \\boxed{11}", True),
        _rec(2, "<think>The digit is 7.</think> \\boxed{14}", False, read=True),
        _rec(2, "<think>The digit is 3. 3 + 4 = 7. 7 + 1 = 8.</think> \\boxed{8}", False, False),
        _rec(0, "<think>Bar A is the tallest.</think> \\boxed{A}", True, None),
    ]
    s = summary(recs)
    assert (s["n"], s["addition_items"], s["accuracy"]) == (4, 3, 0.5)
    assert s["wrote_working"] == 0.6667 and s["accuracy_written"] == 0.5
    assert s["accuracy_skipped"] == 0.0 and s["accuracy_one_addition"] == 1.0
    assert s["accuracy_chain"] == 0.0 and s["read_right"] == 0.6667


def test_working_runs_on_the_shipped_model(load_script, tmp_path, capsys):
    out = tmp_path / "w.jsonl"
    assert load_script("working").main(["--n", "12", "--out", str(out)]) == 0
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["adapter"] is None and row["n"] == 12 and 0 <= row["accuracy"] <= 1
    assert row["addition_items"] > 0 and 0 <= row["wrote_working"] <= 1
    assert "wrote working" in capsys.readouterr().out
