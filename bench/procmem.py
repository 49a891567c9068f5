"""Run a command and measure it as MEASURE.md asks: wall time, peak anonymous memory, peak RSS.

Peak anonymous memory is ``RssAnon`` (``/proc/PID/status``) summed over the
command's whole process tree, sampled every 50 ms: the pages of a
memory-mapped source file (RssFile) are excluded, because the kernel can drop
them. Peak RSS is ``ru_maxrss`` of the largest child, as ``/usr/bin/time -v``
reports it. Used by the scale benchmarks (``bench/scale_bench.py``).
"""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from pathlib import Path

__all__ = ["measure_cmd"]


def _children(pid: int) -> list[int]:
    out = []
    try:
        for t in Path(f"/proc/{pid}/task").iterdir():
            kids = (t / "children").read_text().split()
            out += [int(k) for k in kids]
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def _anon_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure_cmd(cmd: list[str], *, env: dict | None = None, log: str | os.PathLike | None = None,
                timeout: float | None = None) -> dict:
    """Runs ``cmd``; returns seconds, peak_anon_mib (process tree), peak_rss_mib, returncode, stdout tail."""
    t0 = time.perf_counter()
    out = open(log, "w") if log else subprocess.DEVNULL
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=out, text=True, env=env)
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.wait(0.05):
            peak[0] = max(peak[0], sum(_anon_kib(q) for q in _tree(p.pid)))

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        stdout, _ = p.communicate(timeout=timeout)
    finally:
        stop.set()
        th.join()
        if log:
            out.close()
    return {
        "cmd": " ".join(map(str, cmd)),
        "seconds": time.perf_counter() - t0,
        "peak_anon_mib": peak[0] / 1024.0,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0,
        "returncode": p.returncode,
        "stdout": (stdout or "")[-2000:],
    }
