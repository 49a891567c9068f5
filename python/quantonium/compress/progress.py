"""Progress on stderr, one bar per stage, with a unit that makes the ETA mean something.

Stages and their units: ``calibrate`` (tokens through the model, forward and
backward), ``curves`` (bytes of tensors measured), ``encode`` (bytes of
source tensors coded; for calibrated runs GPTQ is inside this stage and its
cost follows the tensors' bytes), ``grams+encode``. A bar is drawn only when
progress is on (the CLI turns it off for ``--quiet``, and for ``--json`` when
stderr is not a terminal); ``Progress(None)`` is silent.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

__all__ = ["Progress"]


class Progress:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    @contextmanager
    def stage(self, name: str, total: float, unit: str = "B"):
        """A bar for one stage; yields ``update(n)``."""
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
