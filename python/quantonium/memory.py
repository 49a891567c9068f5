"""Process memory: how it is measured here, and the allocator setting that keeps it bounded.

Measured (MEASURE.md): peak *anonymous* resident memory (``RssAnon`` in
``/proc/self/status``, sampled by a background thread), beside the peak RSS
(``ru_maxrss``). Pages of a memory-mapped source file count in RSS but not in
RssAnon: the kernel can drop them, so they are not memory the job holds.

glibc's allocator raises its mmap threshold dynamically (up to 32 MiB) after
large blocks are freed; from then on, the many short-lived activation buffers
of a model pass (1-30 MiB each) come from the heap and are not returned to the
system when freed, so a pass that needs 100 MiB at a time leaves the process
1-2 GiB larger (measured on GPT-Neo 1.3B: a checkpointed forward pass peaked
at 1193 MiB of anonymous memory instead of 512 MiB). ``bounded_allocator()``
fixes the threshold (``mallopt(M_MMAP_THRESHOLD)``, which also turns the
dynamic adjustment off) at ``MMAP_THRESHOLD`` = 1 MiB: larger blocks are
mapped and unmapped individually, smaller ones come from the heap, and the
passes that run a model call ``trim()`` (``malloc_trim``) after each window
or block, which returns the heap's free pages. The threshold was 128 KiB
until this was measured: every activation buffer above it was a fresh
mapping whose pages the kernel faults in and zeroes, and SmolLM2-135M's
sensitivity pass (8 windows of 256 tokens) took 20-24 s with 6.6 million
page faults, 16.7-17.4 s with 2.3-2.6 million at 1 MiB and 14.4-18.2 s at
4 MiB. 4 MiB cost GPT-Neo 1.3B's calibrated compress 500 MiB more peak
(1980 MiB at 8192 tokens; the 2-8 MiB activations of its 2048- and
8192-wide layers then came from the heap, fragmented); 1 MiB keeps them
mapped (1276 MiB peak at 512 tokens, calibrate 749 MiB where 4 MiB gave 1109).
It is called by the commands that run models (compress with calibration).
It is a no-op where glibc is not the allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import threading

__all__ = ["MMAP_THRESHOLD", "PeakSampler", "bounded_allocator", "peak_rss_mib", "rss_anon_mib", "trim"]

_M_MMAP_THRESHOLD = -3
#: Blocks at least this large are mapped individually (module docstring).
MMAP_THRESHOLD = 1 << 20
_done = False


def _libc():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)
        return lib if hasattr(lib, "mallopt") else None
    except OSError:
        return None


def bounded_allocator(threshold: int = MMAP_THRESHOLD) -> bool:
    """Large allocations mapped individually and returned when freed (glibc); True when applied."""
    global _done
    if _done:
        return True
    lib = _libc()
    if lib is None:
        return False
    _done = bool(lib.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(threshold)))
    return _done


def trim() -> None:
    """Returns the heap's free memory to the system (glibc's malloc_trim)."""
    lib = _libc()
    if lib is not None and hasattr(lib, "malloc_trim"):
        lib.malloc_trim(0)


def rss_anon_mib() -> float | None:
    """The process's anonymous resident memory now (Linux), in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mib() -> float:
    """Peak resident set size of this process (ru_maxrss), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class PeakSampler:
    """Samples RssAnon every ``interval`` seconds in a daemon thread; ``peak`` is the highest seen."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = rss_anon_mib() or 0.0
        self.window_peak = self.peak  # the highest since the last ``window()`` call
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True, name="quantonium-memory")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            v = rss_anon_mib()
            if v is not None:
                self.peak = max(self.peak, v)
                self.window_peak = max(self.window_peak, v)

    def window(self) -> float:
        """The highest RssAnon (MiB) since the previous call (or the start), and a new window from now."""
        v = rss_anon_mib() or 0.0
        top, self.window_peak = max(self.window_peak, v), v
        return top

    def __enter__(self) -> PeakSampler:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join(1.0)
        v = rss_anon_mib()
        if v is not None and v > self.peak:
            self.peak = v
