"""Compress a model into a .qnt file, tensor by tensor, and get it back.

``compress`` streams: tensors are read one at a time from the source, encoded
by a pool of threads (the native kernels release the GIL) with a bounded
number in flight, and written to the container as they finish, so peak memory
follows the largest tensors, not the model. Buffers (causal masks, position
ids) are listed but not stored: the model rebuilds them. Tied weights are
stored once and recorded as aliases. Tensors selected by ``include`` (default:
all) and not by ``exclude`` are coded with the chosen codec; the others, and
small tensors (one dimension or fewer than 4096 values: norms, biases) are
stored lossless.
"""

from __future__ import annotations

import json
import math
import re
import resource
import statistics
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .codecs import DTYPES, SMALL_TENSOR, encode_tensor, itemsize
from .container import QntFile, QntFormatError, QntWriter
from .filenames import target_path
from .models import classify, open_source, source_files
from .outputs import AtomicFolder, check_file, save_safetensors, write_plain

__all__ = ["CompressResult", "compress", "decompress", "load", "state_dict"]


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

    @property
    def bpw(self) -> float:
        return 8 * self.file_bytes / self.parameters if self.parameters else 0.0

    def summary(self) -> str:
        snr = "exact" if self.median_snr_db is None else f"median tensor SNR {self.median_snr_db:.2f} dB (worst {self.worst_snr_db:.2f} dB)"
        return (
            f"wrote {self.path}: {self.tensors} tensors, {self.parameters:,} parameters, "
            f"{self.file_bytes / 2**20:.2f} MiB, {self.bpw:.3f} bpw, "
            f"ratio {self.source_bytes / self.file_bytes:.2f}x vs source and {2 * self.parameters / self.file_bytes:.2f}x vs fp16, "
            f"{snr}, {self.seconds:.1f} s"
        )

    def to_json(self) -> dict[str, Any]:
        return {**{k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}, "bpw": self.bpw}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


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
) -> CompressResult:
    """Compresses ``source`` into ``out``.

    With ``allocate`` (implied by ``calibration``), ``bpw`` is the average for
    the whole model and each tensor's step comes from a Lagrangian allocation
    over measured rate-distortion curves (``codecs.allocate``); with
    ``calibration`` (a text, or "builtin" for the bundled Wikipedia prose) the
    distortion is weighted by sensitivities measured on the original model
    (``quantonium.calibration``). Allocation reads every tensor before coding
    (the curves of all tensors are needed at once).
    """
    if calibration is not None:
        allocate = True
    if allocate:
        if bpw is None or snr_db is not None or keep is not None:
            raise ValueError("allocation needs --bits (the average for the whole model) and no other target")
        if codec not in ("direct", "rft-dense", "auto"):
            raise ValueError(f"allocation works with the direct, rft-dense and auto codecs, not {codec!r}")
    if snr_db is None and bpw is None and keep is None:
        snr_db = 30.0
    check_file(out, inputs=source_files(source))  # issue 11: a bad output fails before any work (outputs.py)
    t0 = time.perf_counter()
    src = open_source(source)
    roles = classify(src.names, src.config, src.shared)
    inc = re.compile(include) if include else None
    exc = re.compile(exclude) if exclude else None
    todo = [n for n in src.names if n not in roles.buffers and n not in roles.tied]
    sizes: dict[str, int] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=src.source_bytes, unit="B", unit_scale=True, desc="compress", file=sys.stderr, leave=False)
    model_meta = {
        "id": src.model_id,
        "source": src.source,
        "source_kind": src.kind,
        "architecture": roles.architecture,
        "license": src.license,
        "buffers": sorted(roles.buffers),
        "tied": roles.tied,
        "notes": roles.notes,
        "codec_request": {"codec": codec, "snr_db": snr_db, "bpw": bpw, "keep": keep, "include": include, "exclude": exclude,
                          "allocation": ("lagrangian" if allocate else None)},
        "quantonium_version": __version__,
    }
    stats: list[tuple[str, Any]] = []
    parameters = stored = 0

    planned: dict[str, Any] = {}
    if allocate:
        planned = _allocate(src, todo, bpw, codec, inc, exc, calibration, floor, threads, model_meta)

    def job(name: str):
        if planned:
            shape, dtype, done = planned.pop(name)  # (Encoded, Shannon gap)
            sizes[name] = done[0].numel * itemsize(dtype)
            return shape, dtype, done
        a = src.read(name)
        sizes[name] = a.nbytes
        if a.dtype.name not in DTYPES:
            raise ValueError(f"tensor {name!r} has dtype {a.dtype}, which is not a buffer and not float32/float16/bfloat16")
        small = a.ndim <= 1 or a.size < SMALL_TENSOR  # norms, biases: lossless by default
        lossy = not small and (inc is None or inc.search(name)) and not (exc and exc.search(name))
        enc = encode_tensor(a, codec if lossy else "lossless", snr_db=snr_db, bpw=bpw, keep=keep, nthreads=1)
        return a.shape, a.dtype.name, (enc, _gap(a, enc))

    with QntWriter(out, model=model_meta) as w:
        for fname, data in src.files.items():
            w.add_file(fname, data)
        with ThreadPoolExecutor(max(1, threads)) as pool:
            pending: list[tuple[str, Future]] = []

            def drain(limit: int) -> None:
                nonlocal parameters, stored
                while len(pending) > limit:
                    name, fut = pending.pop(0)
                    shape, dtype, (enc, gap) = fut.result()
                    w.add_tensor(name, enc, shape, dtype, source_dtype=src.source_dtypes.get(name), shannon_gap_bpw=gap)
                    parameters += enc.numel
                    stored += enc.stored_values
                    stats.append((enc.codec, enc.snr_db))
                    if bar is not None:
                        bar.update(sizes.get(name, 0))

            for name in todo:
                pending.append((name, pool.submit(job, name)))
                drain(2 * max(1, threads))
            drain(0)
        w.model["parameters"] = parameters
        w.model["source_bytes"] = src.source_bytes
        w.model["compress_seconds"] = time.perf_counter() - t0
        w.model["peak_rss_mib"] = _peak_rss_mib()
    if bar is not None:
        bar.close()
    snrs = [s for _, s in stats if s is not None and math.isfinite(s)]
    mix: dict[str, int] = {}
    for c, _ in stats:
        mix[c] = mix.get(c, 0) + 1
    return CompressResult(
        path=Path(out),
        tensors=len(stats),
        parameters=parameters,
        stored_values=stored,
        file_bytes=Path(out).stat().st_size,
        source_bytes=src.source_bytes,
        seconds=time.perf_counter() - t0,
        peak_rss_mib=_peak_rss_mib(),
        median_snr_db=statistics.median(snrs) if snrs else None,
        worst_snr_db=min(snrs) if snrs else None,
        codec_mix=mix,
    )


def _allocate(src, todo, bpw, codec, inc, exc, calibration, floor, threads, model_meta) -> dict[str, Any]:
    from .calibration import DEFAULT_FLOOR, calibration_text, match_names, measure
    from .codecs.allocate import encode_allocated

    tensors = {}
    for name in todo:
        a = src.read(name)
        if a.dtype.name not in DTYPES:
            raise ValueError(f"tensor {name!r} has dtype {a.dtype}, which is not a buffer and not float32/float16/bfloat16")
        tensors[name] = a
    forced = {n for n in todo if (inc is not None and not inc.search(n)) or (exc is not None and exc.search(n))}
    sens = grams = None
    if calibration is not None:
        from .evaluate import load_original

        if calibration == "builtin":
            cal_name, text = calibration_text()
        else:
            p = Path(calibration)
            if not p.is_file():
                raise ValueError(f"{p}: no such calibration text file")
            cal_name, text = p.name, p.read_text(encoding="utf-8", errors="replace")
        model, tok = load_original(src.source)
        s = measure(model, tok, text, gram=True, max_tokens=4096)
        del model
        back = {m: n for n, m in match_names(list(s), list(tensors)).items()}
        fl = DEFAULT_FLOOR if floor is None else floor
        sens = {back[m]: v.factors(fl) for m, v in s.items() if back.get(m) in tensors}
        grams = {back[m]: (v.gram, v.transposed) for m, v in s.items() if v.gram is not None and back.get(m) in tensors}
        model_meta["calibration"] = {"text": cal_name, "chars": len(text), "floor": fl, "weighted_tensors": len(sens),
                                     "method": "row: E[(dL/dy)^2] under sampled labels; col: E[x^2] (quantonium.calibration)",
                                     "gptq_tensors": len(grams) if codec in ("direct", "auto") else 0}
    enc = encode_allocated(tensors, bpw, codec=codec, sensitivity=sens, lossless_names=forced,
                           grams=grams if codec in ("direct", "auto") else None, nthreads=max(1, threads))
    return {n: (a.shape, a.dtype.name, (enc[n], _gap(a, enc[n]))) for n, a in tensors.items()}


def _gap(a: np.ndarray, enc) -> float | None:
    """The tensor's distance to the Shannon lower bound, bits per weight (None when exact)."""
    if enc.codec == "lossless":
        return None
    from .codecs import decode_tensor
    from .metrics import shannon_gap

    w_hat = decode_tensor(enc.payload, enc.codec, a.shape, "float32")
    g = shannon_gap(np.asarray(a, np.float32), w_hat, enc.bpw)
    return None if not math.isfinite(g) else g


def state_dict(f: QntFile, *, threads: int = 1) -> dict[str, np.ndarray]:
    """Every stored tensor decoded (within the file's memory limit), plus the tied aliases (as the same array)."""
    out = f.read_all(nthreads=threads)
    for alias, canon in (f.model.get("tied") or {}).items():
        if canon in out:
            out[alias] = out[canon]
    return out


def decompress(path: str | Path, outdir: str | Path, *, threads: int = 1) -> Path:
    """Writes an HF folder (config, tokenizer files, model.safetensors) that transformers loads unchanged.

    The folder is written by the rules of :mod:`quantonium.outputs` (a new or
    empty folder, filled under a temporary name and renamed when complete);
    the tensors and their untied copies must fit in the file's memory limit
    (safetensors >= 0.8 writes from the tensors' memory, without a copy).
    """
    import torch

    with QntFile(path) as f, AtomicFolder(outdir, inputs=[path]) as out:
        for name in f.file_names:  # names checked against the allow-list by QntFile
            dest = target_path(out.path, name)
            dest.parent.mkdir(exist_ok=True)
            write_plain(dest, f.file(name), shown_as=out.shown(dest))
        tie = bool(f.config().get("tie_word_embeddings", True)) if "config.json" in f.file_names else False
        copies = {} if tie else dict(f.model.get("tied") or {})  # an untied model needs its copies written out
        arrays = f.read_all(nthreads=threads, reserve=f.decoded_bytes(list(copies.values())))
        tensors = {n: (torch.from_numpy(a.view(np.int16)).view(torch.bfloat16) if a.dtype.name == "bfloat16" else torch.from_numpy(a))
                   for n, a in arrays.items()}
        for alias, canon in copies.items():
            tensors[alias] = tensors[canon].clone()
        save_safetensors(tensors, out.path / "model.safetensors", metadata={"format": "pt", "quantonium": __version__},
                         shown_as=out.shown(out.path / "model.safetensors"))
    return Path(outdir)


def load(path: str | Path, *, threads: int = 1):
    """A ready transformers model (eval mode) and its tokenizer (None if the file has none)."""
    import tempfile

    import transformers

    with tempfile.TemporaryDirectory() as d:
        folder = decompress(path, Path(d) / "model", threads=threads)
        if not (folder / "config.json").is_file():
            raise QntFormatError(f"{path}: holds no config.json; a model cannot be built from it")
        try:  # issue 11: the file's embedded config and tokenizer reach transformers: its errors become one line
            config = json.loads((folder / "config.json").read_text())  # validated by decompress (QntFile.config)
            cls = None
            for arch in config.get("architectures") or []:
                cls = getattr(transformers, arch, None)
                if cls is not None:
                    break
            cls = cls or transformers.AutoModel
            model = cls.from_pretrained(str(folder))
            model.eval()
            tok = None
            if any((folder / n).exists() for n in ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model")):
                tok = transformers.AutoTokenizer.from_pretrained(str(folder))
        except Exception as e:
            raise QntFormatError(f"{path}: transformers cannot build the model it holds ({type(e).__name__}: "
                                 f"{(str(e).strip().splitlines() or [''])[0][:200]})") from None
    return model, tok
