"""hallucue-mlx: the Hallucination-as-Cue framework (arXiv 2604.03179) on MLX.

Flow of training: item -> corruption -> prompt -> rollout -> reward -> advantage -> loss -> adapter.
Flow of evaluation: item -> corruption -> answer -> record -> metric -> report.
"""

__version__ = "0.1.0"
