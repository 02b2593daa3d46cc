"""Device, dtype and speed: what MLX runs on here and how fast (`hallucue-mlx doctor`).

fp32 on CPU (bf16 and quantized matmuls have no fast CPU path), bf16 on Metal/CUDA. Which BLAS
MLX's Linux CPU backend uses, and why, is blas.py's business.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hallucue_mlx import blas

DTYPES = ("auto", "float32", "bfloat16", "float16")


# Versions reported by `doctor` and recorded in a run's manifest.
PACKAGES = ("hallucue-mlx", "mlx", "mlx-cpu", "mlx-lm", "mlx-vlm", "transformers", "datasets")
PACKAGES += ("math-verify", "numpy", "pillow")


# ---------------------------------------------------------------- device and dtype


def backend_name() -> str:
    """'metal', 'cuda' or 'cpu': the backend MLX's default device runs on."""
    import mlx.core as mx

    if mx.default_device().type == mx.DeviceType.cpu:
        return "cpu"
    if mx.metal.is_available():
        return "metal"
    cuda = getattr(mx, "cuda", None)
    if cuda is not None and cuda.is_available():
        return "cuda"
    return "gpu"


def dtype_name(choice: str = "auto", backend: str | None = None) -> str:
    """Resolve "auto" to float32 on CPU and bfloat16 on a GPU; pass explicit choices through."""
    if choice not in DTYPES:
        raise ValueError(f"dtype {choice!r} is not one of {DTYPES}")
    if choice != "auto":
        return choice
    return "float32" if (backend or backend_name()) == "cpu" else "bfloat16"


def resolve_dtype(choice: str = "auto"):
    """The mlx dtype for a choice in DTYPES (see dtype_name)."""
    import mlx.core as mx

    return getattr(mx, dtype_name(choice))


# ---------------------------------------------------------------- fast BLAS (blas.py)


def fast_blas_loaded() -> bool:
    """True if the checked bridge to a fast BLAS is mapped into this process (blas.py)."""
    return blas.loaded()


def set_blas_threads(n: int) -> bool:
    """Give the fast BLAS in this process n threads; False when none is bound (macOS's
    Accelerate, the reference BLAS)."""
    return blas.set_threads(n)


def blas_threads() -> int | None:
    """The fast BLAS's thread count in this process; None when none is bound."""
    return blas.threads()


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def local_ranks() -> int:
    """How many ranks of a ring launch share this rank's host (mlx.launch's MLX_HOSTFILE lists
    each rank's host:port addresses); 1 when not launched, or when it cannot tell."""
    path, rank = os.environ.get("MLX_HOSTFILE"), os.environ.get("MLX_RANK")
    if not path or rank is None:
        return 1
    try:
        hosts = [{a.rsplit(":", 1)[0] for a in h} for h in json.loads(Path(path).read_text())]
        return max(1, sum(1 for h in hosts if h & hosts[int(rank)]))
    except (OSError, ValueError, IndexError, TypeError, AttributeError):
        return 1


# ---------------------------------------------------------------- measurements and doctor


def matmul_gflops(n: int = 1024, reps: int = 3, dtype: str = "float32") -> float:
    """Best-of-`reps` GFLOPS of an n x n x n matmul on MLX's default device."""
    if reps < 1:
        raise ValueError(f"reps must be >= 1 (timed repetitions), got {reps}")
    import mlx.core as mx

    a = mx.random.normal((n, n)).astype(getattr(mx, dtype))
    b = mx.random.normal((n, n)).astype(getattr(mx, dtype))
    mx.eval(a @ b)  # warm-up
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        mx.eval(a @ b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def memory_gbps(n: int = 4096, reps: int = 3) -> float:
    """Best-of-`reps` GB/s of a float32 matrix-vector product over an n x n matrix: the rate a
    decoded token reads weights at (bandwidth-bound)."""
    if reps < 1:
        raise ValueError(f"reps must be >= 1 (timed repetitions), got {reps}")
    import mlx.core as mx

    w = mx.random.normal((n, n))
    x = mx.random.normal((1, n))
    mx.eval(w, x, x @ w)  # warm-up
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        mx.eval(x @ w)
        best = min(best, time.perf_counter() - start)
    return w.nbytes / best / 1e9


def quantized_gflops(bits: int = 4, group_size: int = 64, rows: int = 64, n: int = 1024) -> float:
    """GFLOPS of a quantized (bits, group_size) n x n matmul over `rows` rows (one timed run:
    on a CPU it is slow enough to measure in one go)."""
    import mlx.core as mx

    w = mx.random.normal((n, n))
    wq, scales, biases = mx.quantize(w, group_size=group_size, bits=bits)
    x = mx.random.normal((rows, n))
    mx.eval(wq, scales, biases, x)
    kw = dict(scales=scales, biases=biases, transpose=True, group_size=group_size, bits=bits)
    mx.eval(mx.quantized_matmul(x[:1], wq, **kw))  # warm-up
    start = time.perf_counter()
    mx.eval(mx.quantized_matmul(x, wq, **kw))
    return 2 * rows * n * n / (time.perf_counter() - start) / 1e9


def quantized_cpu_warning(bits: int, gflops: float | None = None) -> str:
    """The advice for a quantized model on a CPU: MLX has no fast quantized CPU kernel."""
    speed = f"{gflops:.1f} GFLOPS measured here" if gflops is not None else "about 2 GFLOPS"
    return (
        f"This model has {bits}-bit weights and MLX runs on the CPU here: quantized matmuls have "
        f"no fast CPU kernel ({speed}, against tens to hundreds for float32 with OpenBLAS), so it "
        "would crawl. Use a float32 copy of the model on this CPU (model.id of an unquantized "
        "checkpoint, e.g. convert it without -q), or run on a GPU (Apple silicon / CUDA)."
    )


@dataclass(frozen=True)
class Diagnosis:
    """What `hallucue-mlx doctor` reports."""

    versions: dict[str, str]
    platform: str
    python: str
    backend: str
    device: str
    dtype: str
    gflops: float
    fast_blas: bool
    advice: str
    quant_gflops: float | None = None  # 4-bit matmul on the CPU (no fast kernel there)
    blas: str = ""  # which BLAS MLX's CPU matmuls use (blas.status)
    blas_reason: str = ""  # and why


# Below this on CPU the reference BLAS is almost certainly in use (it measures about 8).
SLOW_GFLOPS = 30.0


def diagnose(reps: int = 3) -> Diagnosis:
    import mlx.core as mx

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "-"
    backend = backend_name()
    gflops = matmul_gflops(reps=reps)
    loaded = fast_blas_loaded()
    advice = ""
    status = blas.status()
    if backend == "cpu" and not status.fast and sys.platform.startswith("linux"):
        advice = f"MLX uses its reference BLAS: {status.reason}."
    elif backend == "cpu" and gflops < SLOW_GFLOPS:
        advice = "fp32 matmul is slow on this CPU; expect long runs."
    return Diagnosis(
        quant_gflops=quantized_gflops() if backend == "cpu" else None,
        versions=versions,
        platform=platform.platform(),
        python=platform.python_version(),
        backend=backend,
        device=str(mx.default_device()),
        dtype=dtype_name("auto", backend),
        gflops=gflops,
        fast_blas=loaded,
        advice=advice,
        blas=status.name,
        blas_reason=status.reason,
    )


def print_diagnosis(d: Diagnosis, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title="hallucue-mlx doctor", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for name, version in d.versions.items():
        table.add_row(name, version)
    table.add_row("platform", f"{d.platform} (Python {d.python})")
    table.add_row(
        "MLX backend", {"cpu": "CPU", "metal": "Metal", "cuda": "CUDA"}.get(d.backend, d.backend)
    )
    table.add_row("default device", d.device)
    table.add_row("compute dtype", d.dtype)
    table.add_row("fp32 matmul 1024^3", f"{d.gflops:.1f} GFLOPS")
    if d.quant_gflops is not None:
        table.add_row("4-bit matmul 64x1024^2", f"{d.quant_gflops:.1f} GFLOPS (no fast CPU kernel)")
    if d.backend == "cpu" and sys.platform.startswith("linux"):
        table.add_row("CPU BLAS", f"{d.blas}: {d.blas_reason}")
    console.print(table)
    if d.advice:
        console.print(f"[yellow]{d.advice}[/yellow]")
