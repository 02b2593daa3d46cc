"""Device, dtype and BLAS: what MLX runs on here and how fast.

fp32 on CPU (bf16 and quantized matmuls have no fast CPU path), bf16 on Metal/CUDA.

The mlx-cpu wheel for Linux links a reference BLAS (fp32 GEMM about 8 GFLOPS). The PyPI package
cmeel-openblas ships an OpenBLAS that is 30-60x faster; it needs libgfortran.so.5 and
libquadmath.so.0, which the mlx-cpu wheel vendors under hashed names. Preloading only works
from process start, so `ensure_fast_blas()` starts the process again once with LD_PRELOAD set.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

DTYPES = ("auto", "float32", "bfloat16", "float16")

NO_FAST_BLAS_ENV = "HALLUCUE_NO_FAST_BLAS"  # set to 1 to opt out
EXACT_SILU_ENV = "HALLUCUE_EXACT_SILU"  # set to 1 to keep MLX's own SiLU on x86-64 CPUs
CPU_THREADS_ENV = "HALLUCUE_CPU_THREADS"  # threads the loss phase uses on MLX's CPU backend
ACTIVE_ENV = "HALLUCUE_FAST_BLAS_ACTIVE"  # guard: set in the restarted process
# Versions reported by `doctor` and recorded in a run's manifest.
PACKAGES = ("hallucue-mlx", "mlx", "mlx-cpu", "mlx-lm", "mlx-vlm", "transformers", "datasets")
PACKAGES += ("math-verify", "cmeel-openblas", "numpy", "pillow")


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


def vector_silu_wanted() -> bool:
    """Whether load_model swaps the decoder MLPs' SiLU for models/vector_silu.py's: on MLX's
    CPU device on x86-64 (where MLX computes exp one float at a time), unless
    HALLUCUE_EXACT_SILU=1. Metal, CUDA and Arm CPUs have vector exps."""
    import mlx.core as mx

    if os.environ.get(EXACT_SILU_ENV, "") not in ("", "0"):
        return False
    on_cpu = mx.default_device().type == mx.DeviceType.cpu
    return on_cpu and platform.machine().lower() in ("x86_64", "amd64")


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


# ---------------------------------------------------------------- fast BLAS on Linux CPU


@dataclass(frozen=True)
class FastBlasEnv:
    """What to preload and where its dependencies are; `env` holds the variables to set."""

    openblas: Path
    lib_dir: Path
    env: dict[str, str] = field(default_factory=dict)


def _site_dirs() -> list[Path]:
    spec = importlib.util.find_spec("mlx")  # finds the package without loading libmlx
    dirs = [Path(p).parent for p in (spec.submodule_search_locations or [])] if spec else []
    dirs += [Path(p) for p in sys.path if p]
    return list(dict.fromkeys(d for d in dirs if d.is_dir()))


def _find_first(dirs: list[Path], sub: str, pattern: str) -> Path | None:
    for d in dirs:
        hits = sorted((d / sub).glob(pattern)) if (d / sub).is_dir() else []
        if hits:
            return hits[0]
    return None


def fast_blas_env(cache_dir: Path | None = None) -> FastBlasEnv | None:
    """Build the private library folder and the LD_PRELOAD/LD_LIBRARY_PATH to use, or None.

    None when not on Linux, when mlx is not the CPU wheel with its vendored gfortran, or when
    cmeel-openblas is not installed.
    """
    if not sys.platform.startswith("linux"):
        return None
    dirs = _site_dirs()
    openblas = _find_first(dirs, "cmeel.prefix/lib", "libopenblas.so.0")
    gfortran = _find_first(dirs, "mlx_cpu.libs", "libgfortran*.so.5*")
    quadmath = _find_first(dirs, "mlx_cpu.libs", "libquadmath*.so.0*")
    if openblas is None or gfortran is None or quadmath is None:
        return None
    lib_dir = cache_dir or Path(
        os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "hallucue-mlx", "blas"
    )
    lib_dir.mkdir(parents=True, exist_ok=True)
    # Standard names for OpenBLAS; the hashed name too, which the vendored gfortran asks for.
    links = {"libgfortran.so.5": gfortran, "libquadmath.so.0": quadmath, quadmath.name: quadmath}
    for name, target in links.items():
        link = lib_dir / name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        tmp = lib_dir / f".{name}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        os.replace(tmp, link)  # atomic: concurrent processes never see a missing link
    preload = [p for p in os.environ.get("LD_PRELOAD", "").split(":") if p]
    libpath = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    env = {
        "LD_PRELOAD": ":".join([str(openblas), *preload]),
        "LD_LIBRARY_PATH": ":".join([str(lib_dir), *libpath]),
        ACTIVE_ENV: "1",
    }
    return FastBlasEnv(openblas=openblas, lib_dir=lib_dir, env=env)


def fast_blas_loaded() -> bool:
    """True if an OpenBLAS is mapped into this process (Linux; False elsewhere)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return False
    return "libopenblas" in maps


@functools.cache
def _openblas() -> ctypes.CDLL | None:
    """The OpenBLAS mapped into this process, or None (macOS's Accelerate, the reference BLAS).
    Looked up once: it is preloaded at start or not at all, and the loss phase asks every step."""
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return None
    path = next((ln.split()[-1] for ln in maps if "libopenblas" in ln.split()[-1]), None)
    try:
        return ctypes.CDLL(path) if path is not None else None
    except OSError:
        return None


def set_blas_threads(n: int) -> bool:
    """Give the OpenBLAS mapped into this process n threads (openblas_set_num_threads); False
    when none is loaded (macOS's Accelerate, the reference BLAS)."""
    lib = _openblas()
    try:
        lib.openblas_set_num_threads(max(1, n))
    except AttributeError:  # None, or a library without the call
        return False
    return True


def blas_threads() -> int | None:
    """The thread count of the OpenBLAS mapped into this process; None when none is loaded."""
    lib = _openblas()
    try:
        return int(lib.openblas_get_num_threads())
    except AttributeError:
        return None


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cpu_threads() -> int:
    """Threads the loss phase evaluates a step's groups on (`workers.StreamPool`): on MLX's CPU
    backend this process's share of the cores (ranks of one host split them), or
    HALLUCUE_CPU_THREADS; 1 on a GPU, which runs one graph at a time anyway. Results do not
    depend on it."""
    import mlx.core as mx

    if mx.default_device().type != mx.DeviceType.cpu:
        return 1
    raw = os.environ.get(CPU_THREADS_ENV, "").strip()
    if raw:
        try:
            n = int(raw)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(
                f"{CPU_THREADS_ENV}={raw!r} is not a thread count; set a whole number >= 1 "
                "(or unset it to use every core)"
            )
        return n
    return max(1, usable_cores() // local_ranks())


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


def _wants_fast_blas() -> bool:
    return (
        sys.platform.startswith("linux")
        and os.environ.get(NO_FAST_BLAS_ENV, "") not in ("1", "true", "yes")
        and not os.environ.get(ACTIVE_ENV)
        and "libopenblas" not in os.environ.get("LD_PRELOAD", "")
    )


def ensure_fast_blas(argv: list[str] | None = None) -> None:
    """Start this process again with OpenBLAS preloaded, once; returns only if nothing to do.

    Opt out with HALLUCUE_NO_FAST_BLAS=1. `argv` defaults to the original command line.
    """
    if not _wants_fast_blas():
        return
    setup = fast_blas_env()
    if setup is None:
        return
    args = argv if argv is not None else list(getattr(sys, "orig_argv", [])[1:] or sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *args], {**os.environ, **setup.env})
    except OSError:
        return  # could not restart: carry on with the slow BLAS (doctor will say so)


def exec_with_fast_blas(cmd: list[str]) -> None:
    """Replace this process by `cmd` with OpenBLAS preloaded where possible (else as is)."""
    if not cmd:
        raise SystemExit("usage: python -m hallucue_mlx.fastblas <command> [args...]")
    env = dict(os.environ)
    if _wants_fast_blas() and (setup := fast_blas_env()) is not None:
        env.update(setup.env)
    os.execvpe(cmd[0], cmd, env)


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
    vector_silu: bool = False  # load_model swaps in models/vector_silu.py (x86-64 CPU)
    loss_threads: int = 1  # threads the loss phase runs a step's groups on (cpu_threads)


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
    try:
        threads, bad_threads = cpu_threads(), ""
    except ValueError as e:
        threads, bad_threads = 1, str(e)
    if backend == "cpu" and sys.platform.startswith("linux") and not loaded:
        if fast_blas_env() is None:
            advice = (
                "MLX uses its slow reference BLAS: install cmeel-openblas "
                "(pip install cmeel-openblas) so hallucue-mlx can preload OpenBLAS."
            )
        elif os.environ.get(NO_FAST_BLAS_ENV):
            advice = f"Fast BLAS is off because {NO_FAST_BLAS_ENV} is set: unset it."
        else:
            advice = (
                "MLX uses its slow reference BLAS in this process: run commands through "
                "`hallucue-mlx ...` or `python -m hallucue_mlx.fastblas <command>`."
            )
    elif backend == "cpu" and gflops < SLOW_GFLOPS:
        advice = "fp32 matmul is slow on this CPU; expect long runs."
    advice = " ".join(a for a in (advice, bad_threads) if a)
    return Diagnosis(
        quant_gflops=quantized_gflops() if backend == "cpu" else None,
        vector_silu=vector_silu_wanted(),
        loss_threads=threads,
        versions=versions,
        platform=platform.platform(),
        python=platform.python_version(),
        backend=backend,
        device=str(mx.default_device()),
        dtype=dtype_name("auto", backend),
        gflops=gflops,
        fast_blas=loaded,
        advice=advice,
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
        blas = "OpenBLAS (preloaded)" if d.fast_blas else "reference BLAS (slow)"
        table.add_row("CPU BLAS", blas)
    if d.backend == "cpu":
        silu = (
            f"rational tanh, without MLX's scalar exp ({EXACT_SILU_ENV}=1: MLX's own)"
            if d.vector_silu
            else "MLX's own"
        )
        table.add_row("decoder SiLU", silu)
        table.add_row(
            "loss threads",
            f"{d.loss_threads}: a step's groups at once ({CPU_THREADS_ENV}=N to change)",
        )
    console.print(table)
    if d.advice:
        console.print(f"[yellow]{d.advice}[/yellow]")
