"""Models: loading (hub id or local dir, adapters) and the tiny real-architecture builder."""

from hallucue_mlx.models.load import (
    EMBEDDED_NAME,
    SUPPORTED_MODEL_TYPES,
    ModelLoadError,
    embedded_model_path,
    load_model,
    model_family,
    resolve_model_dir,
)
from hallucue_mlx.models.tiny import FAMILIES, build_tiny_random, default_corpus

__all__ = [
    "EMBEDDED_NAME",
    "embedded_model_path",
    "FAMILIES",
    "SUPPORTED_MODEL_TYPES",
    "ModelLoadError",
    "build_tiny_random",
    "default_corpus",
    "load_model",
    "model_family",
    "resolve_model_dir",
]
