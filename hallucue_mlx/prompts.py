"""Prompt templates and the answer format, in one place.

The default is EasyR1's reasoning prompt, which the paper most likely used: the model thinks inside
<think></think> and puts the final answer in \\boxed{}.

The "-decline" templates add one sentence that offers a way to decline: when the image or the text
does not hold what the question needs, answer \\boxed{unknown} (grading.DECLINE_ANSWER). Grading
counts that, and a model's own decline phrases, as a decline: its own outcome, never correct
(grading.declines), so the hallucination metric can tell declining from answering anyway. The
plain templates stay as the paper's and the shipped model's warm-up had them.
"""

from __future__ import annotations

import re

from hallucue_mlx.corrupt import options_block
from hallucue_mlx.data.common import parse_options
from hallucue_mlx.data.item import LETTERS, Item

# The decline answer: the same string as grading.DECLINE_ANSWER (not imported: grading loads
# math-verify, and config reads this module at start-up; tests check the two agree).
DECLINE_ANSWER = "unknown"

EASYR1_SUFFIX = (
    "You FIRST think about the reasoning process as an internal monologue and then provide the "
    "final answer. The reasoning process MUST BE enclosed within <think> </think> tags. "
    "The final answer MUST BE put in \\boxed{}."
)

SHORT_SUFFIX = "Think in <think> </think>, then give the final answer in \\boxed{}."
# The sentence the -decline templates add.
DECLINE_SENTENCE = (
    "If the image and the text do not hold what the question needs, answer "
    f"\\boxed{{{DECLINE_ANSWER}}}."
)

TEMPLATES = {
    # name -> suffix appended after the question (and its choices)
    "easyr1": EASYR1_SUFFIX,
    # A short suffix for tiny models with small context; same answer format.
    "short": SHORT_SUFFIX,
    # The same, offering a way to decline (module doc).
    "easyr1-decline": f"{EASYR1_SUFFIX} {DECLINE_SENTENCE}",
    "short-decline": f"{SHORT_SUFFIX} {DECLINE_SENTENCE}",
}


def resolve_template(template: str, model: str) -> str:
    """'auto' -> 'short-decline' for the embedded hallucue-tiny (the format it was warmed up with),
    'easyr1' (the paper's) for any other model; any other name is returned as is."""
    if template != "auto":
        return template
    from pathlib import Path

    return "short-decline" if Path(str(model)).name == "hallucue-tiny" else "easyr1"


def format_choices(choices: tuple[str, ...]) -> str:
    """Multiple-choice options as 'A. ...' lines; the gold answer of such items is the letter."""
    return "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))


def _norm_option(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".;")


def listed_options(question: str) -> tuple[int, tuple[str, ...]]:
    """The question's own options block: (where it starts, its option texts), from a
    "Choices:" line or a final run of lines labelled A, B, C ... in order (corrupt.options_block,
    the block text removal never cuts); (len(question), ()) when there is none. Labelled lines
    before the question's last unlabelled line are statements, not options."""
    start = options_block(question)
    block = re.sub(r"^\s*(?:choices|options)\s*[:：]?[ \t]*\n?", "", question[start:], flags=re.I)
    options = parse_options(block) if start < len(question) else ()
    return (start, options) if options else (len(question), ())


def lists_options(question: str) -> bool:
    """Whether the question text ends with its own list of options (listed_options): lines
    labelled A and B. A sentence that merely contains "A." ("tangent to circle O at point A.")
    or statements labelled A and B before the ask do not count."""
    return bool(listed_options(question)[1])


def problem_text(item: Item) -> str:
    """The question and its choices: the user-turn text before the template's instruction.

    Every choice is shown exactly once: a question that lists exactly the item's options keeps
    its list; one that lists only the first of them (A-D of five) loses its partial list for the
    full one; any other labelled lines are the question's own statements and stay, with the
    item's options after them."""
    question = item.question.strip()
    if not item.choices:
        return question
    start, listed = listed_options(question)
    want = [_norm_option(c) for c in item.choices]
    got = [_norm_option(c) for c in listed]
    if got and got == want:
        return question
    if got and got == want[: len(got)]:  # a partial copy of the options: show them all once
        question = question[:start].rstrip()
    parts = [question, "Choices:\n" + format_choices(item.choices)]
    return "\n".join(p for p in parts if p)


def build_prompt(item: Item, template: str = "easyr1") -> str:
    """The user-turn text for an item (the image is added by the chat template)."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {template!r}; choose one of {sorted(TEMPLATES)}")
    return "\n".join(p for p in (problem_text(item), TEMPLATES[template]) if p)


def offers_decline(template: str) -> bool:
    """Whether a template tells the model how to decline."""
    return DECLINE_SENTENCE in TEMPLATES.get(template, "")


def format_answer(think: str, answer: str) -> str:
    """The target completion format used for warm-up and checked by the format reward."""
    return f"<think>{think}</think> \\boxed{{{answer}}}"
