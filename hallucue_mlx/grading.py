"""Answer extraction and strict grading: the part of the reward that needs nothing but the
response and the gold answer.

This module imports nothing from hallucue_mlx, on purpose: `hallucue-mlx export easyr1` copies it
verbatim as EasyR1's reward function file, so a GPU run scores responses with exactly this code.
`rewards.py` adds the time limits, the error counting and the weighting for our own training.

- extraction: the content of the last <answer>...</answer> (and the last \\boxed{} inside it if any),
  else the last \\boxed{} / \\fbox{} of the response (nested braces allowed), else nothing.
- format: EasyR1's check, <think>...</think> then \\boxed{...} (surrounding blanks ignored).
- choice items: the gold is a letter; the prediction may be a letter ("B", "(B)", "B.", "option B",
  "B. 12 cm") or the text of one option. Empty answers and several options ("A or B") are wrong.
- number items: a single number, with units, thousands commas, "%", "x = 5" and LaTeX (\\frac,
  \\sqrt, \\pi) understood; compared within half a unit of the item's `precision` decimals if set,
  else with relative tolerance 1e-4. A "%" on either side also allows the /100 reading (25% = 0.25);
  without one, 0.25 does not equal 25.
- free items: numbers as above, else math-verify equivalence, else normalised string equality.
- declining: `\\boxed{unknown}` (DECLINE_ANSWER, what the decline-offering prompts ask for) and the
  phrases models decline with ("cannot be determined", "not enough information", "I don't know"
  ...) are a decline (`declines`): graded as its own outcome, never correct, whatever the item.

math-verify's own timeouts use signal.alarm, which raises outside the main thread; they are turned
off here (`rewards.grade` bounds the time of a grading in a worker process instead).

EasyR1 (hiyouga/EasyR1) loads a reward file by path and calls `compute_score(reward_inputs,
**reward_function_kwargs)` with one dict per response: "response" (the decoded completion),
"response_length" and "ground_truth" (the row's answer column). Its metadata names REWARD_NAME and
REWARD_TYPE ("batch": the whole list at once). The exported data sets put `gold_json(item)` in that
column, so the grader sees the answer kind, options, unit and precision as it does here; a plain
answer string is graded as a free-form answer. Needs sympy (an EasyR1 install has it) and
math-verify (it does not: `pip install "math-verify>=0.7"`).
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Protocol

import sympy

try:
    import math_verify
except ImportError as _err:  # EasyR1's environment does not install it
    raise ImportError(
        "grading free-form and LaTeX answers needs math-verify: pip install 'math-verify>=0.7'"
    ) from _err

# Option letters: the gold answer of a choice item is the letter of its correct option (the same
# string as hallucue_mlx.data.item.LETTERS; this module imports nothing from the package).
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Letters allowed when a choice item's options live only in the image (MathVerse vision-only).
_DEFAULT_CHOICE_LETTERS = "ABCDEFGH"
# EasyR1's format reward: reasoning in <think></think>, then a \boxed{} answer.
FORMAT_RE = re.compile(r"<think>.*</think>.*\\boxed\{.*\}.*", re.DOTALL)
ANSWER_KINDS = ("choice", "number", "free")
# The answer the decline-offering prompts name for "the input does not hold what the question needs".
DECLINE_ANSWER = "unknown"
# Phrases of a decline, in a boxed answer or (with none) in the text after the reasoning. Only
# whole statements of not knowing: a bare "none" or "0" is an answer, not a decline.
_DECLINE_RE = re.compile(
    r"\b(?:unknown|not known|undetermin\w*|indeterminate|undecidable|unanswerable"
    r"|(?:can ?not|can't|could not|couldn't|unable to|impossible to|not possible to)\s+"
    r"(?:be\s+)?(?:determin\w*|answer\w*|tell|know|say|find|calculat\w*|comput\w*|read|see|"
    r"identify|infer\w*|decid\w*)"
    r"|(?:not|no|in)\s*(?:enough|sufficient)\s+(?:information|info|data|detail\w*)"
    r"|insufficient\s+(?:information|info|data|detail\w*)|information\s+is\s+(?:missing|insufficient)"
    r"|i\s+(?:do not|don't)\s+know|not\s+(?:given|provided|stated|shown|visible)"
    r"|no\s+(?:image|figure|diagram|picture|graph|chart)\b|(?:image|figure|diagram)\s+is\s+"
    r"(?:blank|empty|missing)|n/a|not\s+applicable|no\s+answer)\b",
    re.IGNORECASE,
)
# A boxed answer longer than this is a sentence of reasoning, read only for its decline phrase
# when it holds no digit (a digit means a value was committed to).
_DECLINE_MAX_CHARS = 120


class _DropTimeoutWarning(logging.Filter):
    # We disable math-verify's timeouts on purpose and bound time ourselves.
    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutWarning())


# ----------------------------------------------------------------------------- what grading reads


class Gradable(Protocol):
    """What grading reads of an item: hallucue_mlx's Item has these fields, and so has Gold."""

    @property
    def id(self) -> str: ...
    @property
    def answer(self) -> str: ...
    @property
    def answer_kind(self) -> str: ...
    @property
    def choices(self) -> tuple[str, ...]: ...
    @property
    def unit(self) -> str: ...
    @property
    def precision(self) -> int | None: ...


@dataclass(frozen=True)
class Gold:
    """An item's gold answer and what its grading needs, without the question or the image."""

    answer: str
    answer_kind: str = "free"
    choices: tuple[str, ...] = ()
    unit: str = ""
    precision: int | None = None
    id: str = ""


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


def declines(extracted: str | None, response: str = "") -> bool:
    """Whether a response declines to answer: its extracted answer is DECLINE_ANSWER or states
    not knowing ("cannot be determined", "not enough information"), without a digit; with no
    extracted answer, the text after the reasoning (after </think>, else the last 300
    characters) does, again without a digit (a digit is a value committed to). A decline is never a correct answer (is_correct)."""
    if extracted is not None and extracted.strip():
        t = _clean(extracted).strip().rstrip(".").strip()
        if _norm_text(t) == DECLINE_ANSWER:
            return True
        return (
            len(t) <= _DECLINE_MAX_CHARS
            and not re.search(r"\d", t)
            and _DECLINE_RE.search(t) is not None
        )
    tail = response.rsplit("</think>", 1)[1] if "</think>" in response else response[-300:]
    return not re.search(r"\d", tail) and _DECLINE_RE.search(tail) is not None


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


def _grade_choice(pred: str, item: Gradable) -> bool:
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


def _gold_numbers(item: Gradable) -> list[float]:
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


def _grade_free(pred: str, item: Gradable) -> bool:
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


def gold_problem(item: Gradable) -> str | None:
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


def is_correct(pred: str | None, item: Gradable) -> bool:
    """Strict correctness of an extracted answer; raises on a grader or gold-data problem."""
    if pred is None or not pred.strip() or declines(pred):
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


# ----------------------------------------------------------------------------- EasyR1's entry point

REWARD_NAME = "hallucue"
REWARD_TYPE = "batch"


def gold_json(item: Gradable) -> str:
    """The ground-truth string of an exported row: everything grading reads, as JSON."""
    return json.dumps(
        {
            "answer": item.answer,
            "answer_kind": item.answer_kind,
            "choices": list(item.choices),
            "unit": item.unit,
            "precision": item.precision,
            "id": item.id,
        },
        ensure_ascii=False,
    )


def gold_from_json(ground_truth: str) -> Gold:
    """gold_json's inverse; any other string is a free-form gold answer (EasyR1's own data)."""
    try:
        data = json.loads(ground_truth)
    except (TypeError, ValueError):
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("answer"), str):
        return Gold(answer=str(ground_truth))
    kind = data.get("answer_kind", "free")
    return Gold(
        answer=data["answer"],
        answer_kind=kind if kind in ANSWER_KINDS else "free",
        choices=tuple(str(c) for c in data.get("choices") or ()),
        unit=str(data.get("unit") or ""),
        precision=data.get("precision"),
        id=str(data.get("id") or ""),
    )


def response_scores(
    response: str, gold: Gradable, accuracy_weight: float, format_weight: float
) -> dict[str, float]:
    """{"overall", "format", "accuracy"} of one response, as hallucue_mlx.rewards.score weighs
    them; a grading that raises scores accuracy 0 (rewards.grade counts it as a grader error)."""
    extracted = extract_answer(response)
    fmt = float(format_ok(response))
    correct = False
    if extracted:
        try:
            correct = is_correct(extracted, gold)
        except Exception:  # a broken grading is a wrong answer, never a crashed training
            correct = False
    acc = float(correct)
    return {"overall": accuracy_weight * acc + format_weight * fmt, "format": fmt, "accuracy": acc}


def compute_score(
    reward_inputs: list[dict[str, Any]],
    format_weight: float = 0.1,
    accuracy_weight: float | None = None,
) -> list[dict[str, float]]:
    """EasyR1's batch reward function: one {"overall", "format", "accuracy"} per input.

    accuracy_weight defaults to 1 - format_weight (EasyR1's math reward); the exported configs
    pass both weights of the run config (worker.reward.reward_function_kwargs)."""
    aw = 1.0 - format_weight if accuracy_weight is None else accuracy_weight
    return [
        response_scores(r["response"], gold_from_json(r["ground_truth"]), aw, format_weight)
        for r in reward_inputs
    ]
