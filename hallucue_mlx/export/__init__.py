"""Exports of an experiment to other training frameworks (`hallucue-mlx export ...`).

`easyr1`: the corrupted training sets, the clean validation set, the prompt, the reward and one
config per training condition in EasyR1's formats, for the paper's GPU-scale runs.
"""
