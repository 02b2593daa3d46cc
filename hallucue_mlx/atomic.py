"""Atomic file writes: a temporary file in the same folder, then a rename.

A process killed mid-write leaves the previous file (or none), never a half-written one that a
rerun would trust. The temporary name carries the process id, so two writers never share one.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_with(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call write(tmp) on a temporary path beside `path` (same suffix), then rename it to `path`.
    A writer that reports a failed write as RuntimeError (MLX: "[write] Unable to write ...")
    raises OSError naming `path` instead: ENOSPC when the disk is (nearly) full, else EIO."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        try:
            write(tmp)
        except RuntimeError as e:
            if "write" not in str(e).lower():
                raise
            raise _write_error(path, e) from None
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# Below this much free space a failed write is taken for a full disk.
_NEARLY_FULL = 64 << 20


def _write_error(path: Path, e: Exception) -> OSError:
    try:
        st = os.statvfs(path.parent)
        full = st.f_bavail * st.f_frsize < _NEARLY_FULL
    except OSError:
        full = False
    if full:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return OSError(errno.EIO, f"the write failed ({e})", str(path))


def write_text(path: str | Path, text: str) -> Path:
    """Write text (UTF-8) atomically."""
    return write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj: Any, *, end: str = "\n", **json_kwargs: Any) -> Path:
    """Write json.dumps(obj, **json_kwargs) + end atomically (callers keep their own formatting,
    so files whose bytes feed a fingerprint stay the same)."""
    return write_text(path, json.dumps(obj, **json_kwargs) + end)
