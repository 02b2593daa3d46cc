"""The one place that knows about the CPU: a fast BLAS for MLX's Linux CPU backend.

The mlx-cpu wheel links a reference BLAS (fp32 GEMM about 8 GFLOPS). numpy's Linux wheel ships an
OpenBLAS built for every x86-64 and Arm core it knows (DYNAMIC_ARCH: it picks Haswell, SkylakeX,
Zen, ... kernels at run time), but with renamed 64-bit-integer symbols (`scipy_cblas_sgemm64_`).
MLX calls only `cblas_sgemm`, `cblas_dgemm` and `cblas_cgemm`, so a ten-line C bridge
(`_bridge_source`), compiled once per machine, forwards those to numpy's OpenBLAS.

A BLAS must never crash the process (an earlier bundled OpenBLAS ran AVX-512 code on AVX2-only
CPUs and died with SIGILL), so the bridge is first loaded in a child process that runs MLX matmuls
of small and large shapes against numpy; only a bridge whose child exits cleanly with correct
numbers is loaded here. The verdict is cached per library, MLX build and CPU.

Loading: `activate()` runs when `hallucue_mlx` is imported (no MLX import, a few ms once the
verdict is cached) and opens the bridge with RTLD_GLOBAL, so `libmlx`, loaded later, binds its
`cblas_sgemm` to it: the command line, notebooks, the API and `python -c` users all get it. If
mlx.core was imported first, the process keeps the reference BLAS and one line says how to fix it.
`python -m hallucue_mlx.fastblas CMD ...` runs any command with the bridge preloaded (preload_env).

HALLUCUE_NO_FAST_BLAS=1 turns it off. On macOS (Accelerate) and GPUs nothing here matters.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

NO_FAST_BLAS_ENV = "HALLUCUE_NO_FAST_BLAS"  # set to 1 to keep MLX's reference BLAS
BRIDGE_NAME = "libhallucue_blas.so"
PROBE_TIMEOUT_S = 300
# OpenBLAS's threads when the user sets none (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS win): the
# cores other work leaves idle when this process starts. OpenBLAS's helper threads spin between
# calls; on cores that other jobs use that costs 2-8x, on idle ones the second core pays
# (docs/design.md, "Backend").
THREAD_ENVS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
_VERDICT_VERSION = 1


@dataclass(frozen=True)
class Openblas:
    """An OpenBLAS on disk and how its symbols are named (`<prefix>cblas_sgemm<suffix>`)."""

    path: Path
    prefix: str
    suffix: str
    int64: bool  # ILP64: 64-bit integer arguments


@dataclass(frozen=True)
class BlasStatus:
    """What `activate` found: which BLAS MLX uses in this process, and why."""

    name: str  # "numpy's OpenBLAS (<core>)", "MLX's reference BLAS", "Accelerate", ...
    fast: bool  # a fast BLAS is bound in this process
    reason: str  # one sentence: why this one (and what it costs, when slow)
    gflops: float | None = None  # the probe's fp32 1024^3 matmul, when it ran
    library: str | None = None  # the OpenBLAS the bridge forwards to


# ---------------------------------------------------------------- what is there


def _numpy_openblas() -> Openblas | None:
    """numpy's bundled OpenBLAS (numpy 2: numpy.libs/libscipy_openblas64_-*.so; numpy 1.x:
    libopenblas64_p-*.so), found without importing numpy."""
    spec = importlib.util.find_spec("numpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    libs = Path(next(iter(spec.submodule_search_locations))).parent / "numpy.libs"
    hits = sorted(libs.glob("libscipy_openblas64_*.so*")) if libs.is_dir() else []
    if hits:
        return Openblas(hits[0], "scipy_", "64_", True)
    hits = sorted(libs.glob("libscipy_openblas*.so*")) if libs.is_dir() else []
    if hits:
        return Openblas(hits[0], "scipy_", "", False)
    hits = sorted(libs.glob("libopenblas64_*.so*")) if libs.is_dir() else []  # numpy 1.x
    return Openblas(hits[0], "", "64_", True) if hits else None


def _bridge_source(lib: Openblas) -> str:
    """C that exports MLX's three CBLAS calls and forwards them to `lib`; also a call counter (the
    probe checks that MLX's matmuls really arrive here) and the thread and core queries."""
    i = "long long" if lib.int64 else "int"
    p, s = lib.prefix, lib.suffix
    gemm = {"s": "float", "d": "double"}
    lines = [
        f"typedef {i} bi;",
        "static unsigned long long calls = 0;",
        "unsigned long long hallucue_blas_calls(void) { return calls; }",
    ]
    for t, ty in gemm.items():
        lines += [
            f"extern void {p}cblas_{t}gemm{s}(int, int, int, bi, bi, bi, {ty}, const {ty}*, bi,"
            f" const {ty}*, bi, {ty}, {ty}*, bi);",
            f"void cblas_{t}gemm(int o, int ta, int tb, int m, int n, int k, {ty} al,"
            f" const {ty}* a, int lda, const {ty}* b, int ldb, {ty} be, {ty}* c, int ldc) {{",
            "  __atomic_fetch_add(&calls, 1, __ATOMIC_RELAXED);",
            f"  {p}cblas_{t}gemm{s}(o, ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc); }}",
        ]
    lines += [
        f"extern void {p}cblas_cgemm{s}(int, int, int, bi, bi, bi, const void*, const void*, bi,"
        " const void*, bi, const void*, void*, bi);",
        "void cblas_cgemm(int o, int ta, int tb, int m, int n, int k, const void* al,"
        " const void* a, int lda, const void* b, int ldb, const void* be, void* c, int ldc) {",
        "  __atomic_fetch_add(&calls, 1, __ATOMIC_RELAXED);",
        f"  {p}cblas_cgemm{s}(o, ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc); }}",
        f"extern void {p}openblas_set_num_threads{s}(int);",
        f"extern int {p}openblas_get_num_threads{s}(void);",
        f"extern char* {p}openblas_get_corename{s}(void);",
        "void hallucue_blas_set_threads(int n) {"
        f" {p}openblas_set_num_threads{s}(n > 0 ? n : 1); }}",
        f"int hallucue_blas_threads(void) {{ return {p}openblas_get_num_threads{s}(); }}",
        f"const char* hallucue_blas_core(void) {{ return {p}openblas_get_corename{s}(); }}",
    ]
    return "\n".join(lines) + "\n"


def compiler() -> list[str] | None:
    """A C compiler command: $CC, cc, gcc or clang on PATH, else the `ziglang` package's."""
    if os.environ.get("CC"):
        cmd = os.environ["CC"].split()
        if shutil.which(cmd[0]):
            return cmd
    for name in ("cc", "gcc", "clang"):
        if path := shutil.which(name):
            return [path]
    if importlib.util.find_spec("ziglang") is not None:
        return [sys.executable, "-m", "ziglang", "cc"]
    return None


def _cpu_identity() -> str:
    """The CPU's model and feature flags: a verdict holds for this CPU only."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return os.uname().machine
    keep = ("model name", "flags", "Features", "CPU part", "CPU implementer")
    seen = [ln for ln in text.splitlines() if ln.split(":")[0].strip() in keep]
    return "\n".join(dict.fromkeys(seen))


def _mlx_identity() -> str:
    """The MLX library a verdict was measured with (path, size, mtime), without importing it."""
    spec = importlib.util.find_spec("mlx")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        lib = Path(loc) / "lib" / "libmlx.so"
        if lib.exists():
            st = lib.stat()
            return f"{lib}:{st.st_size}:{st.st_mtime_ns}"
    return "mlx-not-found"


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base, "hallucue-mlx", "blas")


def _key(lib: Openblas) -> str:
    st = lib.path.stat()
    parts = [
        str(_VERDICT_VERSION),
        _bridge_source(lib),
        f"{lib.path.resolve()}:{st.st_size}:{st.st_mtime_ns}",
        _mlx_identity(),
        _cpu_identity(),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- build and check


def build_bridge(lib: Openblas, out: Path, cc: list[str]) -> Path:
    """Compile the bridge for `lib` into out/libhallucue_blas.so (atomically); raises
    RuntimeError with the compiler's message."""
    out.mkdir(parents=True, exist_ok=True)
    src = out / "bridge.c"
    src.write_text(_bridge_source(lib))
    tmp = out / f".{BRIDGE_NAME}.{os.getpid()}"
    cmd = [*cc, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(src), str(lib.path)]
    cmd += [f"-Wl,-rpath,{lib.path.parent}", "-Wl,--no-undefined"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        tmp.unlink(missing_ok=True)
        msg = (res.stderr or res.stdout).strip().splitlines()
        raise RuntimeError(f"{' '.join(cc)} failed: {msg[-1] if msg else res.returncode}")
    os.replace(tmp, out / BRIDGE_NAME)
    return out / BRIDGE_NAME


# Run in a child: bind MLX to the library, compare its matmuls with numpy's at shapes that take
# OpenBLAS's small-matrix kernels and its blocked ones, in every transpose, and time one GEMM.
_PROBE = r"""
import ctypes, json, sys, time
lib = ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)
import mlx.core as mx
import numpy as np
mx.set_default_device(mx.cpu)
rng = np.random.default_rng(0)
shapes = [(1, 1, 1), (2, 3, 4), (7, 5, 3), (8, 8, 8), (16, 64, 33), (128, 256, 64), (300, 200, 500)]
for m, k, n in shapes:
    for ta in (False, True):
        for tb in (False, True):
            a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
            b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
            x, y = mx.array(a), mx.array(b)
            got = np.array((x.T if ta else x) @ (y.T if tb else y))
            want = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
            err = float(np.abs(got - want).max())
            if not err <= 1e-4 * (k + 1):
                sys.exit(f"wrong fp32 result at {m}x{k}x{n} (transposed {ta}, {tb}): error {err:.3g}")
try:
    d = rng.standard_normal((33, 17))
    got = np.array(mx.array(d, dtype=mx.float64) @ mx.array(d.T, dtype=mx.float64))
    if not np.allclose(got, d @ d.T, atol=1e-9):
        sys.exit("wrong fp64 result")
except (ValueError, RuntimeError):
    pass  # an MLX without float64 matmuls on this device
calls = ctypes.c_ulonglong
lib.hallucue_blas_calls.restype = calls
if lib.hallucue_blas_calls() == 0:
    sys.exit("MLX's matmuls did not reach the library (its BLAS was bound before)")
n = 1024
a, b = mx.random.normal((n, n)), mx.random.normal((n, n))
mx.eval(a @ b)
best = min((lambda t: (mx.eval(a @ b), time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(3))
lib.hallucue_blas_core.restype = ctypes.c_char_p
core = (lib.hallucue_blas_core() or b"").decode().strip()
print(json.dumps({"gflops": 2 * n**3 / best / 1e9, "core": core}))
"""


@dataclass(frozen=True)
class Verdict:
    """The child's answer for one library on this CPU."""

    ok: bool
    detail: str  # why not (a crash names its signal), or the core OpenBLAS chose
    gflops: float | None = None


def probe(
    library: Path, prefix: list[str] | None = None, timeout: float = PROBE_TIMEOUT_S
) -> Verdict:
    """Load `library` in a child process and check MLX's matmuls through it. `prefix` runs the
    child under another program (tests: an emulator of an older CPU)."""
    cmd = [*(prefix or []), sys.executable, "-c", _PROBE, str(library)]
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return Verdict(False, f"the check did not finish in {timeout:.0f} s")
    except OSError as e:
        return Verdict(False, f"the check could not start: {e}")
    code = res.returncode
    if code < 0 or code >= 128:  # killed by a signal (directly, or as a shell's 128 + n)
        sig = -code if code < 0 else code - 128
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return Verdict(False, f"it crashed the check with {name} on this CPU")
    lines = (res.stdout or "").strip().splitlines()
    if code != 0 or not lines:
        err = (res.stderr or "").strip().splitlines()
        return Verdict(False, err[-1] if err else f"the check exited with status {code}")
    try:
        out = json.loads(lines[-1])
        return Verdict(True, out["core"], float(out["gflops"]))
    except (ValueError, KeyError, TypeError):
        return Verdict(False, f"the check printed no verdict: {lines[-1][:200]}")


def _read_verdict(path: Path) -> Verdict | None:
    try:
        d = json.loads(path.read_text())
        return Verdict(bool(d["ok"]), str(d["detail"]), d.get("gflops"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_verdict(path: Path, v: Verdict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(asdict(v)))
    os.replace(tmp, path)


def _writable(root: Path) -> Path:
    try:
        root.mkdir(parents=True, exist_ok=True)
        if os.access(root, os.W_OK):
            return root
    except OSError:
        pass
    return Path(tempfile.gettempdir(), f"hallucue-mlx-{os.getuid()}", "blas")


def prepare(
    lib: Openblas | None = None, cache: Path | None = None, say=None
) -> tuple[Path | None, BlasStatus]:
    """The checked bridge for `lib` (numpy's OpenBLAS by default), built and probed once per
    machine, and the status it gives. (None, status) when there is none to use."""
    reference = "MLX's reference BLAS"
    slow = "matmuls about 10x slower"
    lib = lib or _numpy_openblas()
    if lib is None:
        why = f"numpy ships no OpenBLAS here; {slow}"
        return None, BlasStatus(reference, False, why)
    folder = _writable(cache or _cache_root()) / _key(lib)
    bridge, vfile = folder / BRIDGE_NAME, folder / "verdict.json"
    verdict = _read_verdict(vfile) if bridge.exists() else None
    if verdict is None:
        cc = compiler()
        if cc is None:
            why = (
                f"no C compiler to build the 10-line bridge to numpy's OpenBLAS ({slow}); "
                "install one (`sudo apt install gcc`, or `pip install ziglang`) and rerun"
            )
            return None, BlasStatus(reference, False, why, library=str(lib.path))
        if say is not None:
            say("hallucue-mlx: checking numpy's OpenBLAS for MLX on this CPU (once per machine)")
        try:
            build_bridge(lib, folder, cc)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            why = f"the bridge to numpy's OpenBLAS did not build ({e}); {slow}"
            return None, BlasStatus(reference, False, why, library=str(lib.path))
        verdict = probe(bridge)
        try:
            _write_verdict(vfile, verdict)
        except OSError:
            pass  # checked again next time
    if not verdict.ok:
        why = f"numpy's OpenBLAS was not used: {verdict.detail}; {slow}"
        return None, BlasStatus(reference, False, why, library=str(lib.path))
    name = f"numpy's OpenBLAS ({verdict.detail} kernels)" if verdict.detail else "numpy's OpenBLAS"
    why = "checked on this CPU in a separate process before loading"
    return bridge, BlasStatus(name, True, why, verdict.gflops, str(lib.path))


# ---------------------------------------------------------------- in this process


_status: BlasStatus | None = None


def _wanted() -> str | None:
    """Why not to try (a sentence), or None to go ahead."""
    if not sys.platform.startswith("linux"):
        return "not Linux: MLX uses the platform's BLAS"
    if os.environ.get(NO_FAST_BLAS_ENV, "") not in ("", "0"):
        return f"{NO_FAST_BLAS_ENV} is set; matmuls about 10x slower on the CPU (unset it)"
    return None


def _mapped(name: str) -> bool:
    try:
        return name in Path("/proc/self/maps").read_text()
    except OSError:
        return False


def _cpu_times(cpus: set[int]) -> tuple[int, int]:
    """(idle, total) jiffies of these CPUs so far, from /proc/stat."""
    idle = total = 0
    with open("/proc/stat") as f:
        for line in f:
            name, *vals = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                nums = [int(v) for v in vals[:8]]
                idle += nums[3] + nums[4]  # idle + iowait
                total += sum(nums)
    return idle, total


def default_threads(sample_s: float = 0.05) -> int:
    """OpenBLAS threads for this process: the cores it may use that are idle right now (other
    processes' use over `sample_s`, rounded), at least 1."""
    try:
        cpus = set(os.sched_getaffinity(0))
        i0, t0 = _cpu_times(cpus)
        time.sleep(sample_s)
        i1, t1 = _cpu_times(cpus)
    except (AttributeError, OSError, ValueError):
        return 1
    if t1 <= t0:
        return 1
    idle_cores = len(cpus) * (i1 - i0) / (t1 - t0)
    return max(1, min(len(cpus), round(idle_cores)))


def activate(say=None) -> BlasStatus:
    """Bind MLX (not yet imported) to the checked fast BLAS; once per process. `say(line)` gets
    the one line worth telling a user (a first-time check, or why matmuls will be slow)."""
    global _status
    if _status is not None:
        return _status
    say = say or (lambda line: print(line, file=sys.stderr))
    if (why := _wanted()) is not None:
        linux = sys.platform.startswith("linux")
        _status = BlasStatus("MLX's reference BLAS" if linux else "platform BLAS", False, why)
        return _status
    if _mapped(BRIDGE_NAME):  # preloaded (python -m hallucue_mlx.fastblas)
        if not any(os.environ.get(k) for k in THREAD_ENVS):
            set_threads(default_threads())
        _status = BlasStatus("numpy's OpenBLAS", True, "preloaded by the command that started this")
        return _status
    bridge, status = prepare(say=say)
    if bridge is not None and "mlx.core" in sys.modules:
        status = BlasStatus(
            "MLX's reference BLAS",
            False,
            "mlx.core was imported before hallucue_mlx, so MLX is bound to its reference BLAS "
            "(matmuls about 10x slower): import hallucue_mlx first, or start Python with "
            "`python -m hallucue_mlx.fastblas python ...`",
        )
    elif bridge is not None:
        try:
            lib = ctypes.CDLL(str(bridge), mode=ctypes.RTLD_GLOBAL)
            if not any(os.environ.get(k) for k in THREAD_ENVS):
                lib.hallucue_blas_set_threads(default_threads())
        except OSError as e:
            status = BlasStatus("MLX's reference BLAS", False, f"the bridge did not load: {e}")
    if not status.fast:
        say(f"hallucue-mlx: MLX uses its reference BLAS on the CPU: {status.reason}")
    _status = status
    return status


def status() -> BlasStatus:
    """What activate() found (running it if it has not run)."""
    return _status or activate(say=lambda line: None)


@functools.cache
def _bridge_lib() -> ctypes.CDLL | None:
    """The bridge mapped into this process, or None."""
    if not _mapped(BRIDGE_NAME):
        return None
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
        path = next(ln.split()[-1] for ln in maps if ln.endswith(BRIDGE_NAME))
        return ctypes.CDLL(path)
    except (OSError, StopIteration):
        return None


def set_threads(n: int) -> bool:
    """Give the bridged OpenBLAS n threads; False when none is bound (Accelerate, reference)."""
    lib = _bridge_lib()
    if lib is None:
        return False
    lib.hallucue_blas_set_threads(max(1, int(n)))
    return True


def threads() -> int | None:
    """The bridged OpenBLAS's thread count; None when none is bound."""
    lib = _bridge_lib()
    return None if lib is None else int(lib.hallucue_blas_threads())


def loaded() -> bool:
    """True if the bridge to a fast BLAS is mapped into this process."""
    return _mapped(BRIDGE_NAME)


def preload_env(env: dict[str, str]) -> dict[str, str]:
    """`env` with the checked bridge on LD_PRELOAD (for a child process that may import MLX before
    hallucue_mlx); unchanged where there is none, with the one line saying why."""
    env = dict(env)
    if _wanted() is None:
        bridge, st = prepare(say=lambda line: print(line, file=sys.stderr))
        if bridge is not None:
            rest = [p for p in env.get("LD_PRELOAD", "").split(":") if p]
            env["LD_PRELOAD"] = ":".join([str(bridge), *rest])
        else:
            print(
                f"hallucue-mlx: MLX uses its reference BLAS on the CPU: {st.reason}",
                file=sys.stderr,
            )
    return env
