"""Tiny copies of the real benchmarks, built at test time with their real column names and storage
types (images as PIL via the Image feature, as raw bytes, as {'bytes','path'} structs, as paths;
choices as lists or as one string). Question texts imitate each benchmark's style.

One module per benchmark, each with its ROWS, the SPLIT the loader reads, and build(root), which
writes the copy under root and returns its path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import geometry3k, local, mathverse, mathvision, mathvista, wemath
from .images import picture, png_bytes

# benchmark name -> (build(root) -> path, the split to load ("" for none))
BUILDERS: dict[str, tuple[Callable[[Path], Path], str]] = {
    m.__name__.rsplit(".", 1)[1]: (m.build, m.SPLIT)
    for m in (geometry3k, mathverse, mathvista, mathvision, wemath, local)
}

__all__ = [
    "BUILDERS",
    "geometry3k",
    "local",
    "mathverse",
    "mathvision",
    "mathvista",
    "picture",
    "png_bytes",
    "wemath",
]
