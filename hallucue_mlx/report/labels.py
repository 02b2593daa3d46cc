"""How the report names models and eval conditions; the condition names come from corrupt.CORRUPTIONS."""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

from hallucue_mlx.corrupt import CORRUPTIONS
from hallucue_mlx.runfolder import RANDOM_REWARD

# Names that key a report (model and benchmark folders, conditions, imported models) are plain:
# what the project itself writes. Anything else in a run folder is skipped and named, never shown
# as markdown (a name could carry a link or an image that the HTML report would embed).
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,127}")


def plain_name(name: Any) -> bool:
    """A name the report may show as is: letters, digits and ._+=- (as the project writes)."""
    return isinstance(name, str) and _PLAIN.fullmatch(name) is not None


def md_code(value: Any) -> str:
    """`value` as a markdown code span: shown as text whatever it holds (never a link, an
    image or HTML); backticks and line breaks, which would end the span, are replaced."""
    text = value.as_posix() if isinstance(value, PurePath) else str(value)
    text = re.sub(r"[\x00-\x1f`]", lambda m: "'" if m.group() == "`" else " ", text)
    return f"`{text}`" if text.strip() else "`?`"


BASE = "base"  # the untrained model's folder under eval/

# (short, long) name of each condition, keyed by the corruption names corrupt.py defines
_NAMES = {
    "none": ("clean", "clean inputs"),
    "blank": ("BI", "blank images"),
    "random": ("RI", "random images"),
    "text_removal": ("TR", "text removal"),
}
EVAL_LABELS = {c: _NAMES[c][0] for c in CORRUPTIONS}
EVAL_LONG = {c: _NAMES[c][1] for c in CORRUPTIONS}
# a model is named after the condition it was trained under: GRPO (clean), GRPO-BI, ...; the
# control (grid.random_reward_control) after its reward
MODEL_LABELS = {
    BASE: "base",
    **{c: "GRPO" if c == "none" else f"GRPO-{EVAL_LABELS[c]}" for c in CORRUPTIONS},
    RANDOM_REWARD: "GRPO, random reward",
}
# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
OKABE_ITO = ("#000000", "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442")


# A model trained with zero-spread groups left out of its updates is not plain GRPO: its label
# carries this mark, and every table that shows one explains it (FILTER_NOTE).
FILTER_MARK = "†"
FILTER_NOTE = (
    "† trained with the groups whose rewards are all equal left out of each update (DAPO's "
    "dynamic-sampling filter, without refilling; train.drop_zero_std_groups): not plain GRPO."
)


def model_label(model: str, filtered: bool = False) -> str:
    """GRPO (clean), GRPO-BI, ...; with `filtered` (train.drop_zero_std_groups) a trained model's
    label gets FILTER_MARK: GRPO†, GRPO-BI†."""
    label = MODEL_LABELS.get(model, f"GRPO-{model}")
    return label + FILTER_MARK if filtered and model != BASE else label


def filtered(config: dict) -> bool:
    """Whether a run config (as a manifest stores it) trains with the zero-spread group filter."""
    train = config.get("train") if isinstance(config, dict) else None
    return bool(isinstance(train, dict) and train.get("drop_zero_std_groups"))


def eval_label(cond: str) -> str:
    return EVAL_LABELS.get(cond, cond)
