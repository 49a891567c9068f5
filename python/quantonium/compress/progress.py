"""Progress on stderr, one bar per stage, with a unit that makes the ETA mean something.

Stages and their units: ``calibrate`` (tokens through the model, forward and
backward), ``curves`` (bytes of tensors measured), ``encode`` (bytes of
source tensors coded; for calibrated runs GPTQ is inside this stage and its
cost follows the tensors' bytes), ``grams+encode``. Outside ``compress``:
``decode`` (bytes of tensors decoded: ``eval``'s and the inventory's model
loads), ``decode+write`` (bytes of ``model.safetensors`` written by
``decompress``, which decodes and writes at once), ``verify`` (bytes checksummed), ``perplexity`` /
``embeddings`` (tokens through the original and the compressed model,
``eval``). A bar is drawn only when progress is on (the CLI turns it off for
``--quiet``, and for ``--json`` when stderr is not a terminal: :func:`wanted`),
and only for a stage that has run for :data:`DELAY` (1 s): quick steps draw
nothing, and an error raised at once stays the only line on stderr;
``Progress(None)`` is silent.

Inside a large tensor the ``encode`` bar still moves: :class:`TensorMeter`
takes the fractions a running job reports (``run_job(..., progress=...)``:
one step per candidate of ``auto``, then the measurement) and turns them into
bytes of that tensor, from the worker threads; when the tensor's result
arrives the rest of its bytes are counted, so the total is exact whatever the
fractions were. The bar also names the tensor being coded.

Whether drawn or not, every stage is profiled: ``profile`` lists, per stage,
its wall seconds and the peak anonymous memory (RssAnon, MiB) seen while it
ran, when a ``memory.PeakSampler`` is given (``compress --json`` reports it).
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager

__all__ = ["Progress", "TensorMeter", "wanted"]


def wanted(quiet: bool = False, json: bool = False, stream=None) -> bool:
    """Whether a command draws progress: not with ``--quiet``, nor with ``--json`` when stderr is not a terminal."""
    if quiet:
        return False
    if json:
        s = sys.stderr if stream is None else stream
        try:
            return bool(s.isatty())
        except (AttributeError, ValueError):
            return False
    return True


#: A bar appears only once its stage has run this long (seconds): quick steps draw nothing, and an
#: error raised at once is the only line on stderr (tests set it to 0 to see every bar).
DELAY = 1.0
#: Seconds between redraws of a bar (tqdm's mininterval).
MININTERVAL = 0.5


class _Update:
    """What a stage yields: ``update(n)`` advances the bar by ``n`` units; ``update.note(text)`` names
    what is being worked on (shown after the bar)."""

    #: a note redraws the bar at most this often (seconds); updates redraw it at tqdm's own pace
    NOTE_INTERVAL = 0.2

    def __init__(self, bar=None) -> None:
        self._bar = bar
        self._lock = threading.Lock()
        self._noted = 0.0

    def __call__(self, n: float = 1) -> None:
        if self._bar is not None and n:
            with self._lock:
                self._bar.update(n)

    def note(self, text: str) -> None:
        if self._bar is not None:
            with self._lock:
                now = time.monotonic()
                # a redraw draws the bar: not before the stage's delay (tqdm's clock is time.time)
                redraw = now - self._noted >= self.NOTE_INTERVAL and time.time() - self._bar.start_t >= self._bar.delay
                if redraw:
                    self._noted = now
                self._bar.set_postfix_str(text[-80:], refresh=redraw)


class Progress:
    def __init__(self, enabled: bool = True, sampler=None) -> None:
        self.enabled = bool(enabled)
        self.sampler = sampler
        self.profile: list[dict] = []

    @contextmanager
    def stage(self, name: str, total: float, unit: str = "B"):
        """A bar for one stage; yields ``update(n)`` (with ``update.note(text)``); records the stage's
        seconds and peak memory."""
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
            yield _Update()
            return
        from tqdm import tqdm

        bar = tqdm(total=total, unit=unit, unit_scale=True, desc=f"{name:<10}", file=sys.stderr, leave=False,
                   dynamic_ncols=True, mininterval=MININTERVAL, smoothing=0.1, delay=DELAY)
        try:
            yield _Update(bar)
        finally:
            bar.close()


class TensorMeter:
    """Byte-granular progress of tensor jobs that report fractions of themselves (thread-safe).

    ``partial(name, nbytes, fraction, what)`` is given to ``run_job`` (it runs
    in the worker threads): the bar advances to ``fraction`` of the tensor's
    ``nbytes`` (never backwards) and names the tensor. ``done(name, nbytes)``
    (the main thread, when the result arrives) counts the rest.
    """

    def __init__(self, update) -> None:
        self._update = update
        self._lock = threading.Lock()
        self._sent: dict[str, int] = {}

    def partial(self, name: str, nbytes: int, fraction: float, what: str = "") -> None:
        f = min(max(float(fraction), 0.0), 1.0)
        with self._lock:
            new = int(nbytes * f)
            d = new - self._sent.get(name, 0)
            if d > 0:
                self._sent[name] = new
        if d > 0:
            self._update(d)
        note = getattr(self._update, "note", None)
        if note is not None:
            note(f"{name}{' (' + what + ')' if what else ''}")

    def done(self, name: str, nbytes: int) -> None:
        with self._lock:
            d = nbytes - self._sent.pop(name, 0)
        self._update(max(d, 0))
