"""Evaluate independent MLX graphs on several CPU threads at once (the loss phase's groups).

MLX's CPU backend runs each elementwise op on one thread, so on small models a loss forward and
backward keeps one core busy while OpenBLAS's threads mostly wait for work (perf: 38% of a
2-core machine's samples in OpenBLAS's spin loop). A step's groups are independent until their
gradients are summed, so each group's graph can run on its own thread.

A build returns its graph as stages (a list of trees), evaluated one after another, so a stage's
intermediates are freed before the next runs (the loss: the reference log-probs, then the loss
forward and backward that reads them).

How: each worker thread owns an MLX stream (a stream belongs to the thread that made it, MLX
0.32). Graphs are built on the calling thread, one at a time, under the stream of the worker
that will evaluate them: building runs Python over the shared model, which nn.value_and_grad
mutates, so builds must not overlap, while evaluation releases the GIL. Results come back in job
order, so what the caller sums, and in which order, does not depend on the thread count. While
the pool runs two or more graphs, OpenBLAS has one thread, whatever the pool's size (its threaded
GEMMs serialise concurrent callers, its idle threads spin, and its results change with its thread
count); its count comes back afterwards. A single graph keeps OpenBLAS's threads.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import mlx.core as mx

from hallucue_mlx.backend import blas_threads, set_blas_threads

Build = Callable[[], list[Any]]  # builds a graph: its stages, trees of unevaluated arrays


def _evaluate(stages: list[Any]) -> list[Any]:
    for tree in stages:
        mx.eval(tree)
    return stages


class _Worker:
    """A thread with its own MLX CPU stream that evaluates the stages it is given, in order."""

    def __init__(self, name: str):
        self.jobs: queue.Queue[tuple[list[Any], Future] | None] = queue.Queue()
        ready: Future = Future()
        self.thread = threading.Thread(target=self._loop, args=(ready,), name=name, daemon=True)
        self.thread.start()
        self.stream = ready.result()

    def _loop(self, ready: Future) -> None:
        ready.set_result(mx.new_stream(mx.cpu))
        while (job := self.jobs.get()) is not None:
            stages, done = job
            try:
                done.set_result(_evaluate(stages))
            except BaseException as e:  # handed to the caller, which raises it
                done.set_exception(e)

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join()


class StreamPool:
    """run(builds) -> [each build's evaluated stages], in build order.

    threads=1 builds and evaluates each graph on the calling thread, on its default stream (the
    path a GPU takes: it runs one graph at a time anyway), and so does a single build whatever
    the pool's size. Worker threads start on first use."""

    def __init__(self, threads: int = 1):
        self.threads = max(1, int(threads))
        self._workers: list[_Worker] = []

    def run(self, builds: Sequence[Build]) -> list[Any]:
        if len(builds) < 2:  # nothing to share out: OpenBLAS keeps its threads
            return [_evaluate(build()) for build in builds]
        # OpenBLAS gets one thread whatever the pool's size: its results differ with its thread
        # count (1.7e-10 on a loss's gradients), and they must not depend on the pool's size
        before = blas_threads()
        set_blas_threads(1)
        pending: list[Future] = []
        try:
            if self.threads == 1:
                return [_evaluate(build()) for build in builds]
            if not self._workers:
                self._workers = [_Worker(f"hallucue-loss-{i}") for i in range(self.threads)]
            for i, build in enumerate(builds):
                w = self._workers[i % self.threads]
                with mx.stream(w.stream):
                    stages = build()
                done: Future = Future()
                w.jobs.put((stages, done))
                pending.append(done)
            return [f.result() for f in pending]
        finally:
            for f in pending:
                f.exception()  # every job has ended before the BLAS threads change back
            if before is not None:
                set_blas_threads(before)

    def close(self) -> None:
        for w in self._workers:
            w.close()
        self._workers = []

    def __enter__(self) -> StreamPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
