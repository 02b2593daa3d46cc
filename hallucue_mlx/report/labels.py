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


def model_label(model: str) -> str:
    return MODEL_LABELS.get(model, f"GRPO-{model}")


def eval_label(cond: str) -> str:
    return EVAL_LABELS.get(cond, cond)
