"""``compress``: a model into a ``.qnt`` file, as plan -> executor -> sink.

Two kinds of runs share the same pieces:

- **per tensor** (``--bits`` / ``--snr`` / ``--keep`` for each tensor): the
  plan is one independent job per tensor; a :class:`ThreadExecutor` runs them
  (bounded in flight) and the :class:`QntSink` writes them in plan order.
- **allocated** (``--allocate``, implied by ``--calibration``): ``--bits`` is
  the model's average; see :mod:`quantonium.compress.allocated` (sensitivities
  measured on calibration text, rate-distortion curves, a Lagrangian
  allocation that is re-solved after every real encode, GPTQ with one input
  Gram matrix at a time).

Either way tensors are read from the source one at a time (safetensors are
memory-mapped, never copied whole), memory follows the tensors in flight,
and the sink checkpoints after every tensor so that ``resume=True`` continues
a killed run and produces the same bytes. The file records only what is
deterministic (no timings, no memory figures): a resumed file and an
uninterrupted one are identical; the run's own figures are in the returned
:class:`CompressResult`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import statistics
import time
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .. import __version__
from ..codecs import SMALL_TENSOR
from ..container import FORMAT_MAJOR, FORMAT_MINOR
from ..memory import PeakSampler, peak_rss_mib
from ..models import classify, open_source, source_files
from ..outputs import check_file
from .executor import ThreadExecutor, check_executor_spec, make_executor
from .jobs import run_job
from .plan import TensorJob
from .progress import Progress, TensorMeter
from .sink import QntSink

__all__ = ["CODEC_CHOICES", "CompressResult", "compress", "validate_options"]

CODEC_CHOICES = ("auto", "direct", "rft-dense", "rft-spectral", "fixed", "rft-fixed", "wht-fixed", "lossless")


@dataclass
class CompressResult:
    path: Path
    tensors: int
    parameters: int
    stored_values: int
    file_bytes: int
    source_bytes: int
    seconds: float
    peak_rss_mib: float
    median_snr_db: float | None
    worst_snr_db: float | None
    codec_mix: dict[str, int]
    peak_anon_mib: float | None = None
    tensor_bits: int = 0
    resumed_tensors: int = 0
    #: per stage: {"stage", "seconds", "peak_anon_mib"} (progress.Progress.profile)
    stages: list[dict] = field(default_factory=list)
    #: where the jobs ran: {"kind": "threads", ...} or the Dask executor's description (tensor data path)
    executor: dict = field(default_factory=dict)

    @property
    def bpw(self) -> float:
        return 8 * self.file_bytes / self.parameters if self.parameters else 0.0

    @property
    def tensor_bpw(self) -> float:
        return self.tensor_bits / self.parameters if self.parameters else 0.0

    def summary(self) -> str:
        snr = "exact" if self.median_snr_db is None else f"median tensor SNR {self.median_snr_db:.2f} dB (worst {self.worst_snr_db:.2f} dB)"
        resumed = f", {self.resumed_tensors} tensors from the resumed partial file" if self.resumed_tensors else ""
        return (
            f"wrote {self.path}: {self.tensors} tensors, {self.parameters:,} parameters, "
            f"{self.file_bytes / 2**20:.2f} MiB, {self.bpw:.3f} bpw (tensors {self.tensor_bpw:.3f}), "
            f"ratio {self.source_bytes / self.file_bytes:.2f}x vs source and {2 * self.parameters / self.file_bytes:.2f}x vs fp16, "
            f"{snr}, {self.seconds:.1f} s{resumed}"
        )

    def to_json(self) -> dict[str, Any]:
        return {**{k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()},
                "bpw": self.bpw, "tensor_bpw": self.tensor_bpw}


def validate_options(*, codec: str, snr_db: float | None, bpw: float | None, keep: float | None, threads: int,
                     allocate: bool, calibration: str | None, floor: float | None, include: str | None,
                     exclude: str | None, fixed_rate: bool = False) -> tuple[bool, float | None]:
    """Checks every option before anything is loaded; returns (allocate, snr_db) as the run will use them."""
    if codec not in CODEC_CHOICES:
        raise ValueError(f"unknown codec {codec!r}; expected one of {', '.join(CODEC_CHOICES)}")
    if fixed_rate:
        if codec != "auto":
            raise ValueError(f"--fixed-rate chooses among the fixed-rate codecs: it goes with --codec auto, not {codec!r}")
        if keep is not None:
            raise ValueError("--fixed-rate takes --bits or --snr, not --keep")
        if allocate or calibration is not None:
            raise ValueError("--fixed-rate is per tensor for now: it does not combine with --allocate / --calibration")
    if sum(v is not None for v in (snr_db, bpw, keep)) > 1:
        raise ValueError("give at most one of --bits, --snr, --keep")
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"--threads must be a whole number >= 1, not {threads!r}")
    if bpw is not None and not (math.isfinite(bpw) and 0 < bpw <= 32):
        raise ValueError(f"--bits must be in (0, 32], not {bpw:g}")
    if snr_db is not None and not (math.isfinite(snr_db) and 0 < snr_db <= 200):
        raise ValueError(f"--snr must be in (0, 200] dB, not {snr_db:g}")
    if keep is not None and not (0 < keep <= 1):
        raise ValueError(f"--keep must be in (0, 1], not {keep:g}")
    if floor is not None and not (0 <= floor <= 1):
        raise ValueError(f"--floor must be in [0, 1], not {floor:g}")
    for flag, rx in (("--include", include), ("--exclude", exclude)):
        if rx is not None:
            try:
                re.compile(rx)
            except re.error as e:
                raise ValueError(f"{flag} {rx!r} is not a valid regular expression ({e})") from None
    if calibration is not None:
        allocate = True
        if calibration != "builtin" and not Path(calibration).is_file():
            raise ValueError(f"{calibration}: no such calibration text file (or use --calibration builtin)")
    if allocate:
        if bpw is None or snr_db is not None or keep is not None:
            raise ValueError("allocation needs --bits (the average for the whole model) and no other target")
        if codec not in ("direct", "rft-dense", "auto"):
            raise ValueError(f"allocation works with the direct, rft-dense and auto codecs, not {codec!r}")
    if snr_db is None and bpw is None and keep is None:
        snr_db = 30.0
    return allocate, snr_db


def run_key(src, options: dict[str, Any]) -> str:
    """What identifies a run's output: the source files, the options, the versions."""
    files = []
    for p in sorted(src.paths):
        st = os.stat(p)
        files.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"files": files, "options": options, "quantonium": __version__,
                       "format": [FORMAT_MAJOR, FORMAT_MINOR]}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def compress(
    source: str,
    out: str | Path,
    *,
    codec: str = "auto",
    snr_db: float | None = None,
    bpw: float | None = None,
    keep: float | None = None,
    include: str | None = None,
    exclude: str | None = None,
    threads: int = 2,
    progress: bool = True,
    allocate: bool = False,
    calibration: str | None = None,
    floor: float | None = None,
    resume: bool = False,
    calibration_tokens: int | None = None,
    fixed_rate: bool = False,
    executor: str | None = None,
) -> CompressResult:
    """Compresses ``source`` into ``out``; see the module docstring for the two kinds of runs.

    ``calibration``: a text file, or "builtin" for the bundled Wikipedia prose
    (implies ``allocate``). ``resume``: continue a killed run of the same
    source and options (its partial file beside ``out``). ``fixed_rate``
    (with ``codec="auto"``, per tensor): only the fixed-rate codecs are
    candidates (``fixed``, ``rft-fixed``, ``wht-fixed``); each tensor's report
    in the index says which won and why. ``executor``:
    ``"threads"`` (default: a local thread pool of ``threads``) or
    ``"dask://HOST:PORT"``, a ``distributed`` scheduler
    (:mod:`quantonium.compress.dask_executor`); the file written is the same.
    """
    allocate, snr_db = validate_options(codec=codec, snr_db=snr_db, bpw=bpw, keep=keep, threads=threads,
                                        allocate=allocate, calibration=calibration, floor=floor, include=include,
                                        exclude=exclude, fixed_rate=fixed_rate)
    check_file(out, inputs=source_files(source))  # issue 11: a bad output fails before any work (outputs.py)
    check_executor_spec(executor)
    t0 = time.perf_counter()
    ex = make_executor(executor, threads)  # an unreachable scheduler fails here, before the model is read
    try:
        return _compress(ex, t0, source, out, codec=codec, snr_db=snr_db, bpw=bpw, keep=keep, include=include,
                         exclude=exclude, threads=threads, progress=progress, allocate=allocate,
                         calibration=calibration, floor=floor, resume=resume, calibration_tokens=calibration_tokens,
                         fixed_rate=fixed_rate)
    finally:
        ex.close()


def _compress(ex, t0, source, out, *, codec, snr_db, bpw, keep, include, exclude, threads, progress, allocate,
              calibration, floor, resume, calibration_tokens, fixed_rate) -> CompressResult:
    import sys

    with PeakSampler() as mem:
        src = open_source(source)
        roles = classify(src.names, src.config, src.shared)
        inc = re.compile(include) if include else None
        exc = re.compile(exclude) if exclude else None
        todo = [n for n in src.names if n not in roles.buffers and n not in roles.tied]
        forced = {n for n in todo if (inc is not None and not inc.search(n)) or (exc is not None and exc.search(n))}
        options = {"codec": codec, "snr_db": snr_db, "bpw": bpw, "keep": keep, "include": include, "exclude": exclude,
                   "allocation": ("lagrangian" if allocate else None), "calibration": calibration, "floor": floor,
                   "calibration_tokens": calibration_tokens, "fixed_rate": fixed_rate,
                   "threads": threads if calibration is not None else None}  # torch results depend on threads
        model_meta = {
            "id": src.model_id,
            "source": src.source,
            "source_kind": src.kind,
            "architecture": roles.architecture,
            "license": src.license,
            "buffers": sorted(roles.buffers),
            "tied": roles.tied,
            "notes": roles.notes,
            "codec_request": {k: options[k] for k in ("codec", "snr_db", "bpw", "keep", "include", "exclude", "allocation",
                                                      "fixed_rate")},
            "quantonium_version": __version__,
        }
        line = ex.attach(list(src.paths), mappable=all(n in src.spans for n in todo))
        if line:
            print(f"quantonium: {line}", file=sys.stderr)
        sink = QntSink(out, model=model_meta, files=src.files, run_key=run_key(src, options), resume=resume)
        resumed = len(sink.done)
        prog = Progress(progress, sampler=mem)
        if sink.note:
            print(f"quantonium: {sink.note}", file=sys.stderr)
        try:
            if allocate:
                from .allocated import run_allocated

                extra = run_allocated(src, todo, sink, bpw=bpw, codec=codec, forced=forced, calibration=calibration,
                                      floor=floor, threads=threads, progress=prog, tokens=calibration_tokens,
                                      executor=ex)
            else:
                extra = {}
                _run_per_tensor(src, todo, forced, sink, codec=codec, snr_db=snr_db, bpw=bpw, keep=keep,
                                threads=threads, progress=prog, fixed_rate=fixed_rate, executor=ex)
            entries = [sink.results.get(n) or sink.done[n] for n in todo]
            parameters = sum(_numel(e["shape"]) for e in entries)
            extra.update({"parameters": parameters, "source_bytes": src.source_bytes})
            path = sink.close(extra)
        except BaseException:
            sink.abort()
            raise
    snrs = [e["snr_db"] for e in entries if e["snr_db"] is not None and math.isfinite(e["snr_db"])]
    mix: dict[str, int] = {}
    for e in entries:
        mix[e["codec"]] = mix.get(e["codec"], 0) + 1
    return CompressResult(
        path=Path(path), tensors=len(entries), parameters=parameters,
        stored_values=sum(int(e.get("stored_values") or 0) for e in entries),
        file_bytes=Path(path).stat().st_size, source_bytes=src.source_bytes, seconds=time.perf_counter() - t0,
        peak_rss_mib=peak_rss_mib(), median_snr_db=statistics.median(snrs) if snrs else None,
        worst_snr_db=min(snrs) if snrs else None, codec_mix=mix, peak_anon_mib=mem.peak,
        tensor_bits=sum(int(e["bits"]) for e in entries), resumed_tensors=resumed, stages=prog.profile,
        executor=ex.describe(),
    )


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def is_small(shape) -> bool:
    """Norms, biases and other small tensors: one dimension or fewer than SMALL_TENSOR values."""
    return len(shape) <= 1 or _numel(shape) < SMALL_TENSOR


def _run_per_tensor(src, todo, forced, sink, *, codec, snr_db, bpw, keep, threads, progress, fixed_rate=False,
                    executor=None) -> None:
    target = {k: v for k, v in (("snr_db", snr_db), ("bpw", bpw), ("keep", keep)) if v is not None}
    options = {"fixed_rate": True} if fixed_rate else {}

    def jobs():
        for name in todo:
            if name in sink.done:
                continue
            shape = tuple(src.shape(name))
            lossy = not is_small(shape) and name not in forced
            yield TensorJob(name, src.ref(name), codec if lossy else "lossless", target if lossy else {},
                            options=options if lossy else {}, source_dtype=src.source_dtypes.get(name))

    total = sum(src.nbytes(n) for n in todo if n not in sink.done)
    ex = executor or ThreadExecutor(threads)
    with progress.stage("encode", total) as update:
        meter = TensorMeter(update)
        # local jobs report their progress inside a tensor (a large one takes many seconds); remote ones
        # would need the callback pickled: they count whole tensors, named as they arrive
        fn = run_job if ex.remote else partial(run_job, progress=meter.partial)
        with closing(ex.map(fn, jobs())) as results:
            for res in results:  # closing: an exception here (Ctrl-C in sink.add) stops the executor at once too
                sink.add(res)
                meter.done(res.name, res.source_nbytes)
                if ex.remote:
                    update.note(res.name)
