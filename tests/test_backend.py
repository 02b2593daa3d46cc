"""Backend: dtype choice and `hallucue-mlx doctor`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hallucue_mlx import backend, blas
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


def test_doctor_prints_backend_and_speed():
    result = CliRunner().invoke(app, ["doctor", "--reps", "1"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "MLX backend" in out
    assert {"cpu": "CPU", "metal": "Metal", "cuda": "CUDA"}[backend.backend_name()] in out
    assert "GFLOPS" in out and "mlx-vlm" in out
    assert backend.dtype_name() in out


def test_doctor_names_the_blas_and_why():
    """doctor says which BLAS MLX's CPU matmuls use and why (the command, as a user runs it)."""
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env["COLUMNS"] = "200"
    cmd = [sys.executable, "-m", "hallucue_mlx.cli", "doctor", "--reps", "1"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=Path.cwd())
    if backend.backend_name() == "cpu" and sys.platform.startswith("linux"):
        status = blas.status()
        assert "CPU BLAS" in out.stdout and status.name in out.stdout
        assert "HALLUCUE_NO_FAST_BLAS" not in out.stdout  # never advises turning the check off
