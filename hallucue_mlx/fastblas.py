"""Run any command with OpenBLAS preloaded for MLX's Linux CPU backend.

    python -m hallucue_mlx.fastblas pytest -q
    python -m hallucue_mlx.fastblas python my_script.py

Elsewhere (macOS, no cmeel-openblas, HALLUCUE_NO_FAST_BLAS=1) the command runs unchanged.
"""

from __future__ import annotations

import sys

from hallucue_mlx.backend import exec_with_fast_blas


def main() -> None:
    exec_with_fast_blas(sys.argv[1:])


if __name__ == "__main__":
    main()
