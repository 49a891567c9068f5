"""Executors run independent tensor jobs and give the results back in plan order.

``ThreadExecutor`` is the local one: the native kernels release the GIL, so
threads encode tensors in parallel. At most ``window`` jobs are in flight, so
memory follows the tensors being coded, not the model. Another executor
(a cluster, issue 13) only has to provide the same ``map``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["ThreadExecutor"]

J = TypeVar("J")
R = TypeVar("R")


class ThreadExecutor:
    def __init__(self, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = threads

    def map(self, fn: Callable[[J], R], jobs: Iterable[J], *, window: int | None = None) -> Iterator[R]:
        """``fn(job)`` for every job, results in job order, at most ``window`` (default 2 x threads) in flight.

        An exception in a job is raised here, in order; the jobs not started are cancelled.
        """
        window = max(1, window or 2 * self.threads)
        pending: deque[Future] = deque()
        with ThreadPoolExecutor(self.threads, thread_name_prefix="quantonium") as pool:
            try:
                for job in jobs:
                    pending.append(pool.submit(fn, job))
                    while len(pending) >= window:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:
                for f in pending:
                    f.cancel()
