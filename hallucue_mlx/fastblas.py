"""Run any command with MLX's CPU matmuls bound to the checked fast BLAS (blas.py).

    python -m hallucue_mlx.fastblas python my_script.py   # a script that imports mlx first
    python -m hallucue_mlx.fastblas jupyter lab

Processes that import hallucue_mlx before MLX need none of this: the import binds it. Elsewhere
(macOS, no fast BLAS, HALLUCUE_NO_FAST_BLAS=1) the command runs unchanged.
"""

from __future__ import annotations

import os
import sys

from hallucue_mlx.blas import preload_env


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m hallucue_mlx.fastblas <command> [args...]")
    env = preload_env(dict(os.environ))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(sys.argv[1], sys.argv[1:], env)


if __name__ == "__main__":
    main()
