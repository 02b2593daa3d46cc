"""Answer extraction, grading and the GRPO reward.

Reward = accuracy_weight * accuracy + format_weight * format, 0.9 / 0.1 by default as in EasyR1.
Grading is strict on purpose: loose substring graders get hacked (empty answers, "A or B or C").

- extraction: the content of the last <answer>...</answer> (and the last \\boxed{} inside it if any),
  else the last \\boxed{} / \\fbox{} of the response (nested braces allowed), else nothing.
- choice items: the gold is a letter; the prediction may be a letter ("B", "(B)", "B.", "option B",
  "B. 12 cm") or the text of one option. Empty answers and several options ("A or B") are wrong.
- number items: a single number, with units, thousands commas, "%", "x = 5" and LaTeX (\\frac,
  \\sqrt, \\pi) understood; compared within half a unit of the item's `precision` decimals if set,
  else with relative tolerance 1e-4. A "%" on either side also allows the /100 reading (25% = 0.25);
  without one, 0.25 does not equal 25.
- free items: numbers as above, else math-verify equivalence, else normalised string equality.

math-verify's own timeouts use signal.alarm, which raises outside the main thread; they are turned
off. Every bounded thing is bounded: a grading that needs math-verify or sympy (whose evalf of
10^{10^{10^{10}}} never returns, and whose C code ignores Ctrl-C) runs in a small persistent worker
process, killed and restarted when it passes the time limit; the common short answers (an option
letter, a plain number) are graded here, on a path whose cost is bounded by their length. A
grading that raises or times out is never a silent 0: it sets `Grade.grader_error`, and the module
counts them (`grader_error_count()`) so training and evaluation can report them. The gold check
at load shares the limit and names the item.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from multiprocessing.connection import Connection
from typing import Any

import math_verify
import sympy

from hallucue_mlx.data.common import BenchmarkError
from hallucue_mlx.data.item import LETTERS, Item

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
# Letters allowed when a choice item's options live only in the image (MathVerse vision-only).
_DEFAULT_CHOICE_LETTERS = "ABCDEFGH"
# EasyR1's format reward: reasoning in <think></think>, then a \boxed{} answer.
FORMAT_RE = re.compile(r"<think>.*</think>.*\\boxed\{.*\}.*", re.DOTALL)


class _DropTimeoutWarning(logging.Filter):
    # We disable math-verify's timeouts on purpose and bound time ourselves.
    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutWarning())


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Grade:
    """How one response was graded against one item.

    `extracted` is None when no answer was found; `grader_error` is set (and `correct` False)
    when grading itself failed, so the caller can tell a broken grader from a wrong answer.
    """

    extracted: str | None
    correct: bool
    format_ok: bool
    grader_error: str | None = None


@dataclass(frozen=True)
class RewardConfig:
    """Reward weights; `function` ("pkg.module:function") replaces the built-in reward."""

    accuracy_weight: float = 0.9
    format_weight: float = 0.1
    function: str | None = None

    def __post_init__(self) -> None:
        for name in ("accuracy_weight", "format_weight"):
            w = getattr(self, name)
            if not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0):
                raise ValueError(f"reward {name} must be a finite number >= 0, got {w!r}")
        if self.function is not None and ":" not in self.function:
            raise ValueError(
                f"reward function {self.function!r} must be an import path 'pkg.module:function'"
            )


@dataclass(frozen=True)
class Reward:
    """The scalar reward and its parts, with the grade behind it (logged per episode)."""

    total: float
    accuracy: float
    format: float
    grade: Grade


# ----------------------------------------------------------------------------- extraction


def _braced(text: str, open_idx: int) -> tuple[str, int] | None:
    """Content of the brace group opening at text[open_idx] and the index after it; None if unclosed."""
    depth = 0
    for i in range(open_idx, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[open_idx + 1 : i], i + 1
    return None


def _last_boxed(text: str) -> str | None:
    last = None
    for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        got = _braced(text, m.end() - 1)
        if got is not None:
            last = got[0]
    return last


def extract_answer(response: str) -> str | None:
    """The final answer in a response: <answer> tag content (its last \\boxed{} if any), else the
    last \\boxed{}/\\fbox{}; None when there is neither. The result is stripped, possibly ""."""
    tags = re.findall(r"<answer>(.*?)</answer>", response, flags=re.DOTALL)
    if tags:
        inner = _last_boxed(tags[-1])
        return (inner if inner is not None else tags[-1]).strip()
    boxed = _last_boxed(response)
    return None if boxed is None else boxed.strip()


def format_ok(response: str) -> bool:
    """EasyR1's format check: <think>...</think> then \\boxed{...} (surrounding blanks ignored)."""
    return FORMAT_RE.fullmatch(response.strip()) is not None


# ----------------------------------------------------------------------------- normalisation

_WRAPPERS = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")


def _clean(s: str) -> str:
    """Strip LaTeX decoration that never changes an answer's meaning."""
    s = s.strip().strip("$").strip()
    for _ in range(3):  # nested wrappers like \textbf{\text{B}}
        s = _WRAPPERS.sub(r"\1", s)
    s = re.sub(r"\\(?:left|right|displaystyle)\b", "", s)
    s = re.sub(r"\\[,;:! ]|~", " ", s)
    s = (
        s.replace("\\%", "%")
        .replace("\\$", "")
        .replace("\\dfrac", "\\frac")
        .replace("\\tfrac", "\\frac")
    )
    return re.sub(r"\s+", " ", s).strip()


def _norm_text(s: str) -> str:
    s = _clean(s).lower().rstrip(".").strip()
    return re.sub(r"\s+", " ", s)


# ----------------------------------------------------------------------------- numbers

_NUM = r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|[-+−]?\.\d+"
_NUM_RE = re.compile(rf"({_NUM})(.*)", re.DOTALL)
_FRAC_RE = re.compile(
    rf"([-+−]?)\\frac\s*\{{\s*({_NUM})\s*\}}\s*\{{\s*({_NUM})\s*\}}(.*)", re.DOTALL
)
_SLASH_RE = re.compile(rf"({_NUM})\s*/\s*({_NUM})(.*)", re.DOTALL)
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree|\\circ")
# A unit after a number: words, maybe squared/cubed, maybe per another unit ("m/s", "cm^2").
_UNIT_RE = re.compile(r"(?:[a-zA-Zµ]+\.?(?:\s*\^\s*\{?[23]\}?|[²³]|[23])?(?:\s*/\s*|\s+)?)*")
# Words that join two answers: "5 or 6" is two answers, not a number with a unit.
_JOINERS = {"or", "and", "to"}


def _to_float(num: str) -> float:
    return float(num.replace(",", "").replace("−", "-"))


def _unit_tail(rest: str) -> bool:
    rest = rest.strip()
    if not rest:
        return True
    if _UNIT_RE.fullmatch(rest) is None:
        return False
    return not (_JOINERS & set(re.findall(r"[a-z]+", rest.lower())))


def _plain_number(s: str, unit: str = "") -> tuple[float, bool] | None:
    """(value, had_percent) for a single number with an optional unit; None otherwise."""
    s = _DEGREE_RE.sub(" ", _clean(s))
    # "x = 5", "AB \approx 3.2": the answer is the right-hand side.
    s = re.split(r"=|\\approx|≈", s)[-1].strip()
    if unit and s.lower().endswith(unit.lower()):
        s = s[: -len(unit)].strip()
    s = s.rstrip(".").strip()
    for pattern in (_FRAC_RE, _SLASH_RE, _NUM_RE):
        m = pattern.fullmatch(s)
        if m is None:
            continue
        if pattern is _NUM_RE:
            value, rest = _to_float(m.group(1)), m.group(2)
        elif pattern is _FRAC_RE:
            den = _to_float(m.group(3))
            if den == 0:
                return None
            sign = -1.0 if m.group(1) in ("-", "−") else 1.0
            value = sign * _to_float(m.group(2)) / den
            rest = m.group(4)
        else:
            den = _to_float(m.group(2))
            if den == 0:
                return None
            value, rest = _to_float(m.group(1)) / den, m.group(3)
        rest = rest.strip()
        percent = rest.startswith("%")
        if percent:
            rest = rest[1:]
        if _unit_tail(rest):
            return value, percent
    return None


def _mv_parse(s: str, raise_on_error: bool) -> list[Any]:
    # Wrap in \boxed{} so math-verify reads bare LaTeX ("\sqrt{3}", "x^2+1") as the answer.
    return math_verify.parse(f"\\boxed{{{s}}}", parsing_timeout=None, raise_on_error=raise_on_error)


def _plain_values(s: str, unit: str = "") -> list[float] | None:
    """The candidate values of a plain (non-LaTeX) number answer; None when it is not one."""
    plain = _plain_number(s, unit)
    if plain is None:
        return None
    value, percent = plain
    return [value, value / 100.0] if percent else [value]


def _numbers(s: str, unit: str = "", *, is_gold: bool = False) -> list[float] | None:
    """Candidate values of a single-number answer (two when a '%' allows the /100 reading)."""
    plain = _plain_values(s, unit)
    if plain is not None:
        return plain
    # LaTeX numbers: \sqrt{3}, 2\pi, \frac{\sqrt{3}}{2}.
    parsed = _mv_parse(_DEGREE_RE.sub(" ", _clean(s)), raise_on_error=is_gold)
    expr = parsed[0] if parsed else None
    if isinstance(expr, sympy.Expr) and expr.is_number:
        value = complex(expr.evalf())
        if value.imag == 0 and math.isfinite(value.real):
            return [value.real]
    return None


def _close(a: float, b: float, precision: int | None) -> bool:
    if precision is not None:
        # MathVista's precision is a number of decimals: within half a unit of the last one.
        return abs(a - b) <= 0.5 * 10.0 ** (-precision) * (1 + 1e-9)
    return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-9)


def _numbers_match(pred: list[float], gold: list[float], precision: int | None) -> bool:
    return any(_close(p, g, precision) for p in pred for g in gold)


# ----------------------------------------------------------------------------- graders


def _single_letter(s: str, letters: str) -> str | None:
    """The one option letter a prediction names, in the forms models use; None otherwise."""
    t = _clean(s).rstrip(".").strip()
    m = re.fullmatch(
        r"(?:(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)\s*(?:is)?\s*[:：]?\s*)?"
        r"\(?\s*([A-Za-z])\s*\)?\s*[.:)]?",
        t,
        flags=re.IGNORECASE,
    )
    if m is None:
        # "B. 12 cm", "(B) 12 cm", "B: 12 cm": a letter, then its option text.
        m = re.fullmatch(r"(?:\(([A-Z])\)|([A-Z])[.:)])\s+\S.*", t, flags=re.DOTALL)
        if m is None:
            return None
        letter = m.group(1) or m.group(2)
    else:
        letter = m.group(1).upper()
    return letter if letter in letters else None


def _several_letters(s: str, letters: str) -> bool:
    """True for lists of options like "A or B", "A, B", "(A) and (C)"."""
    tokens = [
        t.strip("() .")
        for t in re.split(r"[\s,;/&]+|\bor\b|\band\b", _clean(s), flags=re.IGNORECASE)
    ]
    tokens = [t for t in tokens if t]
    return len(tokens) >= 2 and all(len(t) == 1 and t.upper() in letters for t in tokens)


def _option_matches(pred: str, choices: tuple[str, ...], unit: str) -> list[int]:
    """Indices of the options whose text the prediction equals (as text, else as a number/expr)."""
    norm = _norm_text(pred)
    hits = [i for i, c in enumerate(choices) if _norm_text(c) == norm]
    if hits:
        return hits
    pred_nums = _numbers(pred, unit)
    if pred_nums is not None:
        return [
            i
            for i, c in enumerate(choices)
            if (g := _numbers(c, unit)) is not None and _numbers_match(pred_nums, g, None)
        ]
    parsed = _mv_parse(pred, raise_on_error=False)
    if not parsed:
        return []
    return [i for i, c in enumerate(choices) if _mv_verify(_mv_parse(c, False), parsed)]


def _grade_choice(pred: str, item: Item) -> bool:
    letters = LETTERS[: len(item.choices)] if item.choices else _DEFAULT_CHOICE_LETTERS
    gold = _single_letter(item.answer, letters)
    if gold is None:
        hits = _option_matches(item.answer, item.choices, item.unit) if item.choices else []
        if len(hits) != 1:
            raise ValueError(
                f"item {item.id}: gold answer {item.answer!r} of a choice item is neither an option "
                f"letter ({letters[0]}-{letters[-1]}) nor the text of one option; fix the adapter"
            )
        gold = LETTERS[hits[0]]
    letter = _single_letter(pred, letters)
    if letter is not None:
        return letter == gold
    if _several_letters(pred, letters) or not item.choices:
        return False
    hits = _option_matches(pred, item.choices, item.unit)
    return len(hits) == 1 and LETTERS[hits[0]] == gold


def _gold_numbers(item: Item) -> list[float]:
    gold = _numbers(item.answer, item.unit, is_gold=True)
    if gold is None:
        raise ValueError(
            f"item {item.id}: gold answer {item.answer!r} of a number item is not a number; "
            "fix the adapter or mark the item answer_kind='free'"
        )
    return gold


def _mv_verify(gold: list[Any], pred: list[Any]) -> bool:
    if not gold or not pred:
        return False
    return bool(math_verify.verify(gold, pred, timeout_seconds=None, raise_on_error=True))


_MATH_WORDS = {"pi", "inf", "infty", "infinity", "oo", "nan"}


def _is_word_answer(answer: str) -> bool:
    """A gold made of plain words ("yellow", "left side"), graded as text, not as algebra."""
    words = answer.strip().split()
    return (
        bool(words)
        and all(re.fullmatch(r"[A-Za-z][A-Za-z'-]+", w) for w in words)
        and answer.strip().lower() not in _MATH_WORDS
    )


def _grade_free(pred: str, item: Item) -> bool:
    gold_nums = _numbers(item.answer, item.unit, is_gold=True)
    if gold_nums is not None:
        pred_nums = _numbers(pred, item.unit)
        if pred_nums is not None:
            return _numbers_match(pred_nums, gold_nums, item.precision)
    if _is_word_answer(item.answer):
        # math-verify reads words as products of symbols: "wolley" would verify as "yellow".
        return _norm_text(pred) == _norm_text(item.answer)
    gold = _mv_parse(item.answer, raise_on_error=True)
    if _mv_verify(gold, _mv_parse(pred, raise_on_error=False)):
        return True
    return _norm_text(pred) == _norm_text(item.answer) != ""


def gold_problem(item: Item) -> str | None:
    """Why the item's gold answer cannot be graded (None when it can): checked when items are
    loaded, so a bad gold fails fast instead of turning every response into a grader error."""
    answer = item.answer.strip()
    if not answer:
        return "the gold answer is empty; write the answer (the option letter for a choice item)"
    if item.answer_kind == "choice":
        letters = LETTERS[: len(item.choices)] if item.choices else _DEFAULT_CHOICE_LETTERS
        if _single_letter(answer, letters) is not None:
            return None
        hits = _option_matches(answer, item.choices, item.unit) if item.choices else []
        if len(hits) == 1:
            return None
        return (
            f"the gold answer {answer!r} of a choice item is neither an option letter "
            f"({letters[0]}-{letters[-1]}) nor the text of exactly one option; write the letter "
            f"of the correct option"
        )
    if item.answer_kind == "number":
        try:
            ok = _numbers(answer, item.unit, is_gold=True) is not None
        except Exception:  # math-verify raising on the gold is the same problem
            ok = False
        if not ok:
            return (
                f"the gold answer {answer!r} of a number item is not a number; fix it, or set "
                f"answer_kind to 'free' to grade it as an expression or text"
            )
    return None


def is_correct(pred: str | None, item: Item) -> bool:
    """Strict correctness of an extracted answer; raises on a grader or gold-data problem."""
    if pred is None or not pred.strip():
        return False
    if item.answer_kind == "choice":
        return _grade_choice(pred, item)
    if item.answer_kind == "number":
        pred_nums = _numbers(pred, item.unit)
        return pred_nums is not None and _numbers_match(
            pred_nums, _gold_numbers(item), item.precision
        )
    if item.answer_kind == "free":
        return _grade_free(pred, item)
    raise ValueError(f"item {item.id}: unknown answer_kind {item.answer_kind!r}")


# ----------------------------------------------------------------------------- the grading worker

# Answers at most this long may take the in-process fast path: the unit pattern backtracks
# exponentially in the length of a run of letters ("5 aaaa...a!"), about 20 ms at 16 characters.
_FAST_MAX_CHARS = 16
# A fresh worker imports sympy and math-verify: its start is not part of any grading's limit.
_STARTUP_S = 120.0
# The worker is a fresh interpreter (no fork: the parent may hold MLX / Metal state; and not
# multiprocessing's spawn, which re-runs the caller's main script). SIGINT is ignored from its
# first line: Ctrl-C belongs to the parent, which then kills the worker.
_WORKER_CODE = (
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "import sys; from hallucue_mlx.rewards import _serve; _serve(int(sys.argv[1]), int(sys.argv[2]))"
)


def _fast_is_correct(pred: str, item: Item) -> bool | None:
    """is_correct for a short option letter or plain number against a short plain gold, with no
    math-verify or sympy; None when the answer needs the full grader (run in the worker)."""
    if len(pred) > _FAST_MAX_CHARS or len(item.answer) > _FAST_MAX_CHARS or not pred.strip():
        return None
    if item.answer_kind == "choice":
        letters = LETTERS[: len(item.choices)] if item.choices else _DEFAULT_CHOICE_LETTERS
        gold = _single_letter(item.answer, letters)
        if gold is None:
            return None
        letter = _single_letter(pred, letters)
        if letter is not None:
            return letter == gold
        if _several_letters(pred, letters) or not item.choices:
            return False
        return None
    if item.answer_kind in ("number", "free"):
        gold_nums = _plain_values(item.answer, item.unit)
        pred_nums = _plain_values(pred, item.unit) if gold_nums is not None else None
        if gold_nums is None or pred_nums is None:
            return None
        return _numbers_match(pred_nums, gold_nums, item.precision)
    return None


def _fast_gold_ok(item: Item) -> bool:
    """True when the gold is gradable by the fast path's tests alone (no worker needed)."""
    answer = item.answer.strip()
    if not answer or item.answer_kind == "free":
        return True  # gold_problem reads neither (empty is its own message, free is any text)
    if len(answer) > _FAST_MAX_CHARS:
        return False
    if item.answer_kind == "choice":
        letters = LETTERS[: len(item.choices)] if item.choices else _DEFAULT_CHOICE_LETTERS
        return _single_letter(answer, letters) is not None
    return item.answer_kind == "number" and _plain_values(answer, item.unit) is not None


def _orphan_watch(parent: int) -> None:
    """Exit the worker when its parent is gone (it may have been killed mid-grading)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _serve(read_fd: int, write_fd: int) -> None:
    """The worker's loop: ("grade", (pred, item)) -> is_correct, ("gold", (item,)) ->
    gold_problem, answered ("ok", value) or ("error", text); ends when the parent closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it kills this worker
    threading.Thread(target=_orphan_watch, args=(os.getppid(),), daemon=True).start()
    inbox, outbox = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    outbox.send(("ready", None))
    while True:
        try:
            kind, args = inbox.recv()
        except (EOFError, OSError):
            return
        try:
            out = is_correct(*args) if kind == "grade" else gold_problem(*args)
            outbox.send(("ok", out))
        except Exception as e:  # the parent counts it as a grader error
            outbox.send(("error", f"{type(e).__name__}: {e}"))


class _Worker:
    """One grading process per process, started on first use, killed and restarted when a
    grading passes its limit (a thread could not be stopped: it kept the CPU and Ctrl-C)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.inbox: Connection | None = None  # the worker's answers
        self.outbox: Connection | None = None  # our requests
        self.ready = False
        self.lock = threading.Lock()

    def _start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.stop()
        to_child, from_parent = os.pipe()[::-1]  # (write end, read end)
        from_child, to_parent = os.pipe()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER_CODE, str(from_parent), str(to_parent)],
                pass_fds=(from_parent, to_parent),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        finally:
            os.close(from_parent)
            os.close(to_parent)
        self.inbox = Connection(from_child, writable=False)
        self.outbox = Connection(to_child, readable=False)
        self.ready = False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
        for conn in (self.inbox, self.outbox):
            if conn is not None:
                conn.close()
        self.proc, self.inbox, self.outbox, self.ready = None, None, None, False

    def call(self, kind: str, args: tuple[Any, ...], timeout_s: float) -> tuple[str, Any]:
        """("ok", value), ("error", text) or ("timeout", None); the worker is killed on a
        timeout and on anything that interrupts the wait (Ctrl-C), so no grading outlives it."""
        with self.lock:
            self._start()
            assert self.inbox is not None and self.outbox is not None
            try:
                if not self.ready:
                    if not self.inbox.poll(_STARTUP_S):
                        self.stop()
                        return "error", f"the grading worker did not start in {_STARTUP_S:g} s"
                    self.inbox.recv()
                    self.ready = True
                self.outbox.send((kind, args))
                if not self.inbox.poll(timeout_s):
                    self.stop()
                    return "timeout", None
                return self.inbox.recv()
            except (EOFError, OSError) as e:
                self.stop()
                return "error", f"the grading worker died ({type(e).__name__})"
            except BaseException:
                self.stop()
                raise


_WORKER = _Worker()
atexit.register(_WORKER.stop)


def _bare(item: Item) -> Item:
    """The item without its image and meta: all grading reads, cheap to send to the worker."""
    return item.with_(image=None, meta={})


def _gold_problem_bounded(item: Item, timeout_s: float | None) -> str | None:
    if timeout_s is None or _fast_gold_ok(item):
        return gold_problem(item)
    status, out = _WORKER.call("gold", (_bare(item),), timeout_s)
    if status == "ok":
        return out
    answer = item.answer.strip()
    shown = repr(answer if len(answer) <= 60 else answer[:57] + "...")
    if status == "timeout":
        return (
            f"checking the gold answer {shown} took over {timeout_s:g} s (the grader's time "
            "limit), so every response to it would time out; write it as a plain number or "
            "a simpler expression"
        )
    return f"the gold answer {shown} cannot be graded ({out}); fix it"


def check_golds(
    items: Sequence[Item], source: str = "", timeout_s: float | None = DEFAULT_TIMEOUT_S
) -> None:
    """Raise BenchmarkError naming the first item whose gold answer cannot be graded, and the
    fix; run right after loading, so bad data fails before any compute is spent. Each check
    has the grader's time limit (`timeout_s`, None: none)."""
    where = f" of {source}" if source else ""
    for item in items:
        problem = _gold_problem_bounded(item, timeout_s)
        if problem is not None:
            raise BenchmarkError(f"{item.benchmark}: item (id {item.id}){where}: {problem}")


# ----------------------------------------------------------------------------- error counting

_errors_lock = threading.Lock()
_errors = 0
_MAX_ERROR_LOGS = 10


def _count_error(item: Item, message: str) -> None:
    global _errors
    with _errors_lock:
        _errors += 1
        n = _errors
    if n <= _MAX_ERROR_LOGS:
        log.warning("grader error #%d on item %s: %s", n, item.id, message)


def grader_error_count() -> int:
    """Grader failures (exceptions, timeouts) since the last reset, over all threads."""
    with _errors_lock:
        return _errors


def reset_grader_error_count() -> None:
    global _errors
    with _errors_lock:
        _errors = 0


# ----------------------------------------------------------------------------- grade and score


def grade(response: str, item: Item, timeout_s: float | None = DEFAULT_TIMEOUT_S) -> Grade:
    """Extract and grade one response. Safe from any thread; `timeout_s=None` means no limit
    (and grading in this process). A short letter or plain number is graded here; anything else
    in the worker process, which is killed and restarted when it passes `timeout_s`: a timeout
    is a grader error."""
    extracted = extract_answer(response)
    fmt = format_ok(response)
    if extracted is None or not extracted:
        return Grade(extracted, False, fmt, None)
    error: str | None = None
    correct = False
    if timeout_s is None:
        try:
            correct = is_correct(extracted, item)
        except Exception as e:  # counted and reported below, never a silent 0
            error = f"{type(e).__name__}: {e}"
    else:
        try:
            fast = _fast_is_correct(extracted, item)
        except Exception:  # the full grader decides, and reports
            fast = None
        if fast is not None:
            return Grade(extracted, fast, fmt, None)
        status, out = _WORKER.call("grade", (extracted, _bare(item)), timeout_s)
        if status == "ok":
            correct = bool(out)
        elif status == "timeout":
            error = f"timeout: grading took over {timeout_s:g} s"
        else:
            error = out
    if error is not None:
        _count_error(item, error)
        return Grade(extracted, False, fmt, error)
    return Grade(extracted, correct, fmt, None)


RewardFn = Callable[[str, Item], "float | Reward"]


@cache
def load_reward_function(path: str) -> RewardFn:
    """Import a user reward function from "pkg.module:function".

    It is called as fn(response, item) and returns a float (the total reward) or a Reward.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"reward function {path!r} must be an import path 'pkg.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(
            f"reward function {path!r}: cannot import module {module_name!r}: {e}"
        ) from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(
            f"reward function {path!r}: module {module_name!r} has no callable {attr!r}"
        )
    return fn


def score(response: str, item: Item, cfg: RewardConfig | None = None) -> Reward:
    """The reward of one response: weighted accuracy and format, or the user's function."""
    cfg = cfg or RewardConfig()
    g = grade(response, item)
    acc, fmt = float(g.correct), float(g.format_ok)
    if cfg.function is not None:
        out = load_reward_function(cfg.function)(response, item)
        if isinstance(out, Reward):
            return out
        return Reward(float(out), acc, fmt, g)
    return Reward(cfg.accuracy_weight * acc + cfg.format_weight * fmt, acc, fmt, g)
