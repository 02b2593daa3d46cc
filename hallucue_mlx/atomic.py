"""Atomic file writes: a temporary file in the same folder, then a rename.

A process killed mid-write leaves the previous file (or none), never a half-written one that a
rerun would trust. The temporary name carries the process id, so two writers never share one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_with(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call write(tmp) on a temporary path beside `path` (same suffix), then rename it to `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write text (UTF-8) atomically."""
    return write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj: Any, *, end: str = "\n", **json_kwargs: Any) -> Path:
    """Write json.dumps(obj, **json_kwargs) + end atomically (callers keep their own formatting,
    so files whose bytes feed a fingerprint stay the same)."""
    return write_text(path, json.dumps(obj, **json_kwargs) + end)
