"""How the report names models and eval conditions; the condition names come from corrupt.CORRUPTIONS."""

from __future__ import annotations

from hallucue_mlx.corrupt import CORRUPTIONS

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
# a model is named after the condition it was trained under: GRPO (clean), GRPO-BI, ...
MODEL_LABELS = {
    BASE: "base",
    **{c: "GRPO" if c == "none" else f"GRPO-{EVAL_LABELS[c]}" for c in CORRUPTIONS},
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
