"""Models: loading (hub id or local dir, adapters) and the tiny real-architecture builder."""

from hallucue_mlx.models.load import (
    SUPPORTED_MODEL_TYPES,
    ModelLoadError,
    load_model,
    model_family,
    resolve_model_dir,
)
from hallucue_mlx.models.tiny import FAMILIES, build_tiny_random, default_corpus

__all__ = [
    "FAMILIES",
    "SUPPORTED_MODEL_TYPES",
    "ModelLoadError",
    "build_tiny_random",
    "default_corpus",
    "load_model",
    "model_family",
    "resolve_model_dir",
]
