"""Fixtures of the reliability suite: the tiny model loaded once (its folder, `tiny_dir`, comes
from tests/conftest.py) and `said`, which checks a user-facing message and (with
HALLUCUE_MESSAGES=FILE set) records it, so docs/reliability.md quotes the messages the tests
actually produced. Plain helpers live in reliability_helpers.py."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    """(model, processor) of the tiny model, loaded once per session."""
    from hallucue_mlx.models.load import load_model

    return load_model(str(tiny_dir))


@pytest.fixture
def said(request):
    """said(case, message, *parts): assert each part is in the message, and record it."""

    def check(case: str, message: str, *parts: str) -> str:
        for p in parts:
            assert p in message, f"{case}: {p!r} not in {message!r}"
        out = os.environ.get("HALLUCUE_MESSAGES")
        if out:
            with open(out, "a", encoding="utf-8") as f:
                f.write(json.dumps({"case": case, "test": request.node.name, "message": message}))
                f.write("\n")
        return message

    return check
