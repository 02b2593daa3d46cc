"""blas.py: MLX's CPU matmuls go to a fast BLAS only after a child process has run them on this
CPU, so a library that dies here (SIGILL from instructions the CPU lacks) is never loaded."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hallucue_mlx import blas

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the bridge is Linux only")
needs_cc = pytest.mark.skipif(blas.compiler() is None, reason="no C compiler here")


def _numpy_lib() -> blas.Openblas:
    lib = blas._numpy_openblas()
    if lib is None:
        pytest.skip("this numpy ships no OpenBLAS")
    return lib


def _fake_openblas(tmp_path: Path, body: str, flags: tuple[str, ...] = ()) -> blas.Openblas:
    """A library named like numpy's OpenBLAS (`fake_cblas_sgemm64_` ...) whose sgemm runs `body`
    and otherwise computes nothing: what a broken BLAS looks like to the bridge."""
    src = tmp_path / "fake.c"
    src.write_text(
        textwrap.dedent(
            f"""
            void fake_cblas_sgemm64_(void) {{ {body} }}
            void fake_cblas_dgemm64_(void) {{ {body} }}
            void fake_cblas_cgemm64_(void) {{ {body} }}
            void fake_openblas_set_num_threads64_(int n) {{ (void)n; }}
            int fake_openblas_get_num_threads64_(void) {{ return 1; }}
            char* fake_openblas_get_corename64_(void) {{ return "Fake"; }}
            """
        )
    )
    out = tmp_path / "libfake_openblas64_.so"
    cc = blas.compiler()
    subprocess.run([*cc, *flags, "-O1", "-shared", "-fPIC", "-o", str(out), str(src)], check=True)
    return blas.Openblas(out, "fake_", "64_", True)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", blas.NO_FAST_BLAS_ENV)}
    return {**env, **extra}


@linux
@needs_cc
def test_numpys_openblas_is_checked_then_bound_in_process(tmp_path):
    bridge, status = blas.prepare(_numpy_lib(), cache=tmp_path)
    assert bridge is not None and bridge.is_file(), status
    assert status.fast and status.gflops > 0 and "numpy's OpenBLAS" in status.name
    assert (bridge.parent / "verdict.json").is_file()  # the next process reads it, no new check
    # a fresh process that imports hallucue_mlx first: MLX's matmuls arrive at the bridge
    code = (
        "import ctypes, hallucue_mlx, mlx.core as mx; from hallucue_mlx import blas;"
        "mx.eval(mx.ones((64, 48)) @ mx.ones((48, 32)));"
        "lib = blas._bridge_lib(); lib.hallucue_blas_calls.restype = ctypes.c_ulonglong;"
        "print(blas.status().fast, lib.hallucue_blas_calls() > 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True)
    assert out.stdout.split() == ["True", "True"], out.stderr


@linux
@needs_cc
def test_a_blas_that_crashes_on_this_cpu_is_never_loaded(tmp_path):
    # __builtin_trap is ud2: the same SIGILL an instruction this CPU lacks raises
    broken = _fake_openblas(tmp_path, "__builtin_trap();")
    bridge, status = blas.prepare(broken, cache=tmp_path / "cache")
    assert bridge is None and not status.fast
    assert "SIGILL" in status.reason and "10x slower" in status.reason
    # the verdict is kept: a second process refuses it without crashing a check again
    verdicts = list((tmp_path / "cache").glob("*/verdict.json"))
    assert len(verdicts) == 1 and '"ok": false' in verdicts[0].read_text()
    again_bridge, again = blas.prepare(broken, cache=tmp_path / "cache")
    assert again_bridge is None and again.reason == status.reason
    assert blas.BRIDGE_NAME not in Path("/proc/self/maps").read_text() or blas.loaded()


@linux
@needs_cc
def test_a_blas_that_gives_wrong_numbers_is_not_loaded(tmp_path):
    broken = _fake_openblas(tmp_path, "")  # returns without writing C
    bridge, status = blas.prepare(broken, cache=tmp_path / "cache")
    assert bridge is None and "wrong fp32 result" in status.reason


@linux
def test_mlx_imported_first_keeps_the_reference_blas_and_says_how_to_fix_it():
    code = "import mlx.core, hallucue_mlx; print(hallucue_mlx.blas.status().fast)"
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True)
    assert out.stdout.split() == ["False"]
    if blas.compiler() is not None and blas._numpy_openblas() is not None:
        assert "import hallucue_mlx first" in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1  # one line


@linux
@needs_cc
def test_the_runner_preloads_the_bridge_and_the_opt_out_keeps_the_reference(tmp_path):
    code = "from hallucue_mlx import blas; print(blas.loaded())"
    cmd = [sys.executable, "-m", "hallucue_mlx.fastblas", sys.executable, "-c", code]
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True"]
    env = _env(**{blas.NO_FAST_BLAS_ENV: "1"})
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"] and out.stderr == ""


def test_no_compiler_is_one_line_with_the_fix(tmp_path, monkeypatch):
    lib = blas.Openblas(tmp_path / "libscipy_openblas64_.so", "scipy_", "64_", True)
    lib.path.write_bytes(b"")
    monkeypatch.setattr(blas, "compiler", lambda: None)
    bridge, status = blas.prepare(lib, cache=tmp_path / "cache")
    assert bridge is None and not status.fast
    assert "no C compiler" in status.reason and "apt install gcc" in status.reason


@pytest.mark.slow
@linux
@needs_cc
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="qemu-user is not installed")
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="emulates an x86-64 CPU")
def test_on_an_emulated_avx2_cpu_avx512_code_is_refused_and_numpys_openblas_passes(tmp_path):
    """qemu-user's Haswell has AVX2 and FMA but no AVX-512: the machines where a bundled OpenBLAS
    used to die. numpy's OpenBLAS picks Haswell kernels there and passes; a library whose sgemm
    runs an AVX-512 instruction dies with SIGILL in the check, never in the caller."""
    haswell = ["qemu-x86_64", "-cpu", "Haswell"]
    bridge, _ = blas.prepare(_numpy_lib(), cache=tmp_path / "real")
    assert bridge is not None
    verdict = blas.probe(bridge, prefix=haswell)
    assert verdict.ok and verdict.detail == "Haswell", verdict
    avx512 = _fake_openblas(
        tmp_path,
        'float x[16] = {0}; __asm__ volatile("vmovups %0, %%zmm1" :: "m"(x) : "xmm1");',
        ("-mavx512f",),
    )
    fake_bridge = blas.build_bridge(avx512, tmp_path / "fake", blas.compiler())
    crashed = blas.probe(fake_bridge, prefix=haswell)
    assert not crashed.ok and "SIGILL" in crashed.detail
