"""Where an answer went right or wrong: the think text of a synth response scored step by step.

synth's think format is fixed ("The digit is 7. 7 + 4 = 11. 11 + 3 = 14."), and every item
stores the facts it was drawn from, so a response can be scored for reading the image (the fact
it states) and for each addition (right sum, right number added, chained from the previous
result), apart from its final answer and its format. This is what lets the report say whether
GRPO improved reading or computing under each training corruption. Items without stored facts
(real benchmarks) get None everywhere: nothing to check against.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from hallucue_mlx.data.item import Item

_STEP = re.compile(r"(\d+)\s*\+\s*(\d+)\s*=\s*(\d+)")
_READ = {
    "count": re.compile(r"(?:There (?:are|is)|I count) (\d+) \w+"),
    "digit": re.compile(r"The digit is (\d+)"),
    "bars": re.compile(r"Bar ([A-D]) is the tallest"),
    "color": re.compile(r"The \w+ is (\w+)\."),
}


@dataclass(frozen=True)
class Trace:
    """One response's steps against its item's facts; None where there is nothing to check."""

    chain: int  # additions the item asks for (0: none)
    read: bool | None  # the think text states the visual fact right (None: not stated / no facts)
    steps_ok: int  # additions written right, in order, before the first wrong one
    computed: bool | None  # every addition right, from the fact the response itself read

    def as_record(self) -> dict[str, Any]:
        return {f"trace_{k}": v for k, v in asdict(self).items()}


def _fact(item: Item) -> str | None:
    facts = item.meta.get("facts") or {}
    if item.task == "count":
        return str(facts.get("count"))
    if item.task == "digit":
        return str(facts.get("digit"))
    if item.task == "bars" and "heights" in facts:
        h = facts["heights"]
        return max(h, key=h.get)
    if item.task == "color":
        return facts.get("color")
    return None


def think_text(text: str) -> str:
    """A response's reasoning: inside <think>...</think>, else everything before the \\boxed."""
    m = re.search(r"<think>(.*?)</think>", text, re.S)
    return m.group(1) if m else text.split("\\boxed", 1)[0]


def trace(text: str, item: Item) -> Trace:
    """Score a response's reading and additions against the facts `item` was drawn from."""
    facts = item.meta.get("facts")
    if item.benchmark != "synth" or not facts or item.task not in _READ:
        return Trace(chain=0, read=None, steps_ok=0, computed=None)
    addends = list(facts.get("addends") or [])
    think = think_text(text)
    m = _READ[item.task].search(think)
    stated = m.group(1) if m else None
    read = None if stated is None else stated == _fact(item)
    if not addends:
        return Trace(chain=0, read=read, steps_ok=0, computed=None)
    steps = _STEP.findall(think)
    ok, x = 0, int(stated) if stated is not None and stated.isdigit() else None
    for (a, b, c), want in zip(steps, addends):
        if x is None or int(a) != x or int(b) != want or int(a) + int(b) != int(c):
            break
        ok, x = ok + 1, int(c)
    computed = ok == len(addends) and len(steps) == len(addends)
    return Trace(chain=len(addends), read=read, steps_ok=ok, computed=computed)


def outcome(record: dict[str, Any]) -> str:
    """Where one graded record stands: "correct", "declined", "format" (no parseable answer),
    "read" (the visual fact stated wrong), "compute" (read right, an addition wrong), "final"
    (steps right, the boxed answer not), or "wrong" (nothing to trace)."""
    if record.get("correct"):
        return "correct"
    if record.get("declined"):
        return "declined"
    if not record.get("format_ok"):
        return "format"
    if record.get("trace_read") is False:
        return "read"
    if record.get("trace_computed") is False:
        return "compute"
    if record.get("trace_read") is not None or record.get("trace_computed") is not None:
        return "final"
    return "wrong"


OUTCOMES = ("correct", "declined", "format", "read", "compute", "final", "wrong")
