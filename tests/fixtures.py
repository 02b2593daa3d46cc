"""Temporary alias of bench_rows and user_reward for importers not yet moved to them."""

from __future__ import annotations

from bench_rows import BUILDERS, picture, png_bytes
from bench_rows.geometry3k import build as geometry3k
from bench_rows.local import build as local
from bench_rows.mathverse import build as mathverse
from bench_rows.mathvision import build as mathvision
from bench_rows.mathvista import build as mathvista
from bench_rows.wemath import build as wemath
from user_reward import reward_spaces

__all__ = [
    "BUILDERS",
    "geometry3k",
    "local",
    "mathverse",
    "mathvision",
    "mathvista",
    "picture",
    "png_bytes",
    "reward_spaces",
    "wemath",
]
