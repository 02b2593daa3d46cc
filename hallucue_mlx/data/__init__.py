"""Benchmark items: the record every module passes around, the synth generator and real-benchmark adapters."""

from hallucue_mlx.data.item import VERSIONS, Item

__all__ = ["Item", "VERSIONS"]
