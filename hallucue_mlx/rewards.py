"""Answer extraction, grading and the GRPO reward.

Reward = accuracy_weight * accuracy + format_weight * format, 0.9 / 0.1 by default as in EasyR1.
Grading is strict on purpose: loose substring graders get hacked (empty answers, "A or B or C").
`random_reward` is the scientific control's reward: a seeded coin flip in place of the accuracy.

The extraction and the graders (what counts as a correct letter, number or expression) are in
`grading.py`, which imports nothing from the package so that `export easyr1` can ship it as
EasyR1's reward file; the names are re-exported here.

math-verify's own timeouts use signal.alarm, which raises outside the main thread; grading turns
them off. Every bounded thing is bounded: a grading that needs math-verify or sympy (whose evalf of
10^{10^{10^{10}}} never returns, and whose C code ignores Ctrl-C) runs in a small persistent worker
process, killed and restarted when it passes the time limit; the common short answers (an option
letter, a plain number) are graded here, on a path whose cost is bounded by their length. A
grading that raises or times out is never a silent 0: it sets `Grade.grader_error`, and the module
counts them (`grader_error_count()`) so training and evaluation can report them. The gold check
at load shares the limit and names the item.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib
import json
import logging
import math
import os
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

from hallucue_mlx.data.common import BenchmarkError
from hallucue_mlx.data.item import LETTERS, Item
from hallucue_mlx.grading import (
    _DEFAULT_CHOICE_LETTERS,
    FORMAT_RE,
    _numbers_match,
    _plain_values,
    _several_letters,
    _single_letter,
    declines,
    extract_answer,
    format_ok,
    gold_problem,
    is_correct,
)

__all__ = [
    "FORMAT_RE",
    "Grade",
    "Reward",
    "RewardConfig",
    "check_golds",
    "declines",
    "extract_answer",
    "format_ok",
    "gold_problem",
    "grade",
    "grader_error_count",
    "is_correct",
    "load_reward_function",
    "random_coin",
    "random_reward",
    "reset_grader_error_count",
    "reset_random_reward",
    "score",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Grade:
    """How one response was graded against one item.

    `extracted` is None when no answer was found; `grader_error` is set (and `correct` False)
    when grading itself failed, so the caller can tell a broken grader from a wrong answer.
    `declined`: the response declines to answer (grading.declines), its own outcome: never correct.
    """

    extracted: str | None
    correct: bool
    format_ok: bool
    grader_error: str | None = None
    declined: bool = False


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
    if declines(extracted, response):
        return Grade(extracted, False, fmt, None, declined=True)
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
    """The reward of one response: weighted accuracy and format, or the user's function (a
    function that returns a Reward grades for itself: the response is graded once)."""
    cfg = cfg or RewardConfig()
    if cfg.function is not None:
        out = load_reward_function(cfg.function)(response, item)
        if isinstance(out, Reward):
            return out
        g = grade(response, item)
        return Reward(float(out), float(g.correct), float(g.format_ok), g)
    g = grade(response, item)
    acc, fmt = float(g.correct), float(g.format_ok)
    return Reward(cfg.accuracy_weight * acc + cfg.format_weight * fmt, acc, fmt, g)


# ----------------------------------------------------------------------------- the random reward

# The scientific control "GRPO with random rewards, same settings" (grid.random_reward_control,
# which names random_reward as config.RANDOM_REWARD_FUNCTION): a gain clean GRPO has over it
# came from the reward signal, not from training alone.
_random_lock = threading.Lock()
_random_seed = 0
_random_calls: dict[str, int] = {}  # item id -> calls so far (reset_random_reward)


def reset_random_reward(seed: int = 0) -> None:
    """Start random_reward's coins afresh: seed them and zero every item's call counter.
    train() calls it at the start of each training with the training's seed."""
    global _random_seed
    with _random_lock:
        _random_seed = int(seed)
        _random_calls.clear()


def random_coin(seed: int, item_id: str, response: str, call: int) -> int:
    """A fair coin (0 or 1) from sha256 of (seed, item id, response, call number)."""
    key = json.dumps([seed, str(item_id), response, call]).encode()
    return hashlib.sha256(key).digest()[0] & 1


def random_reward(response: str, item: Item) -> Reward:
    """The random-reward control: total = 0.9 * coin + 0.1 * format (RewardConfig's default
    weights), where the coin is a fair coin flip independent of correctness and the format part
    is the real format check. The response is still graded: `accuracy` and `grade` carry its
    true correctness (so the training log's accuracy is the real one), only `total` sees the coin.

    Deterministic and seedable: the coin hashes (seed, item id, response text, the number of
    earlier calls for this item id), the seed and counters being this module's
    (reset_random_reward; train() resets them with the training's seed). The same run, on the
    same number of processes, draws the same coins; a resumed run restarts the counters, so it
    draws other coins than the uninterrupted run would have. Select it with
    `--set train.reward_function=hallucue_mlx.rewards:random_reward`, or add the control to the
    grid with grid.random_reward_control."""
    g = grade(response, item)
    with _random_lock:
        call = _random_calls.get(str(item.id), 0)
        _random_calls[str(item.id)] = call + 1
        seed = _random_seed
    coin = random_coin(seed, item.id, response, call)
    weights = RewardConfig()
    fmt = float(g.format_ok)
    total = weights.accuracy_weight * coin + weights.format_weight * fmt
    return Reward(total, float(g.correct), fmt, g)
