"""Running the tensor jobs of a compression plan on a Dask cluster (``distributed``), issue 13.

:class:`DaskExecutor` has the ``map`` of :class:`~.executor.ThreadExecutor`:
``fn(job)`` for every job, results in job order, at most ``window`` jobs in
flight, so the client holds at most ``window`` tensors' worth of jobs and
results whatever the model's size. ``fn`` and the jobs travel to the workers
by pickle (``fn`` a module-level function or a ``functools.partial`` of one);
the results come back to the one writer of the client (``sink.QntSink``) in
plan order, so a run on the cluster writes the bytes a local run writes.

How a tensor reaches a worker (:meth:`DaskExecutor.attach`): a job carries a
``TensorRef``, either a span of a safetensors file or the array itself. When
the source is safetensors, a cheap check runs on every worker
(``Client.run``): does each source file exist there, under the same path, with
the same size and modification time? If every worker sees every file, jobs
carry only spans and each worker maps the file itself (a shared file system);
otherwise the client reads each tensor and sends its bytes with the job.
Workers that join later are checked by the job itself (one ``stat`` per file):
a worker that does not see the file raises :class:`SourceNotVisible` and the
client sends that job again with the bytes, so a mixed cluster is slower,
never wrong. The same identity (size, mtime) keys the worker's mapping of the
file: a long-lived worker never reads a replaced file through a stale mapping.

Failures: a scheduler that cannot be reached is an ``OSError`` raised by the
constructor (one line, before any model work; the timeout is Dask's own
``distributed.comm.timeouts.connect``, e.g. ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s``).
A worker that dies mid-run is Dask's business: the scheduler reruns its jobs
(and recomputes results it held) elsewhere; jobs are deterministic, so the
output does not change. A job that kills workers again and again
(``distributed.KilledWorker``) or a lost scheduler is a :class:`ClusterError`.

Workers need the same ``quantonium`` (and native module) as the client:
``dask worker`` started from the environment that runs ``quantonium``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from ..models.sources import TensorRef

__all__ = ["ClusterError", "DaskExecutor", "SourceNotVisible", "parse_address"]

J = TypeVar("J")
R = TypeVar("R")

SCHEME = "dask://"


class ClusterError(OSError):
    """The cluster could not run the plan (scheduler lost, a job that kills every worker it runs on)."""


class SourceNotVisible(Exception):
    """Raised on a worker that does not see a source file as the client does (missing, other size or mtime)."""


def parse_address(spec: str) -> str:
    """``dask://HOST:PORT`` -> the scheduler's ``tcp://HOST:PORT``; anything else is a ``ValueError``."""
    if not spec.startswith(SCHEME):
        raise ValueError(f"--executor {spec!r}: expected 'threads' or dask://HOST:PORT")
    hostport = spec[len(SCHEME):]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in hostport:
        raise ValueError(f"--executor {spec!r}: expected dask://HOST:PORT (a distributed scheduler's address)")
    return f"tcp://{hostport}"


def file_identity(paths: Iterable[str]) -> dict[str, tuple[int, int]]:
    """absolute path -> (size, mtime_ns) as this machine sees it."""
    out = {}
    for p in paths:
        st = os.stat(p)
        out[os.path.abspath(p)] = (st.st_size, st.st_mtime_ns)
    return out


def _absolute(job: Any) -> Any:
    """The job with its span's path made absolute (a worker's working folder is not the client's)."""
    ref = getattr(job, "ref", None)
    span = getattr(ref, "span", None)
    if span is None or os.path.isabs(span.path):
        return job
    span = dataclasses.replace(span, path=os.path.abspath(span.path))
    return dataclasses.replace(job, ref=TensorRef(ref.name, span=span))


def _check_visible(identity: dict[str, tuple[int, int]]) -> str | None:
    """Runs on a worker: None if every file is there with the same size and mtime, else the reason."""
    for path, (size, mtime) in identity.items():
        try:
            st = os.stat(path)
        except OSError as e:
            return f"{path}: {e.strerror or 'cannot stat'}"
        if (st.st_size, st.st_mtime_ns) != (size, mtime):
            return f"{path}: other size or modification time ({st.st_size} bytes)"
    return None


_SEEN: dict[str, tuple[int, int]] = {}  # on a worker: the identity each mapped file had when mapped


def _on_worker(fn: Callable[[Any], Any], job: Any, identity: dict[str, tuple[int, int]] | None) -> Any:
    """The task a worker runs: checks that it sees the job's file (if the job carries a span), runs ``fn``."""
    ref = getattr(job, "ref", None)
    span = getattr(ref, "span", None)
    if identity is not None and span is not None:
        want = identity.get(span.path)
        if want is None:
            raise SourceNotVisible(f"{span.path}: not among the source files the client checked")
        why = _check_visible({span.path: want})
        if why is not None:
            raise SourceNotVisible(why)
        if _SEEN.get(span.path) != want:  # the file was replaced since this worker mapped it: map it again
            from ..models import sources

            sources._OPEN_VIEWS.pop(span.path, None)
            _SEEN[span.path] = want
    return fn(job)


def _ship(job: Any) -> Any:
    """The job with its tensor's bytes instead of a file span (read on the client)."""
    ref = getattr(job, "ref", None)
    if ref is None or ref.span is None:
        return job
    import numpy as np

    return dataclasses.replace(job, ref=TensorRef(ref.name, data=np.asarray(ref.read())))


class DaskExecutor:
    """Ordered, bounded ``map`` on a ``distributed`` cluster; see the module docstring.

    Parameters
    ----------
    address : str
        The scheduler, ``tcp://HOST:PORT`` (or ``dask://HOST:PORT``).
    window : int, optional
        Jobs in flight at most; default twice the workers' threads at connection (at least 2).
    """

    remote = True  # jobs (and fn) are pickled to other processes

    def __init__(self, address: str, *, window: int | None = None) -> None:
        try:
            from distributed import Client
        except ImportError as e:
            raise ImportError(f"--executor dask:// needs the 'distributed' package ({e}); "
                              "pip install '.[dask]' (or bash scripts/setup.sh)") from None
        if address.startswith(SCHEME):
            address = parse_address(address)
        self.address = address
        try:
            self.client = Client(address, set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise OSError(f"cannot reach the Dask scheduler at {address} "
                          f"({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})") from None
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        self.workers = len(info)
        self.worker_threads = sum(int(w.get("nthreads", 1)) for w in info.values())
        if self.workers == 0:
            self.client.close()
            raise OSError(f"the Dask scheduler at {address} has no workers")
        self.window = max(2, window or 2 * self.worker_threads)
        self.identity: dict[str, tuple[int, int]] | None = None  # set by attach: workers read the files
        self.tensor_data = "sent by the client"
        self.reason = ""
        self.resent = 0

    # -- where tensors come from ---------------------------------------------------------------------
    def attach(self, paths: list[str], mappable: bool) -> str:
        """Decides how tensors reach the workers for a source (its files; ``mappable``: spans exist).

        Returns a one-line description (for stderr and the run's result).
        """
        if not mappable:
            self.identity = None
            self.tensor_data, self.reason = "sent by the client", "the source is not memory-mappable"
        else:
            ident = file_identity(paths)
            seen = self.client.run(_check_visible, ident)
            blind = {w: why for w, why in seen.items() if why is not None}
            if blind:
                w, why = next(iter(blind.items()))
                self.identity = None
                self.tensor_data = "sent by the client"
                self.reason = f"{len(blind)} of {len(seen)} workers do not see the source (e.g. {w}: {why})"
            else:
                self.identity = ident
                self.tensor_data = "read by the workers"
                self.reason = f"all {len(seen)} workers see the source files with the same size and mtime"
        return (f"Dask scheduler {self.address}: {self.workers} workers, {self.worker_threads} threads, "
                f"at most {self.window} jobs in flight; tensors {self.tensor_data} ({self.reason})")

    def describe(self) -> dict[str, Any]:
        return {"kind": "dask", "address": self.address, "workers": self.workers,
                "worker_threads": self.worker_threads, "window": self.window, "tensor_data": self.tensor_data,
                "reason": self.reason, "jobs_resent_with_data": self.resent}

    # -- running -------------------------------------------------------------------------------------
    def _submit(self, fn, job):
        job = _ship(job) if self.identity is None else _absolute(job)
        return self.client.submit(_on_worker, fn, job, self.identity, pure=False)

    def _result(self, fn, job, fut):
        from concurrent.futures import CancelledError

        from distributed import KilledWorker
        from distributed.comm.core import CommClosedError

        try:
            return fut.result()
        except SourceNotVisible:
            # a worker that joined after the check and does not see the file: send the bytes this time
            self.resent += 1
            return self.client.submit(_on_worker, fn, _ship(job), None, pure=False).result()
        except KilledWorker as e:
            raise ClusterError(f"a job killed every Dask worker it ran on ({e})") from None
        except (CommClosedError, CancelledError) as e:  # the scheduler went away (or cancelled the job)
            raise ClusterError(f"lost the Dask scheduler at {self.address} or it cancelled a job "
                               f"({type(e).__name__}: {e})") from None

    def map(self, fn: Callable[[J], R], jobs: Iterable[J], *, window: int | None = None) -> Iterator[R]:
        """``fn(job)`` on the workers for every job, results in job order, at most ``window`` in flight.

        An exception in a job is raised here, in order; the jobs in flight are cancelled.
        """
        window = max(1, window or self.window)
        pending: deque = deque()
        try:
            for job in jobs:
                pending.append((job, self._submit(fn, job)))
                while len(pending) >= window:
                    job0, fut = pending.popleft()
                    yield self._result(fn, job0, fut)
                    del fut  # released: the worker may forget the result
            while pending:
                job0, fut = pending.popleft()
                yield self._result(fn, job0, fut)
                del fut
        finally:
            if pending:
                self.client.cancel([f for _, f in pending])
            pending.clear()

    def run(self, fn: Callable[[J], R], job: J) -> R:
        """``fn(job)`` on a worker, waited for."""
        return next(iter(self.map(fn, [job], window=1)))

    def close(self) -> None:
        try:
            self.client.close()
        except Exception as e:  # closing must not hide the run's own outcome
            print(f"quantonium: closing the Dask client: {e}", file=sys.stderr)

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
