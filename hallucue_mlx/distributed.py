"""The distributed context: which process this is among how many, and the few collectives that
data-parallel training and the grid need, over MLX's mx.distributed (ring over TCP, JACCL over
Thunderbolt, MPI), as launched by `mlx.launch`.

One process (not launched by mlx.launch or mpirun): `World()`, rank 0 of 1. Nothing is initialised
and every collective returns its input, so a one-process run computes exactly what it did before.

A collective blocks until every rank joins. A rank that dies closes its sockets and the ring backend
raises ("connection to a peer was lost", measured on Linux); that becomes `PeerLost`, whose message
says what to do. A host that vanishes without closing its sockets (power, network) leaves the others
blocked, so collectives between training steps run under a watchdog: after HALLUCUE_DIST_TIMEOUT
seconds (default 1800; 0: off) it prints what was awaited and stops the process (exit 75). Waits
that may legitimately be long (rank 0 evaluating, the grid waiting for other ranks' cells) pass
no timeout.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from hallucue_mlx.backend import local_ranks, set_blas_threads

# Set by mlx.launch (every backend) and by Open MPI / PMI launchers: only then is init() called.
LAUNCH_ENV = ("MLX_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")
TIMEOUT_ENV = "HALLUCUE_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 1800.0  # seconds; a training step's collectives wait for the slowest rank only
STUCK_EXIT = 75  # exit status when the watchdog stops a process (EX_TEMPFAIL: rerun to resume)


class PeerLost(RuntimeError):
    """Another rank stopped (it crashed, was killed, or its host went away) during a collective."""


class MainFailed(RuntimeError):
    """Rank 0 failed in work it does alone (its error is printed by rank 0)."""


class Terminated(RuntimeError):
    """SIGTERM under a launcher: mlx.launch stops every rank when one of them fails."""


def _timeout() -> float | None:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        t = float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        t = DEFAULT_TIMEOUT
    return t if t > 0 else None


def _stuck(rank: int, size: int, what: str, seconds: float) -> None:
    print(
        f"error: rank {rank} of {size}: no answer from the other ranks for {seconds:.0f} s while "
        f"waiting for {what}; a rank or its host is stuck or gone. Stopping this process; the last "
        "checkpoint is kept: rerun the same command to resume (raise the wait with "
        f"{TIMEOUT_ENV}=SECONDS, 0 for none).",
        file=sys.stderr,
        flush=True,
    )
    os._exit(STUCK_EXIT)


def _to_bytes(a: mx.array) -> np.ndarray:
    return np.array(a.reshape(-1).view(mx.uint8))


def _dtype(name: str) -> mx.Dtype:
    return mx.bool_ if name == "bool" else getattr(mx, name)


@dataclass(frozen=True)
class World:
    """This process's place among the launched ones; the collectives every rank calls in step.

    `what` names the wait in error messages; `timeout` is True for the watchdog's default, None
    for no limit, or seconds."""

    rank: int = 0
    size: int = 1
    group: Any = field(default=None, compare=False, repr=False)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def share(self, n: int, what: str) -> range:
        """This rank's contiguous share of n units (n must divide evenly): [rank * n/size, ...)."""
        if n % self.size:
            raise ValueError(
                f"{what} = {n} does not split evenly over {self.size} processes; make it a "
                f"multiple of {self.size} (or launch a number of processes that divides it)"
            )
        k = n // self.size
        return range(self.rank * k, (self.rank + 1) * k)

    @contextmanager
    def _collective(self, what: str, timeout: float | None) -> Iterator[None]:
        timer = None
        if timeout:
            timer = threading.Timer(timeout, _stuck, (self.rank, self.size, what, timeout))
            timer.daemon = True
            timer.start()
        try:
            yield
        except RuntimeError as e:  # the backend's own words stay in the message
            _STOPPING.set()  # the launcher's SIGTERM must not cut this error's report short
            raise PeerLost(
                f"rank {self.rank} of {self.size}: lost the connection to another rank while "
                f"waiting for {what} ({e}); a rank stopped (its own error, if any, is printed "
                "above) or its host went away"
            ) from None
        finally:
            if timer is not None:
                timer.cancel()

    def _eval(self, outs: Sequence[mx.array], what: str, timeout: float | None) -> None:
        with self._collective(what, timeout):
            mx.eval(*outs)

    def sum_arrays(self, arrays: Sequence[mx.array], what: str) -> list[mx.array]:
        """Element-wise sums over ranks, as few collectives as there are dtypes (one buffer each)."""
        if not self.distributed or not arrays:
            return list(arrays)
        out: list[mx.array | None] = [None] * len(arrays)
        by_dtype: dict[Any, list[int]] = {}
        for i, a in enumerate(arrays):
            by_dtype.setdefault(a.dtype, []).append(i)
        summed = []
        for idx in by_dtype.values():
            flat = mx.concatenate([arrays[i].reshape(-1) for i in idx])
            total = mx.distributed.all_sum(flat, group=self.group)
            sizes = np.cumsum([arrays[i].size for i in idx])[:-1].tolist()
            for i, part in zip(idx, mx.split(total, sizes) if sizes else [total]):
                out[i] = part.reshape(arrays[i].shape)
                summed.append(out[i])
        self._eval(summed, what, _timeout())
        return [a for a in out if a is not None]

    def max_values(self, values: Sequence[float], what: str) -> list[float]:
        """The largest of each value over ranks."""
        if not self.distributed:
            return list(values)
        m = mx.distributed.all_max(mx.array(list(values), mx.float32), group=self.group)
        self._eval([m], what, _timeout())
        return [float(v) for v in m.tolist()]

    def gather_json(self, obj: Any, what: str, timeout: float | None | bool = True) -> list[Any]:
        """Every rank's JSON-able object, in rank order (floats round-trip exactly)."""
        if not self.distributed:
            return [obj]
        wait = _timeout() if timeout is True else (timeout or None)
        data = np.frombuffer(json.dumps(obj).encode(), np.uint8)
        lengths = mx.distributed.all_gather(mx.array([data.size], mx.int32), group=self.group)
        self._eval([lengths], what, wait)
        longest = max(int(n) for n in lengths.tolist())
        padded = np.zeros(max(longest, 1), np.uint8)
        padded[: data.size] = data
        got = mx.distributed.all_gather(mx.array(padded), group=self.group)
        self._eval([got], what, wait)
        rows = np.array(got).reshape(self.size, -1)
        return [json.loads(bytes(r[:n])) for r, n in zip(rows, lengths.tolist())]

    def broadcast_json(self, obj: Any, what: str, timeout: float | None | bool = True) -> Any:
        """Rank 0's JSON-able object, on every rank (the others pass anything, e.g. None)."""
        if not self.distributed:
            return obj
        return self.gather_json(obj if self.is_main else None, what, timeout)[0]

    def broadcast_arrays(self, arrays: dict[str, mx.array], what: str) -> dict[str, mx.array]:
        """Rank 0's named arrays, bit for bit, on every rank (the others' `arrays` are ignored)."""
        if not self.distributed:
            return arrays
        header = [[k, list(a.shape), str(a.dtype).split(".")[-1]] for k, a in arrays.items()]
        header = self.broadcast_json(header if self.is_main else None, what)
        sizes = [int(np.prod(s, dtype=np.int64)) * _dtype(d).size for _, s, d in header]
        if self.is_main:
            raw = np.concatenate([_to_bytes(arrays[k]) for k, _, _ in header] or [np.zeros(0)])
            buf = mx.array(raw.astype(np.uint8))
        else:
            buf = mx.zeros((sum(sizes),), mx.uint8)
        if buf.size:  # integers: adding the other ranks' zeros keeps rank 0's bytes exactly
            buf = mx.distributed.all_sum(buf, group=self.group)
            self._eval([buf], what, _timeout())
        out, start = {}, 0
        for (name, shape, dtype), n in zip(header, sizes):
            out[name] = buf[start : start + n].view(_dtype(dtype)).reshape(shape)
            start += n
        mx.eval(out)
        return out

    def barrier(self, what: str, timeout: float | None | bool = True) -> None:
        """Wait until every rank gets here (timeout=None: as long as it takes)."""
        if not self.distributed:
            return
        wait = _timeout() if timeout is True else (timeout or None)
        self._eval([mx.distributed.all_sum(mx.array([1.0]), group=self.group)], what, wait)

    def on_main(self, fn: Callable[[], Any], what: str) -> Any:
        """fn() on rank 0 alone (work on files only it touches); its JSON-able result on every
        rank. When it raises, rank 0 raises the error and the others MainFailed naming it. The
        others wait as long as it takes."""
        if not self.distributed:
            return fn()
        if self.is_main:
            try:
                value = fn()
            except Exception as e:
                self.broadcast_json({"error": f"{type(e).__name__}: {e}"}, what, timeout=None)
                raise
            self.broadcast_json({"value": value}, what, timeout=None)
            return value
        got = self.broadcast_json(None, what, timeout=None)
        if "error" in got:
            raise MainFailed(f"rank {self.rank}: rank 0 failed in {what}: {got['error']}")
        return got["value"]


_WORLD: World | None = None
_STOPPING = threading.Event()  # this rank is stopping on an error it reports (stop_on_sigterm)


def launched() -> bool:
    """Started by a distributed launcher (mlx.launch, mpirun), possibly with one rank."""
    return any(os.environ.get(k) for k in LAUNCH_ENV)


def stop_on_sigterm(world: World) -> None:
    """Under several ranks, SIGTERM (how mlx.launch stops the other ranks when one fails) raises
    Terminated, so each rank says why it stopped instead of vanishing."""
    if not world.distributed:
        return

    def handle(signum: int, frame: Any) -> None:
        if _STOPPING.is_set():  # already reporting why this rank stops
            return
        _STOPPING.set()
        raise Terminated(
            f"rank {world.rank} of {world.size}: stopped by SIGTERM (the launcher stops every "
            "rank when one fails: see the first error above)"
        )

    signal.signal(signal.SIGTERM, handle)


def current() -> World:
    """This process's World: mx.distributed.init() once when launched, else one process."""
    global _WORLD
    if _WORLD is None:
        if not launched():
            _WORLD = World()
        else:
            group = mx.distributed.init()
            size = group.size()
            _WORLD = World(group.rank(), size, group) if size > 1 else World()
            share_cores(_WORLD)
    return _WORLD


def share_cores(world: World) -> None:
    """Ranks sharing one host split its cores between their BLAS threads: OpenBLAS's
    busy-waiting threads collapse when oversubscribed (two ranks on two cores, two threads each:
    a quick grid 22 s -> 7 s with one thread each). OPENBLAS_NUM_THREADS, if set, wins."""
    local = local_ranks()
    if world.distributed and local > 1 and "OPENBLAS_NUM_THREADS" not in os.environ:
        set_blas_threads((os.cpu_count() or 1) // local)


def _free_ports(n: int) -> list[int]:
    """n distinct ports free on the loopback now (held together, so no two are the same)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


INTERRUPTED = 130  # the exit status of a rank stopped by Ctrl-C (cli)
INTERRUPT_GRACE_S = 30.0  # how long the other ranks get to stop on their own after one did
LAUNCHER_ENV = "HALLUCUE_LAUNCHER_PID"  # set by launch_local: the rank dies with its launcher


def _die_with_parent() -> None:  # in the rank, before exec (Linux: the kernel's own signal)
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere watch_launcher's thread does it


def watch_launcher() -> None:
    """In a rank launch_local started: kill this process when the launcher is gone (a kill -9
    of `hallucue-mlx run` stops all of its work, as it stops one process's), checked twice a
    second (Linux also has the kernel's parent-death signal)."""
    launcher = os.environ.get(LAUNCHER_ENV)
    if not launcher:
        return

    def watch() -> None:
        while os.getppid() == int(launcher):
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()


def _forward(stream: Any, output: Any, lock: threading.Lock) -> None:
    """Copy a rank's output lines to `output` (a notebook's stdout) as they come."""
    for line in stream:
        with lock:
            output.write(line)
            output.flush()


def launch_local(
    cmd: Sequence[str], n: int, poll_s: float = 0.2, output: Any = None, quiet: bool = False
) -> int:
    """Run `cmd` as n ring ranks on this machine, as `mlx.launch -n n --backend ring` would, and
    return the first non-zero exit status (0 when every rank succeeded).

    Not mlx.launch itself: its output-forwarding threads poll without blocking and take more
    than a core (measured), the core a rank needed on a small machine. Here the ranks write to
    this process's terminal and this process sleeps between polls. The ranks run in their own
    process group, so a Ctrl-C (or kill -INT) reaches this process alone, which passes it on once
    to each rank (each stops after its current step); SIGTERM is passed on likewise, and a kill -9
    of this process kills the ranks (watch_launcher). A rank that fails gets the others SIGTERM
    (stop_on_sigterm makes each say why); one stopped by SIGINT alone gets the others a SIGINT
    after INTERRUPT_GRACE_S, so none waits for it forever.

    output: a text stream the ranks' output is copied to, line by line (the Python API: a
    notebook shows its own sys.stdout, not the file descriptors its children write to); with
    quiet only their stderr. None: the ranks write to this process's stdout and stderr."""
    ports = _free_ports(n)
    with tempfile.TemporaryDirectory(prefix="hallucue-ranks-") as tmp:
        hostfile = Path(tmp) / "hosts.json"
        hostfile.write_text(json.dumps([[f"127.0.0.1:{p}"] for p in ports]))
        running: list[subprocess.Popen] = []

        def forward(signum: int, frame: Any) -> None:
            for proc in running:
                proc.send_signal(signum)

        previous = {}
        if threading.current_thread() is threading.main_thread():  # where Python takes signals
            previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        pipes: dict[str, Any] = {}
        if output is not None:
            pipes = {"stdout": subprocess.DEVNULL if quiet else subprocess.PIPE}
            pipes["stderr"] = subprocess.PIPE if quiet else subprocess.STDOUT
            pipes.update(text=True, errors="replace", bufsize=1)
        lock, copiers = threading.Lock(), []
        try:
            for rank in range(n):
                env = {**os.environ, "MLX_RANK": str(rank), "MLX_HOSTFILE": str(hostfile)}
                env[LAUNCHER_ENV] = str(os.getpid())
                proc = subprocess.Popen(
                    list(cmd),
                    env=env,
                    start_new_session=True,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                    **pipes,
                )
                running.append(proc)
                stream = proc.stderr if quiet else proc.stdout
                if output is not None and stream is not None:
                    copier = threading.Thread(target=_forward, args=(stream, output, lock))
                    copier.start()
                    copiers.append(copier)
            status, interrupted_at = 0, None
            while running:
                time.sleep(poll_s)
                for proc in [p for p in running if p.poll() is not None]:
                    running.remove(proc)
                    code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
                    if code == 0 or status:
                        continue
                    status = code
                    if code == INTERRUPTED:
                        interrupted_at = time.monotonic()
                    else:
                        for other in running:
                            other.terminate()
                if interrupted_at is not None and (
                    time.monotonic() - interrupted_at > INTERRUPT_GRACE_S
                ):
                    for other in running:
                        other.send_signal(signal.SIGINT)
                    interrupted_at = None
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            for copier in copiers:  # the ranks have ended: their last lines are copied
                copier.join(timeout=10)
    return status


__all__ = [
    "DEFAULT_TIMEOUT",
    "INTERRUPTED",
    "LAUNCHER_ENV",
    "LAUNCH_ENV",
    "MainFailed",
    "PeerLost",
    "STUCK_EXIT",
    "TIMEOUT_ENV",
    "Terminated",
    "World",
    "current",
    "launch_local",
    "launched",
    "share_cores",
    "stop_on_sigterm",
    "watch_launcher",
]
