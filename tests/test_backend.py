"""Backend: dtype choice, the fast-BLAS environment, and `hallucue-mlx doctor`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hallucue_mlx import backend
from hallucue_mlx.cli import app


def test_dtype_choice():
    assert backend.dtype_name("auto", "cpu") == "float32"
    assert backend.dtype_name("auto", "metal") == "bfloat16"
    assert backend.dtype_name("auto", "cuda") == "bfloat16"
    assert backend.dtype_name("float16", "cpu") == "float16"
    with pytest.raises(ValueError, match="not one of"):
        backend.dtype_name("fp8")
    # this machine's MLX: the resolved dtype follows its backend
    expected = "float32" if backend.backend_name() == "cpu" else "bfloat16"
    assert backend.dtype_name() == expected


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fast BLAS preload is Linux only")
def test_fast_blas_env_points_at_existing_files(tmp_path):
    setup = backend.fast_blas_env(cache_dir=tmp_path / "blas")
    if setup is None:
        pytest.skip("mlx-cpu wheel or cmeel-openblas not installed")
    assert setup.openblas.is_file()
    assert setup.env["LD_PRELOAD"].split(":")[0] == str(setup.openblas)
    assert setup.env["LD_LIBRARY_PATH"].split(":")[0] == str(setup.lib_dir)
    for name in ("libgfortran.so.5", "libquadmath.so.0"):
        assert (setup.lib_dir / name).resolve().is_file()
    # rebuilding is idempotent
    again = backend.fast_blas_env(cache_dir=tmp_path / "blas")
    assert again == setup


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fast BLAS preload is Linux only")
def test_fastblas_runner_preloads_openblas_once():
    if backend.fast_blas_env() is None:
        pytest.skip("mlx-cpu wheel or cmeel-openblas not installed")
    code = (
        "import os, mlx.core as mx; from hallucue_mlx.backend import fast_blas_loaded; "
        "mx.eval(mx.ones((64, 64)) @ mx.ones((64, 64))); "
        "print(fast_blas_loaded(), os.environ['HALLUCUE_FAST_BLAS_ACTIVE'])"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", backend.ACTIVE_ENV)}
    env.pop(backend.NO_FAST_BLAS_ENV, None)
    cmd = [sys.executable, "-m", "hallucue_mlx.fastblas", sys.executable, "-c", code]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "1"]
    # opt-out: runs unchanged
    env[backend.NO_FAST_BLAS_ENV] = "1"
    code_off = "from hallucue_mlx.backend import fast_blas_loaded; print(fast_blas_loaded())"
    cmd = [sys.executable, "-m", "hallucue_mlx.fastblas", sys.executable, "-c", code_off]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]


def test_doctor_prints_backend_and_speed():
    result = CliRunner().invoke(app, ["doctor", "--reps", "1"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "MLX backend" in out
    assert {"cpu": "CPU", "metal": "Metal", "cuda": "CUDA"}[backend.backend_name()] in out
    assert "GFLOPS" in out and "mlx-vlm" in out
    assert backend.dtype_name() in out
    if backend.backend_name() == "cpu":  # which SiLU load_model will use here, and the opt-out
        assert "decoder SiLU" in out
        assert ("rational tanh" in out) == backend.vector_silu_wanted()


def test_cli_main_restarts_with_fast_blas(tmp_path):
    """The installed command restarts itself once with OpenBLAS preloaded (Linux CPU)."""
    if not sys.platform.startswith("linux") or backend.fast_blas_env() is None:
        pytest.skip("fast BLAS preload is Linux + mlx-cpu + cmeel-openblas only")
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", backend.ACTIVE_ENV)}
    env.pop(backend.NO_FAST_BLAS_ENV, None)
    env["COLUMNS"] = "200"
    cmd = [sys.executable, "-m", "hallucue_mlx.cli", "doctor", "--reps", "1"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=Path.cwd())
    assert "OpenBLAS (preloaded)" in out.stdout
