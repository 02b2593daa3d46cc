"""Fixtures shared by every test folder: the tiny random Qwen2.5-VL the model-level tests run on.

Built once per session (a few seconds); tests only read it (they write adapters and runs elsewhere).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Before any test module imports MLX: the fast BLAS, checked on this CPU, as a user's process has it.
import hallucue_mlx  # noqa: E402, F401

# The smallest model the real code paths accept: tests stay fast on two shared cores.
TINY_SIZES = dict(
    text_hidden=64,
    text_layers=2,
    text_heads=4,
    kv_heads=2,
    vision_hidden=32,
    vision_depth=1,
    vision_heads=2,
)


def tiny_sizes(**over: int) -> dict[str, int]:
    """build_tiny_random's size arguments of the shared tiny model, with some overridden."""
    return {**TINY_SIZES, **over}


@pytest.fixture(scope="session")
def build_tiny() -> Callable[..., Path]:
    """build_tiny(dir, **sizes): a tiny random Qwen2.5-VL in dir, for a test that needs another size."""
    from hallucue_mlx.models.tiny import build_tiny_random

    return lambda path, **over: build_tiny_random(path, **tiny_sizes(**over))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, build_tiny) -> Path:
    """The shared tiny model's folder."""
    return build_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def load_script() -> Callable[[str], ModuleType]:
    """load_script(name): scripts/NAME.py (or benchmarks/NAME.py) executed afresh as a module
    named NAME."""
    root = Path(__file__).resolve().parent.parent

    def load(name: str) -> ModuleType:
        path = root / "scripts" / f"{name}.py"
        path = path if path.exists() else root / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # the scripts' dataclasses look their module up there
        spec.loader.exec_module(module)
        return module

    return load
