"""Progress on stderr, one bar per stage, with a unit that makes the ETA mean something.

Stages and their units: ``calibrate`` (tokens through the model, forward and
backward), ``curves`` (bytes of tensors measured), ``encode`` (bytes of
source tensors coded; for calibrated runs GPTQ is inside this stage and its
cost follows the tensors' bytes), ``grams+encode``. A bar is drawn only when
progress is on (the CLI turns it off for ``--quiet``, and for ``--json`` when
stderr is not a terminal); ``Progress(None)`` is silent.

Whether drawn or not, every stage is profiled: ``profile`` lists, per stage,
its wall seconds and the peak anonymous memory (RssAnon, MiB) seen while it
ran, when a ``memory.PeakSampler`` is given (``compress --json`` reports it).
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

__all__ = ["Progress"]


class Progress:
    def __init__(self, enabled: bool = True, sampler=None) -> None:
        self.enabled = enabled
        self.sampler = sampler
        self.profile: list[dict] = []

    @contextmanager
    def stage(self, name: str, total: float, unit: str = "B"):
        """A bar for one stage; yields ``update(n)``; records the stage's seconds and peak memory."""
        if self.sampler is not None:
            self.sampler.window()  # the stage's window starts now
        t0 = time.perf_counter()
        try:
            with self._bar(name, total, unit) as update:
                yield update
        finally:
            entry = {"stage": name, "seconds": round(time.perf_counter() - t0, 3)}
            if self.sampler is not None:
                entry["peak_anon_mib"] = round(self.sampler.window(), 1)
            self.profile.append(entry)

    @contextmanager
    def _bar(self, name: str, total: float, unit: str):
        if not self.enabled or total <= 0:
            yield lambda n=1: None
            return
        from tqdm import tqdm

        bar = tqdm(total=total, unit=unit, unit_scale=True, desc=f"{name:<10}", file=sys.stderr, leave=False,
                   dynamic_ncols=True, mininterval=0.5, smoothing=0.1)
        try:
            yield bar.update
        finally:
            bar.close()
