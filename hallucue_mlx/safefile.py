"""Reading files whose kind and size are not known: the one place that checks them.

Two rules, each enforced here:

- A folder's **state files** (the lock, manifests, sweep.json, checkpoint pointers, done markers)
  are opened without following a symbolic link, and only if they are regular files: a lock that
  is a link never has its target overwritten, and a lock or manifest that is a FIFO or a device
  never blocks or streams forever (`open_state`, `read_state`).
- Every **input file** read whole (records, summaries, configs, item lists) is checked for kind
  (a regular file, reached through links or not) and size before it is read (`read_input`).

Both raise `FileKindError`, an OSError naming the file, what it is and what to do; the CLI prints
it as one `error:` line. A low utility module: no package imports.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

# A state file is a few kilobytes; a records or summary file of a large evaluation a few hundred
# megabytes. Beyond these a file is not what it claims to be.
STATE_MAX_BYTES = 16 << 20
INPUT_MAX_BYTES = 2 << 30


class FileKindError(OSError):
    """A file is a link, a FIFO, a device or a folder where a regular file belongs, is too large,
    or is not UTF-8 text; the message names it and what to do."""

    def __init__(self, message: str, path: str | Path) -> None:
        super().__init__(errno.EINVAL, message)
        self.filename = str(path)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_state(path: str | Path, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """An open descriptor of the state file `path`, never through a link and only if it is a
    regular file (O_NOFOLLOW, and O_NONBLOCK so a FIFO cannot block the open). FileNotFoundError
    when it does not exist (and O_CREAT is not in flags); FileKindError for anything else."""
    path = Path(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP or (e.errno == errno.EISDIR and path.is_symlink()):
            raise FileKindError(
                f"{path} is a symbolic link; the project's state files are never followed "
                "(writing through it would overwrite what it points to): remove the link",
                path,
            ) from None
        if e.errno in (errno.EISDIR, errno.ENXIO):
            raise FileKindError(
                f"{path} is not a regular file (a folder, FIFO or device); the project keeps its "
                "state there: remove it or use another folder",
                path,
            ) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileKindError(
                f"{path} is {_kind(st.st_mode)}, not a regular file; the project keeps its state "
                "there: remove it or use another folder",
                path,
            )
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_fd(fd: int, path: Path, limit: int, what: str) -> bytes:
    size = os.fstat(fd).st_size
    if size > limit:
        raise FileKindError(
            f"{path} is {size} bytes, over the {limit >> 20} MiB a {what} can be; it is not one: "
            "restore or remove it",
            path,
        )
    chunks, total = [], 0
    while chunk := os.read(fd, 1 << 20):
        total += len(chunk)
        if total > limit:  # grew while being read
            raise FileKindError(f"{path} grew past {limit >> 20} MiB while being read", path)
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FileKindError(
            f"{path} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}): it is "
            "damaged; restore it, or remove it and rerun the command that wrote it",
            path,
        ) from None


def read_state(path: str | Path, limit: int = STATE_MAX_BYTES) -> str:
    """The text of state file `path` (see open_state); FileKindError when it is not UTF-8."""
    path = Path(path)
    fd = open_state(path)
    try:
        return _decode(_read_fd(fd, path, limit, "state file"), path)
    finally:
        os.close(fd)


def read_state_json(path: str | Path, limit: int = STATE_MAX_BYTES) -> Any:
    """json.loads of read_state(path); ValueError (JSONDecodeError) when it is not JSON."""
    return json.loads(read_state(path, limit))


def is_state_file(path: str | Path) -> bool:
    """True when `path` is a regular file and not a link (what open_state accepts)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def check_input(path: str | Path, limit: int = INPUT_MAX_BYTES, what: str = "file") -> int:
    """The size of input file `path` after checking that it is a regular file (links followed)
    no larger than `limit`; FileKindError otherwise (FileNotFoundError when missing)."""
    path = Path(path)
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise FileKindError(
            f"{path} is {_kind(st.st_mode)}, not a regular file; give the {what} itself", path
        )
    if st.st_size > limit:
        raise FileKindError(
            f"{path} is {st.st_size} bytes, over the {limit >> 20} MiB a {what} can be; it is "
            "not one: restore or remove it",
            path,
        )
    return st.st_size


def read_input_bytes(path: str | Path, limit: int = INPUT_MAX_BYTES, what: str = "file") -> bytes:
    """The bytes of input file `path`, checked for kind and size first (check_input)."""
    path = Path(path)
    check_input(path, limit, what)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced between the check and the open
            raise FileKindError(f"{path} is {_kind(st.st_mode)}, not a regular file", path)
        os.set_blocking(fd, True)
        return _read_fd(fd, path, limit, what)
    finally:
        os.close(fd)


def read_input(path: str | Path, limit: int = INPUT_MAX_BYTES, what: str = "file") -> str:
    """The UTF-8 text of input file `path`, checked for kind and size first."""
    path = Path(path)
    return _decode(read_input_bytes(path, limit, what), path)


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file cannot be whole (empty, cut short, a bad header), or None: a
    cheap check of its header and size, without reading the tensors."""
    size = path.stat().st_size
    if size < 8:
        return f"{size} bytes, empty"
    with path.open("rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n > size - 8:
            return f"a header of {n} bytes in a {size}-byte file"
        try:
            header = json.loads(f.read(n))
        except ValueError:
            return "an unreadable header"
    if not isinstance(header, dict):
        return "an unreadable header"
    ends = [v.get("data_offsets") for v in header.values() if isinstance(v, dict)]
    ends = [e[1] for e in ends if isinstance(e, list) and len(e) == 2 and isinstance(e[1], int)]
    need = 8 + n + max(ends, default=0)
    return f"{size} bytes where its header needs {need}: cut short" if size < need else None


__all__ = [
    "FileKindError",
    "INPUT_MAX_BYTES",
    "STATE_MAX_BYTES",
    "check_input",
    "is_state_file",
    "open_state",
    "read_input",
    "read_input_bytes",
    "read_state",
    "read_state_json",
    "safetensors_problem",
]
