"""Fault injection for the resume tests: die by SIGKILL at an exact point of a write.

Set ``QUANTONIUM_FAULT=<event>:<n>`` (events: ``payload`` = in the middle of
the n-th payload written, ``checkpoint`` = in the middle of the n-th
checkpoint, ``index`` = in the middle of the final index) and the process
kills itself there, half of the bytes written, exactly as a power cut or
``kill -9`` would leave it. Unset (always, outside tests), it costs one
dictionary lookup per write.
"""

from __future__ import annotations

import os
import signal

__all__ = ["write_or_die"]

_counts: dict[str, int] = {}


def write_or_die(event: str, f, data) -> None:
    """``f.write(data)``, unless the fault names this write: then half of it, a flush, and SIGKILL."""
    spec = os.environ.get("QUANTONIUM_FAULT")
    if spec:
        name, _, n = spec.partition(":")
        if name == event:
            _counts[event] = _counts.get(event, 0) + 1
            if str(_counts[event]) == n:
                view = memoryview(data).cast("B")
                f.write(view[: len(view) // 2])
                f.flush()
                os.fsync(f.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
    f.write(data)
