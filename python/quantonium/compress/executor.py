"""Executors run independent tensor jobs and give the results back in plan order.

``ThreadExecutor`` is the local one: the native kernels release the GIL, so
threads encode tensors in parallel. At most ``window`` jobs are in flight, so
memory follows the tensors being coded, not the model. Another executor
only has to provide the same methods: ``map``, ``run``, ``attach``,
``describe``, ``close`` (:class:`~.dask_executor.DaskExecutor`, issue 13).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["ThreadExecutor", "check_executor_spec", "make_executor"]

J = TypeVar("J")
R = TypeVar("R")


class ThreadExecutor:
    def __init__(self, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = threads

    remote = False  # jobs run in this process (the Dask executor's are True)

    def attach(self, paths: list[str], mappable: bool) -> str:
        """Nothing to decide: jobs read the source in this process."""
        return ""

    def describe(self) -> dict:
        return {"kind": "threads", "threads": self.threads}

    def run(self, fn: Callable[[J], R], job: J) -> R:
        """``fn(job)`` here, now."""
        return fn(job)

    def close(self) -> None:
        pass

    def map(self, fn: Callable[[J], R], jobs: Iterable[J], *, window: int | None = None) -> Iterator[R]:
        """``fn(job)`` for every job, results in job order, at most ``window`` (default 2 x threads) in flight.

        An exception in a job is raised here, in order. When the caller stops early (an exception, Ctrl-C, the
        generator closed), the jobs not started are cancelled and the jobs running are not waited for: a job in
        native code cannot be interrupted, and the caller's clean-up (the sink removing its temporaries) must not
        wait for it. Their results are discarded when they finish.
        """
        window = max(1, window or 2 * self.threads)
        pending: deque[Future] = deque()
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="quantonium")
        finished = False
        try:
            for job in jobs:
                pending.append(pool.submit(fn, job))
                while len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
            finished = True
        finally:
            for f in pending:
                f.cancel()
            pool.shutdown(wait=finished, cancel_futures=True)


def make_executor(spec: str | None, threads: int):
    """The executor a ``--executor`` value names: ``threads`` (default, local) or ``dask://HOST:PORT``.

    A Dask scheduler is connected to here (an unreachable one is an ``OSError``, one line).
    """
    if spec is None or spec in ("threads", "local"):
        return ThreadExecutor(threads)
    from .dask_executor import DaskExecutor, parse_address

    return DaskExecutor(parse_address(spec))


def check_executor_spec(spec: str | None) -> None:
    """Validates a ``--executor`` value without connecting (``ValueError``)."""
    if spec is None or spec in ("threads", "local"):
        return
    from .dask_executor import parse_address

    parse_address(spec)
