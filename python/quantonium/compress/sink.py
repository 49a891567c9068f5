"""Where results go: the ``.qnt`` writer, checkpointed so that a killed run can resume.

:class:`QntSink` writes payloads in plan order into ``.NAME.partial`` beside
the output (the final layout, byte for byte) and, after every tensor, fsyncs
it and atomically replaces ``.NAME.partial.json``: the checkpointed index
(offsets, lengths, CRCs of the finished tensors), the run's key and the
plan state (what a resumed run must not recompute differently, e.g. the
calibration sensitivities, kept in ``.NAME.partial.npz``). A run killed at
any point (SIGKILL included) leaves a partial file whose checkpoint describes
a prefix of it; ``resume=True`` verifies that prefix (every CRC), truncates
what follows and continues, and the finished file is byte-identical to an
uninterrupted run's, because the plan is deterministic given the same key.

The key hashes the source files' identity (path, size, modification time),
every option that changes the output, and the versions of quantonium and of
the format: a partial file of another run is never mistaken for ours; it is
refused with a one-line error when resuming and replaced when not. A writer
holds an exclusive ``flock`` on its partial file, so two processes never
write the same output, and a partial file whose lock is free belongs to a
process that is gone.

:class:`MemorySink` keeps results in memory (``quantonium compare``).
"""

from __future__ import annotations

import fcntl
import json
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..container import QntWriter
from ..faults import write_or_die
from ..outputs import OutputError, check_file
from .plan import TensorResult

__all__ = ["MemorySink", "QntSink", "ResumeError"]


class ResumeError(ValueError):
    """A partial file that cannot be resumed (missing, another run's, damaged)."""


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".new")
    with open(tmp, "wb") as f:
        write_or_die("checkpoint", f, data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class MemorySink:
    """Collects results in a dict (name -> TensorResult), in arrival order."""

    def __init__(self) -> None:
        self.results: dict[str, TensorResult] = {}
        self.done: dict[str, dict[str, Any]] = {}

    def add(self, res: TensorResult) -> None:
        self.results[res.name] = res

    def save_plan(self, arrays: dict[str, np.ndarray]) -> None:
        pass

    def load_plan(self) -> dict[str, np.ndarray] | None:
        return None


class QntSink:
    def __init__(self, out: str | os.PathLike, *, model: dict[str, Any], files: dict[str, bytes], run_key: str,
                 resume: bool = False) -> None:
        self.out = Path(out)
        target = check_file(self.out)  # issue 11 (outputs.py): a symlink is written through, its target's folder
        if target.direct:
            raise OutputError(f"{self.out}: compress writes a resumable file, not into a special file; give a file name")
        real = target.real
        real.parent.mkdir(parents=True, exist_ok=True)
        self.partial = real.with_name(f".{real.name}.partial")
        self.ckpt = real.with_name(f".{real.name}.partial.json")
        self.plan_file = real.with_name(f".{real.name}.partial.npz")
        self.run_key = run_key
        self.results: dict[str, dict[str, Any]] = {}
        self._lock = os.open(self.partial, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise ResumeError(f"{self.out}: another quantonium process is writing this output now") from None
        self.note = ""
        try:
            if resume and not self.ckpt.is_file():
                self.note = "nothing to resume (no checkpoint beside the output): starting from the beginning"
                resume = False
            if resume:
                state = self._resumable()
                self.writer = QntWriter(self.out, model=model, partial=self.partial, state=state["writer"])
            else:
                for p in (self.ckpt, self.plan_file):
                    p.unlink(missing_ok=True)
                self.writer = QntWriter(self.out, model=model, partial=self.partial)
                for name, data in files.items():
                    self.writer.add_file(name, data)
                self.checkpoint()
        except BaseException:
            os.close(self._lock)
            raise
        self.done: dict[str, dict[str, Any]] = {t["name"]: t for t in self.writer.state()["tensors"]}

    def _resumable(self) -> dict[str, Any]:
        try:
            state = json.loads(self.ckpt.read_bytes())
            if state.get("run_key") != self.run_key:
                raise ResumeError(f"{self.out}: the partial file belongs to another run (different source, options or "
                                  "version); run without --resume to start over")
            w = state["writer"]
            pos, tensors, files = int(w["pos"]), w["tensors"], w["files"]
        except ResumeError:
            raise
        except (ValueError, KeyError, TypeError) as e:
            raise ResumeError(f"{self.ckpt}: damaged checkpoint ({str(e)[:80]}); run without --resume") from None
        size = self.partial.stat().st_size
        if size < pos:
            raise ResumeError(f"{self.partial}: shorter ({size} bytes) than its checkpoint says ({pos})")
        with open(self.partial, "rb") as f:  # every finished payload must be what the checkpoint says
            for e in list(tensors) + list(files.values()):
                f.seek(e["offset"])
                if zlib.crc32(f.read(e["length"])) != e["crc32"]:
                    raise ResumeError(f"{self.partial}: a finished payload does not match its checkpoint; "
                                      "run without --resume")
        return state

    def checkpoint(self) -> None:
        """Makes everything written so far durable and records it (the resume point)."""
        self.writer.sync()
        body = json.dumps({"run_key": self.run_key, "writer": self.writer.state()}, separators=(",", ":"),
                          allow_nan=False).encode()
        _atomic_write(self.ckpt, body)

    def add(self, res: TensorResult) -> None:
        entry = self.writer.add_tensor(res.name, res.encoded, res.shape, res.dtype, source_dtype=res.source_dtype,
                                       shannon_gap_bpw=res.shannon_gap_bpw)
        self.results[res.name] = entry
        self.checkpoint()

    def save_plan(self, arrays: dict[str, np.ndarray]) -> None:
        """Keeps arrays a resumed run must reuse (not recompute), e.g. calibration sensitivities."""
        tmp = self.plan_file.with_name(self.plan_file.name + ".new.npz")
        np.savez(tmp, **arrays)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.plan_file)

    def load_plan(self) -> dict[str, np.ndarray] | None:
        if not self.plan_file.is_file():
            return None
        with np.load(self.plan_file, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def close(self, model_updates: dict[str, Any]) -> Path:
        self.writer.model.update(model_updates)
        path = self.writer.close()
        for p in (self.ckpt, self.plan_file):
            p.unlink(missing_ok=True)
        os.close(self._lock)
        return path

    def abort(self) -> None:
        """Removes the partial file and its checkpoint (an interrupted or failed run)."""
        self.writer.abort()
        for p in (self.ckpt, self.plan_file):
            p.unlink(missing_ok=True)
        os.close(self._lock)
