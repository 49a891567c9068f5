"""The ``.qnt`` container: one self-contained, verifiable file per model.

Layout (all integers little-endian)::

    preamble   64 bytes   b"QNTFILE\\0", u16 major, u16 minor, zero padding
    payloads   each starts at a multiple of 64 (zero padding between)
    index      JSON (UTF-8), starts at a multiple of 64
    footer     64 bytes   b"QNTINDEX", u64 index offset, u64 index length,
                          u32 CRC-32 of the index, u16 major, u16 minor,
                          zero padding, b"QNTEND\\0\\0" in the last 8 bytes

The index sits at the end, after the payloads, so a writer streams tensors
as they are produced (nothing has to be held whole) and the format stays
appendable: a later writer may add payloads after the old index and write a
new index and footer (the reader always starts from the footer). The index
holds the model's identity and configuration, the embedded files (config,
tokenizer, generation config: stored as payloads, so the file is
self-contained), and per tensor its name, shape, dtype, codec and codec
version, RFT parameters, offset, length, CRC-32, measured SNR and bits.

Writing goes to a temporary file in the target directory, which is flushed,
fsynced and renamed: the file appears under its final name only complete.

Reading memory-maps the file and validates everything before use: sizes,
bounds, alignment, overlaps, shape products, header size limits, CRCs, and the
codec payloads themselves. Any inconsistency raises ``QntFormatError`` with
the file name and a one-line reason. Nothing is allocated because a header
claims it: decoded sizes are bounded by ``max_tensor_bytes``.

Versioning: the major version changes when an older reader could misread a
file; a reader refuses a newer major version. Minor versions add optional
fields that older readers ignore.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .codecs import CODECS, DTYPES, CodecError, Encoded, decode_tensor, itemsize
from .faults import write_or_die
from .filenames import check_file_name, is_allowed

__all__ = ["FORMAT_MAJOR", "FORMAT_MINOR", "QntFile", "QntFormatError", "QntWriter", "update_model"]

MAGIC = b"QNTFILE\0"
INDEX_MAGIC = b"QNTINDEX"
END_MAGIC = b"QNTEND\0\0"
FORMAT_MAJOR = 1
FORMAT_MINOR = 0
ALIGN = 64
PREAMBLE = struct.Struct("<8sHH52x")
FOOTER = struct.Struct("<8sQQIHH24x8s")
MAX_INDEX_BYTES = 256 << 20
MAX_NDIM = 8
MAX_NUMEL = 1 << 40
DEFAULT_MAX_TENSOR_BYTES = 64 << 30

if PREAMBLE.size != ALIGN or FOOTER.size != ALIGN:  # pragma: no cover - a layout bug
    raise ImportError("qnt preamble and footer must be 64 bytes")


class QntFormatError(ValueError):
    """A .qnt file that is not valid: truncated, corrupted, or from a newer format."""


def _pad(n: int) -> int:
    return (-n) % ALIGN


def _json_safe(v: Any) -> Any:
    """Non-finite floats become None (JSON has no inf/NaN); containers recursively."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, np.generic):
        return _json_safe(v.item())
    return v


def _rft_params(params: dict[str, Any]) -> dict[str, Any] | None:
    """The RFT parameters a payload was made with (phi recorded too), or None."""
    if "beta" not in params:
        return None
    from .reference import PHI

    return {"beta": params["beta"], "sigma": params["sigma"], "axis": params.get("axis"), "phi": PHI,
            "transform": params.get("transform")}


class QntWriter:
    """Streams tensors into a new .qnt file; it appears under ``path`` only on success.

    Use as a context manager; an exception inside the block removes the
    temporary file and leaves any existing file at ``path`` untouched.
    """

    def __init__(self, path: str | os.PathLike, *, model: dict[str, Any] | None = None,
                 partial: str | os.PathLike | None = None, state: dict[str, Any] | None = None) -> None:
        """``partial``: write into this file instead of a fresh temporary one (resumable runs);
        ``state`` (from :meth:`state`): continue a partial file from that point (it is truncated there)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tensors: list[dict[str, Any]] = []
        self._names: set[str] = set()
        self._files: dict[str, dict[str, int]] = {}
        self.model: dict[str, Any] = dict(model or {})
        self._closed = False
        if partial is None:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            self._tmp = Path(tmp)
            self._f = os.fdopen(fd, "wb")
        else:
            self._tmp = Path(partial)
            self._f = open(self._tmp, "r+b" if state is not None else "wb")
        if state is None:
            self._f.write(PREAMBLE.pack(MAGIC, FORMAT_MAJOR, FORMAT_MINOR))
            self._pos = ALIGN
        else:
            self._pos = int(state["pos"])
            self._f.truncate(self._pos)
            self._f.seek(self._pos)
            self._tensors = [dict(t) for t in state["tensors"]]
            self._names = {t["name"] for t in self._tensors}
            self._files = {k: dict(v) for k, v in state["files"].items()}

    def state(self) -> dict[str, Any]:
        """What :class:`QntWriter` needs to continue this file later (JSON-able); call after :meth:`sync`."""
        return {"pos": self._pos, "tensors": self._tensors, "files": self._files}

    def sync(self) -> None:
        """Flushes and fsyncs what was written so far."""
        self._f.flush()
        os.fsync(self._f.fileno())

    def fileno(self) -> int:
        return self._f.fileno()

    def _write_blob(self, data, event: str = "payload") -> tuple[int, int, int]:
        data = memoryview(data).cast("B")
        off = self._pos
        write_or_die(event, self._f, data)
        self._pos += len(data)
        pad = _pad(self._pos)
        if pad:
            self._f.write(b"\0" * pad)
            self._pos += pad
        return off, len(data), zlib.crc32(data)

    def add_tensor(self, name: str, enc: Encoded, shape: tuple[int, ...], dtype: str, **extra: Any) -> dict[str, Any]:
        """Writes one encoded tensor now; returns its index entry."""
        if name in self._names:
            raise ValueError(f"tensor {name!r} is already in the file")
        if dtype not in DTYPES:
            raise ValueError(f"unsupported dtype {dtype!r}")
        if int(np.prod(shape, dtype=np.int64)) != enc.numel:
            raise ValueError(f"shape {tuple(shape)} does not match the encoded tensor ({enc.numel} values)")
        off, length, crc = self._write_blob(enc.payload)
        entry: dict[str, Any] = {
            "name": name,
            "shape": [int(s) for s in shape],
            "dtype": dtype,
            "codec": enc.codec,
            "codec_version": enc.version,
            "offset": off,
            "length": length,
            "crc32": crc,
            "bits": enc.bits,
            "bpw": enc.bpw,
            "snr_db": enc.snr_db,  # None in the file: exact
            "stored_values": enc.stored_values,
            "rft": _rft_params(enc.params),
            "report": enc.report or None,
            **extra,
        }
        entry = _json_safe(entry)
        self._names.add(name)
        self._tensors.append(entry)
        return entry

    def add_file(self, name: str, data: bytes) -> None:
        """Embeds a file (config.json, tokenizer.json, ...) in the container.

        Only names of :mod:`quantonium.filenames`' allow-list are accepted.
        """
        check_file_name(name)
        if name in self._files:
            raise ValueError(f"file {name!r} is already in the container")
        off, length, crc = self._write_blob(data)
        self._files[name] = {"offset": off, "length": length, "crc32": crc}

    def close(self) -> Path:
        """Writes the index and footer, fsyncs, and renames into place."""
        if self._closed:
            return self.path
        index = json.dumps(
            {
                "format": "qnt",
                "version": [FORMAT_MAJOR, FORMAT_MINOR],
                "created_by": f"quantonium {__version__}",
                "model": _json_safe(self.model),
                "files": self._files,
                "tensors": self._tensors,
            },
            separators=(",", ":"),
            allow_nan=False,
        ).encode()
        ioff, ilen, icrc = self._write_blob(index, "index")
        self._f.write(FOOTER.pack(INDEX_MAGIC, ioff, ilen, icrc, FORMAT_MAJOR, FORMAT_MINOR, END_MAGIC))
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self._tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self._closed = True
        return self.path

    def abort(self) -> None:
        if not self._closed:
            self._f.close()
            self._tmp.unlink(missing_ok=True)
            self._closed = True

    def __enter__(self) -> QntWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def update_model(path: str | os.PathLike, updates: dict[str, Any]) -> None:
    """Merges ``updates`` into a file's model metadata (e.g. a recorded evaluation).

    The payloads are copied unchanged into a temporary file in the same
    folder, a new index and footer are appended, and the copy is fsynced and
    renamed over the original: an interruption leaves the original intact.
    """
    path = Path(path)
    with QntFile(path) as f:
        index = json.loads(bytes(f._buf[f.index_offset : f.index_offset + f.index_length]))
        data_end = f.index_offset
    index["model"] = _json_safe({**index.get("model", {}), **updates})
    body = json.dumps(index, separators=(",", ":"), allow_nan=False).encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
            remaining = data_end
            while remaining:
                chunk = src.read(min(remaining, 16 << 20))
                if not chunk:
                    raise QntFormatError(f"{path}: file shrank while being updated")
                out.write(chunk)
                remaining -= len(chunk)
            out.write(body + b"\0" * _pad(len(body)))
            out.write(FOOTER.pack(INDEX_MAGIC, data_end, len(body), zlib.crc32(body), FORMAT_MAJOR, FORMAT_MINOR, END_MAGIC))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class QntFile:
    """A validated, memory-mapped .qnt file with random access by tensor name."""

    def __init__(self, path: str | os.PathLike, *, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> None:
        self.path = Path(path)
        self.max_tensor_bytes = max_tensor_bytes
        try:
            self._fh = open(self.path, "rb")
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.path}: no such file") from None
        try:
            size = os.fstat(self._fh.fileno()).st_size
            if size < 2 * ALIGN:
                self._fail(f"{size} bytes is too short for a .qnt file (truncated?)")
            self._mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
            self._buf = memoryview(self._mm)
            self.size = size
            self._read_index()
        except BaseException:
            self.close()
            raise

    # --- validation -------------------------------------------------------------
    def _fail(self, msg: str):
        raise QntFormatError(f"{self.path}: {msg}")

    def _read_index(self) -> None:
        magic, major, minor = PREAMBLE.unpack_from(self._buf, 0)
        if magic != MAGIC:
            self._fail("not a .qnt file (bad magic)")
        if major > FORMAT_MAJOR:
            self._fail(f"written in format {major}.{minor}, newer than this reader ({FORMAT_MAJOR}.x): upgrade quantonium")
        fmagic, ioff, ilen, icrc, fmajor, fminor, end = FOOTER.unpack_from(self._buf, self.size - ALIGN)
        if fmagic != INDEX_MAGIC or end != END_MAGIC:
            self._fail("no valid footer at the end of the file (truncated or unfinished write?)")
        if fmajor > FORMAT_MAJOR:
            self._fail(f"index written in format {fmajor}.{fminor}, newer than this reader ({FORMAT_MAJOR}.x)")
        self.version = (fmajor, fminor)
        if ilen > MAX_INDEX_BYTES:
            self._fail(f"index of {ilen} bytes exceeds the limit of {MAX_INDEX_BYTES}")
        if ioff < ALIGN or ioff % ALIGN or ioff + ilen > self.size - ALIGN:
            self._fail(f"index at {ioff} (+{ilen} bytes) lies outside the file")
        raw = self._buf[ioff : ioff + ilen]
        if zlib.crc32(raw) != icrc:
            self._fail("index checksum mismatch (corrupted file)")
        try:
            index = json.loads(bytes(raw))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            self._fail(f"index is not valid JSON ({e})")
        if not isinstance(index, dict) or index.get("format") != "qnt":
            self._fail("index is not a qnt index")
        self.index_offset, self.index_length = ioff, ilen
        self.model: dict[str, Any] = index.get("model") if isinstance(index.get("model"), dict) else {}
        self.created_by = str(index.get("created_by", "unknown"))
        tensors, files = index.get("tensors"), index.get("files")
        if not isinstance(tensors, list) or not isinstance(files, dict):
            self._fail("index lacks its tensor list or file table")
        self._tensors: dict[str, dict[str, Any]] = {}
        spans = []
        for i, t in enumerate(tensors):
            self._check_tensor(i, t)
            spans.append((t["offset"], t["length"], f"tensor {t['name']!r}"))
        self._files: dict[str, dict[str, int]] = {}
        for name, f in files.items():
            if not is_allowed(name):
                self._fail(f"embedded file name {name[:80]!r} is not allowed (path traversal or unknown file)")
            if not isinstance(f, dict):
                self._fail(f"file entry {name!r} is malformed")
            self._check_span(f, f"file {name!r}")
            self._files[name] = f
            spans.append((f["offset"], f["length"], f"file {name!r}"))
        spans.sort()
        for (o1, l1, n1), (o2, _, n2) in zip(spans, spans[1:]):
            if o1 + l1 > o2:
                self._fail(f"{n1} overlaps {n2}")

    def _check_span(self, e: dict, what: str) -> None:
        for key in ("offset", "length", "crc32"):
            v = e.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                self._fail(f"{what}: {key} missing or invalid")
        if e["offset"] < ALIGN or e["offset"] % ALIGN or e["offset"] + e["length"] > self.index_offset:
            self._fail(f"{what}: payload at {e['offset']} (+{e['length']} bytes) lies outside the data area")

    def _check_tensor(self, i: int, t: Any) -> None:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            self._fail(f"tensor entry {i} is malformed")
        name = t["name"]
        if name in self._tensors:
            self._fail(f"tensor {name!r} appears twice")
        shape = t.get("shape")
        if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_NUMEL for s in shape):
            self._fail(f"tensor {name!r}: invalid shape {shape!r}")
        numel = 1
        for s in shape:
            numel *= s
        if numel > MAX_NUMEL:
            self._fail(f"tensor {name!r}: {numel} values exceed the limit of {MAX_NUMEL}")
        if t.get("dtype") not in DTYPES:
            self._fail(f"tensor {name!r}: unsupported dtype {t.get('dtype')!r}")
        codec = t.get("codec")
        if codec not in CODECS:
            self._fail(f"tensor {name!r}: unknown codec {codec!r}")
        cv = t.get("codec_version")
        if not isinstance(cv, int) or cv > CODECS[codec][0]:
            self._fail(f"tensor {name!r}: {codec} version {cv!r} is newer than this reader supports ({CODECS[codec][0]})")
        self._check_span(t, f"tensor {name!r}")
        t["numel"] = numel
        self._tensors[name] = t

    # --- access -------------------------------------------------------------------
    @property
    def tensor_names(self) -> list[str]:
        return list(self._tensors)

    @property
    def file_names(self) -> list[str]:
        return list(self._files)

    def info(self, name: str) -> dict[str, Any]:
        try:
            return dict(self._tensors[name])
        except KeyError:
            raise KeyError(f"{self.path}: no tensor named {name!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def _blob(self, e: dict, what: str) -> memoryview:
        view = self._buf[e["offset"] : e["offset"] + e["length"]]
        if zlib.crc32(view) != e["crc32"]:
            self._fail(f"{what}: checksum mismatch (corrupted payload)")
        return view

    def payload(self, name: str) -> memoryview:
        """The tensor's payload bytes (checksum verified), without copying."""
        return self._blob(self.info(name), f"tensor {name!r}")

    def read(self, name: str, *, nthreads: int = 1) -> np.ndarray:
        """Decodes one tensor to its source dtype."""
        t = self.info(name)
        nbytes = t["numel"] * itemsize(t["dtype"])
        if nbytes > self.max_tensor_bytes:
            self._fail(f"tensor {name!r} would decode to {nbytes} bytes, above max_tensor_bytes={self.max_tensor_bytes}")
        payload = self.payload(name)
        try:
            return decode_tensor(payload, t["codec"], tuple(t["shape"]), t["dtype"], nthreads=nthreads)
        except (CodecError, ValueError) as e:
            self._fail(f"tensor {name!r}: {e}")

    def file(self, name: str) -> bytes:
        """An embedded file's bytes (checksum verified)."""
        if name not in self._files:
            raise KeyError(f"{self.path}: no embedded file named {name!r}")
        return bytes(self._blob(self._files[name], f"file {name!r}"))

    def verify(self) -> None:
        """Checks every checksum (tensors and files)."""
        for name in self._tensors:
            self.payload(name)
        for name in self._files:
            self.file(name)

    def close(self) -> None:
        """Unmaps the file. Payload views still held elsewhere keep the mapping alive."""
        buf = getattr(self, "_buf", None)
        if buf is not None:
            try:
                buf.release()
            except BufferError:
                pass
            self._buf = None
        mm = getattr(self, "_mm", None)
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass
            self._mm = None
        fh = getattr(self, "_fh", None)
        if fh is not None:
            fh.close()
            self._fh = None

    def __enter__(self) -> QntFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
