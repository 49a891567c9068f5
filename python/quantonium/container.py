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

Writing follows :mod:`quantonium.outputs`: a temporary file beside the
target, flushed, fsynced and renamed (through a symlink, onto its target):
the file appears under its final name only complete.

Reading memory-maps the file and validates everything before use: sizes,
bounds, alignment, overlaps, shape products, header size limits, CRCs, the
index's full schema (every field's type and range, the model metadata other
modules use, tied aliases naming stored tensors), and the codec payloads
themselves. Any inconsistency raises ``QntFormatError`` with the file name
and a one-line reason. Nothing is allocated because a header claims it: the
index is bounded by ``max_index_bytes`` and every decode's working memory by
``max_memory`` (:mod:`quantonium.limits`: half the machine's memory unless
set), checked before allocating; above it, ``QntLimitError``.

Versioning: the major version changes when an older reader could misread a
file; a reader refuses a newer major version. Minor versions add optional
fields that older readers ignore.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import stat
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, limits
from .codecs import CODECS, DTYPES, CodecError, Encoded, MemoryLimitError, decode_tensor, itemsize
from .filenames import check_file_name, is_allowed
from .outputs import AtomicFile

__all__ = ["FORMAT_MAJOR", "FORMAT_MINOR", "QntFile", "QntFormatError", "QntLimitError", "QntWriter", "update_model"]

MAGIC = b"QNTFILE\0"
INDEX_MAGIC = b"QNTINDEX"
END_MAGIC = b"QNTEND\0\0"
FORMAT_MAJOR = 1
FORMAT_MINOR = 0
ALIGN = 64
PREAMBLE = struct.Struct("<8sHH52x")
FOOTER = struct.Struct("<8sQQIHH24x8s")
MAX_INDEX_BYTES = limits.HARD_MAX_INDEX_BYTES  # the format's limit; a reader's default is lower (limits)
MAX_NDIM = 8
MAX_NUMEL = 1 << 40
MAX_NAME = 1024  # characters of a tensor name

if PREAMBLE.size != ALIGN or FOOTER.size != ALIGN:  # pragma: no cover - a layout bug
    raise ImportError("qnt preamble and footer must be 64 bytes")


class QntFormatError(ValueError):
    """A .qnt file that is not valid: truncated, corrupted, or from a newer format."""


class QntLimitError(QntFormatError):
    """A .qnt file that would need more than a reader's limit (memory, index size) to read."""

    HINT = "raise it with max_memory=..., the CLI's --max-memory or QUANTONIUM_MAX_MEMORY"


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


def _show(v: Any) -> str:
    """A value from a file, shown briefly in an error message."""
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


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
    temporary file and leaves any existing file at ``path`` untouched. The
    output rules are :mod:`quantonium.outputs`' (checked at once: not a
    folder, not one of ``inputs``, a writable folder; symlinks written
    through; permissions from the umask).
    """

    def __init__(self, path: str | os.PathLike, *, model: dict[str, Any] | None = None,
                 partial: str | os.PathLike | None = None, state: dict[str, Any] | None = None,
                 inputs: tuple[str | os.PathLike, ...] | list = ()) -> None:
        """``partial``: write into this file instead of a fresh temporary one (resumable runs; the caller
        holds its lock); ``state`` (from :meth:`state`): continue a partial file from that point (it is
        truncated there); ``inputs``: files the output must not be (:func:`quantonium.outputs.check_file`)."""
        self.path = Path(path)
        self._tensors: list[dict[str, Any]] = []
        self._names: set[str] = set()
        self._files: dict[str, dict[str, int]] = {}
        self.model: dict[str, Any] = dict(model or {})
        self._closed = False
        self._out = AtomicFile(self.path, inputs=inputs, temp=partial, resume_at=None if state is None else int(state["pos"]))
        self._f = self._out.file
        if state is None:
            self._out.write(PREAMBLE.pack(MAGIC, FORMAT_MAJOR, FORMAT_MINOR))
            self._pos = ALIGN
        else:
            self._pos = int(state["pos"])
            self._tensors = [dict(t) for t in state["tensors"]]
            self._names = {t["name"] for t in self._tensors}
            self._files = {k: dict(v) for k, v in state["files"].items()}

    def state(self) -> dict[str, Any]:
        """What :class:`QntWriter` needs to continue this file later (JSON-able); call after :meth:`sync`."""
        return {"pos": self._pos, "tensors": self._tensors, "files": self._files}

    def sync(self) -> None:
        """Flushes and fsyncs what was written so far."""
        self._out.sync()

    def fileno(self) -> int:
        return self._out.file.fileno()

    def _write_blob(self, data, event: str = "payload") -> tuple[int, int, int]:
        data = memoryview(data).cast("B")
        off = self._pos
        self._out.write(data, event=event)
        self._pos += len(data)
        pad = _pad(self._pos)
        if pad:
            self._out.write(b"\0" * pad)
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
        self._out.write(FOOTER.pack(INDEX_MAGIC, ioff, ilen, icrc, FORMAT_MAJOR, FORMAT_MINOR, END_MAGIC))
        self._out.commit()
        self._closed = True
        return self.path

    def abort(self) -> None:
        if not self._closed:
            self._out.abort()
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

    The payloads are copied unchanged into a temporary file beside the
    file (beside its target, for a symlink), a new index and footer are
    appended, and the copy is fsynced and renamed over the original
    (:mod:`quantonium.outputs`): an interruption leaves the original intact.
    """
    path = Path(path)
    with QntFile(path) as f:
        index = f._index_json()
        data_end = f.index_offset
        index["model"] = _json_safe({**f.model, **updates})
        body = json.dumps(index, separators=(",", ":"), allow_nan=False).encode()
        with AtomicFile(path) as out:
            src = f._buf
            for pos in range(0, data_end, 16 << 20):
                out.write(src[pos : min(data_end, pos + (16 << 20))])
            out.write(body + b"\0" * _pad(len(body)))
            out.write(FOOTER.pack(INDEX_MAGIC, data_end, len(body), zlib.crc32(body), FORMAT_MAJOR, FORMAT_MINOR, END_MAGIC))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and math.isfinite(v))


def _is_text(v: Any, limit: int = 4096) -> bool:
    return isinstance(v, str) and len(v) <= limit


#: model fields other modules read: name -> (check, what it must be). Absent or null is allowed.
_MODEL_FIELDS: dict[str, tuple[Any, str]] = {
    "id": (_is_text, "a string"),
    "source": (_is_text, "a string"),
    "source_kind": (_is_text, "a string"),
    "architecture": (_is_text, "a string"),
    "license": (_is_text, "a string"),
    "quantonium_version": (_is_text, "a string"),
    "buffers": (lambda v: isinstance(v, list) and all(_is_text(x) for x in v), "a list of strings"),
    "notes": (lambda v: isinstance(v, list) and all(_is_text(x) for x in v), "a list of strings"),
    "tied": (lambda v: isinstance(v, dict) and all(_is_text(x) for x in v.values()), "an object of strings"),
    "codec_request": (lambda v: isinstance(v, dict), "an object"),
    "calibration": (lambda v: isinstance(v, dict), "an object"),
    "evaluation": (lambda v: isinstance(v, dict), "an object"),
    "parameters": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "source_bytes": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "compress_seconds": (lambda v: _is_number(v) and v >= 0, "a non-negative number"),
    "peak_rss_mib": (lambda v: _is_number(v) and v >= 0, "a non-negative number"),
}

#: optional tensor fields: name -> (check, what it must be). Absent or null is allowed.
_TENSOR_FIELDS: dict[str, tuple[Any, str]] = {
    "bpw": (lambda v: _is_number(v) and v >= 0, "a non-negative number"),
    "snr_db": (_is_number, "a number"),
    "stored_values": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "shannon_gap_bpw": (_is_number, "a number"),
    "source_dtype": (_is_text, "a string"),
    "report": (lambda v: isinstance(v, dict), "an object"),
    "rft": (lambda v: isinstance(v, dict) and all(_is_number(v.get(k)) for k in ("beta", "sigma"))
            and all(v.get(k) is None or _is_number(v.get(k)) for k in ("axis", "phi"))
            and (v.get("transform") is None or _is_text(v.get("transform"))), "an object with numbers beta, sigma"),
}


class QntFile:
    """A validated, memory-mapped .qnt file with random access by tensor name.

    ``max_memory``: the most working memory one read may use, and the most
    a whole-model operation may hold (bytes or a size such as ``"8G"``;
    default: ``QUANTONIUM_MAX_MEMORY`` or half the machine's memory).
    ``max_index_bytes``: the largest index accepted (default:
    ``QUANTONIUM_MAX_INDEX`` or 64 MiB, and at most max_memory / 8). See
    :mod:`quantonium.limits`.
    """

    def __init__(self, path: str | os.PathLike, *, max_memory: int | str | None = None,
                 max_index_bytes: int | str | None = None) -> None:
        self.path = Path(path)
        self.max_memory = limits.max_memory(max_memory)
        self.max_index_bytes = limits.max_index_bytes(max_index_bytes, self.max_memory)
        try:
            self._fh = open(self.path, "rb")
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.path}: no such file") from None
        except IsADirectoryError:
            raise QntFormatError(f"{self.path}: is a folder, not a .qnt file") from None
        try:
            st = os.fstat(self._fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                self._fail("not a regular file")
            size = st.st_size
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

    def _raw_index(self) -> memoryview:
        return self._buf[self.index_offset : self.index_offset + self.index_length]

    def _index_json(self) -> dict[str, Any]:
        """The index as stored (parsed again: the validated copy carries derived fields)."""
        return limits.load_json(self._raw_index(), "index")

    def _read_index(self) -> None:
        magic, major, minor = PREAMBLE.unpack_from(self._buf, 0)
        if magic != MAGIC:
            self._fail("not a .qnt file (bad magic)")
        if major > FORMAT_MAJOR:
            self._fail(f"written in format {major}.{minor}, newer than this reader ({FORMAT_MAJOR}.x): upgrade quantonium")
        if major < 1:
            self._fail(f"format {major}.{minor} does not exist (corrupted preamble)")
        fmagic, ioff, ilen, icrc, fmajor, fminor, end = FOOTER.unpack_from(self._buf, self.size - ALIGN)
        if fmagic != INDEX_MAGIC or end != END_MAGIC:
            self._fail("no valid footer at the end of the file (truncated or unfinished write?)")
        if fmajor > FORMAT_MAJOR:
            self._fail(f"index written in format {fmajor}.{fminor}, newer than this reader ({FORMAT_MAJOR}.x)")
        if fmajor < 1:
            self._fail(f"index format {fmajor}.{fminor} does not exist (corrupted footer)")
        self.version = (fmajor, fminor)
        if ioff < ALIGN or ioff % ALIGN or ioff + ilen > self.size - ALIGN:
            self._fail(f"index at {ioff} (+{ilen} bytes) lies outside the file")
        if ilen > self.max_index_bytes:
            raise QntLimitError(f"{self.path}: index of {limits.format_size(ilen)} exceeds the limit of "
                                f"{limits.format_size(self.max_index_bytes)} (raise it with max_index_bytes=..., "
                                f"the CLI's --max-index or {limits.ENV_MAX_INDEX}; at most {limits.format_size(MAX_INDEX_BYTES)})")
        self.index_offset, self.index_length = ioff, ilen
        raw = self._raw_index()
        if zlib.crc32(raw) != icrc:
            self._fail("index checksum mismatch (corrupted file)")
        try:
            index = limits.load_json(raw, "index")
        except limits.JsonError as e:
            self._fail(str(e))
        if not isinstance(index, dict) or index.get("format") != "qnt":
            self._fail("index is not a qnt index")
        version = index.get("version")
        if version is not None and not (isinstance(version, list) and len(version) == 2 and all(_is_int(v) for v in version)):
            self._fail(f"index field 'version' must be [major, minor], not {_show(version)}")
        created_by = index.get("created_by", "unknown")
        if not _is_text(created_by, 256):
            self._fail(f"index field 'created_by' must be a string, not {_show(created_by)}")
        self.created_by = created_by
        model = index.get("model", {})
        if not isinstance(model, dict):
            self._fail(f"index field 'model' must be an object, not {_show(model)}")
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
        self._check_model(model)
        self.model: dict[str, Any] = model

    def _check_model(self, model: dict[str, Any]) -> None:
        for key, (ok, what) in _MODEL_FIELDS.items():
            v = model.get(key)
            if v is not None and not ok(v):
                self._fail(f"model field {key!r} must be {what}, not {_show(v)}")
        for alias, canon in (model.get("tied") or {}).items():
            if canon not in self._tensors:
                self._fail(f"tied alias {alias[:80]!r} names {canon[:80]!r}, which is not a stored tensor")
            if alias in self._tensors:
                self._fail(f"tied alias {alias[:80]!r} is also a stored tensor")

    def _check_span(self, e: dict, what: str) -> None:
        for key in ("offset", "length", "crc32"):
            v = e.get(key)
            if not _is_int(v) or v < 0:
                self._fail(f"{what}: {key} missing or invalid")
        if e["crc32"] > 0xFFFFFFFF:
            self._fail(f"{what}: crc32 out of range")
        if e["offset"] < ALIGN or e["offset"] % ALIGN or e["offset"] + e["length"] > self.index_offset:
            self._fail(f"{what}: payload at {e['offset']} (+{e['length']} bytes) lies outside the data area")

    def _check_tensor(self, i: int, t: Any) -> None:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            self._fail(f"tensor entry {i} is malformed (no name)")
        name = t["name"]
        if not 0 < len(name) <= MAX_NAME or not name.isprintable():
            self._fail(f"tensor entry {i}: name {name[:80]!r} is empty, longer than {MAX_NAME} or holds control characters")
        if name in self._tensors:
            self._fail(f"tensor {name!r} appears twice")
        shape = t.get("shape")
        if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(_is_int(s) and 0 <= s <= MAX_NUMEL for s in shape):
            self._fail(f"tensor {name!r}: invalid shape {_show(shape)}")
        numel = 1
        for s in shape:
            numel *= s
        if numel > MAX_NUMEL:
            self._fail(f"tensor {name!r}: {numel} values exceed the limit of {MAX_NUMEL}")
        dtype = t.get("dtype")
        if not isinstance(dtype, str) or dtype not in DTYPES:
            self._fail(f"tensor {name!r}: unsupported dtype {_show(dtype)}")
        codec = t.get("codec")
        if not isinstance(codec, str) or codec not in CODECS:
            self._fail(f"tensor {name!r}: unknown codec {_show(codec)}")
        cv = t.get("codec_version")
        if not _is_int(cv) or cv < 1:
            self._fail(f"tensor {name!r}: {codec} version {_show(cv)} is not a version")
        if cv > CODECS[codec][0]:
            self._fail(f"tensor {name!r}: {codec} version {cv} is newer than this reader supports ({CODECS[codec][0]})")
        self._check_span(t, f"tensor {name!r}")
        bits = t.get("bits")
        if bits != 8 * t["length"] or not _is_int(bits):
            self._fail(f"tensor {name!r}: bits {_show(bits)} is not 8 x its payload length ({t['length']} bytes)")
        for key, (ok, what) in _TENSOR_FIELDS.items():
            v = t.get(key)
            if v is not None and not ok(v):
                self._fail(f"tensor {name!r}: field {key!r} must be {what}, not {_show(v)}")
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

    def read(self, name: str, *, nthreads: int = 1, held: int = 0) -> np.ndarray:
        """Decodes one tensor to its source dtype (a C-contiguous array).

        The payload's streams are checked against the shape, and the decode's
        working memory against ``max_memory`` less ``held`` (what the caller
        already holds of this file), before anything is allocated.
        """
        t = self.info(name)
        nbytes = t["numel"] * itemsize(t["dtype"])
        limit = self.max_memory - held
        if nbytes > limit:
            raise QntLimitError(f"{self.path}: tensor {name!r} would decode to {limits.format_size(nbytes)}, above the memory "
                                f"limit of {limits.format_size(self.max_memory)}"
                                f"{f' less {limits.format_size(held)} held' if held else ''} ({QntLimitError.HINT})")
        payload = self.payload(name)
        try:
            return decode_tensor(payload, t["codec"], tuple(t["shape"]), t["dtype"], nthreads=nthreads, max_memory=limit)
        except MemoryLimitError as e:
            raise QntLimitError(f"{self.path}: tensor {name!r}: {e} ({QntLimitError.HINT})") from None
        except MemoryError:
            raise QntLimitError(f"{self.path}: tensor {name!r}: the machine ran out of memory decoding it (limit "
                                f"{limits.format_size(self.max_memory)}; lower it with --max-memory)") from None
        except (CodecError, ValueError) as e:
            self._fail(f"tensor {name!r}: {e}")

    def read_all(self, *, nthreads: int = 1, reserve: int = 0, names: list[str] | None = None,
                 progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
        """Every tensor (or ``names``) decoded, the whole set bounded by ``max_memory``.

        Refused at once when the tensors, plus ``reserve`` bytes the caller
        will need beside them, exceed the limit; each read's working memory
        then counts what is already held. ``progress(nbytes)``, when given, is
        called after each tensor with its decoded bytes (a progress bar).
        """
        names = list(self._tensors) if names is None else list(names)
        self.require_memory(self.decoded_bytes(names) + reserve, f"decoding {len(names)} tensors" + (" and what goes with them" if reserve else ""))
        out: dict[str, np.ndarray] = {}
        held = reserve
        for n in names:
            out[n] = self.read(n, nthreads=nthreads, held=held)
            held += out[n].nbytes
            if progress is not None:
                progress(out[n].nbytes)
        return out

    def read_iter(self, names: list[str] | None = None, *, threads: int = 1,
                  reserve: int = 0) -> Iterator[tuple[str, np.ndarray]]:
        """Yields ``(name, array)`` for every tensor (or ``names``, in that order; a name may repeat),
        ``threads`` tensors decoding at once, holding only what is in flight.

        In flight: the tensors decoding, those decoded and waiting, and the one last yielded (the caller
        holds it until it asks for the next). At most ``threads + 1`` wait or decode, and a tensor is
        started only when it fits beside those in flight and ``reserve`` (what the caller holds beside)
        within ``max_memory``; otherwise it waits for them to be consumed. Each read's working memory
        counts what is in flight as held (with ``threads`` > 1, the temporaries of the decodes running
        beside it are not counted: only their outputs). Refused at once (``QntLimitError``) when the
        largest tensor and ``reserve`` alone exceed the limit. Close the iterator
        (``contextlib.closing``) when leaving it early: decodes not started are cancelled, running
        ones finish, nothing stays behind.
        """
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        names = list(self._tensors) if names is None else list(names)
        sizes = []
        for n in names:
            t = self.info(n)  # a KeyError naming the file for an unknown name
            sizes.append(t["numel"] * itemsize(t["dtype"]))
        if names:
            big = max(range(len(names)), key=sizes.__getitem__)
            self.require_memory(sizes[big] + reserve, f"decoding tensor {names[big]!r}"
                                + (f" with {limits.format_size(reserve)} held beside it" if reserve else ""))
        limit = self.max_memory - reserve
        pending: deque = deque()  # (name, bytes, future), in order
        held = 0  # bytes in flight, the caller's current tensor included
        i = 0
        with ThreadPoolExecutor(max(1, threads), thread_name_prefix="quantonium-decode") as pool:
            try:
                while i < len(names) or pending:
                    while i < len(names) and len(pending) <= threads and (held == 0 or held + sizes[i] <= limit):
                        pending.append((names[i], sizes[i], pool.submit(self.read, names[i], held=reserve + held)))
                        held += sizes[i]
                        i += 1
                    name, nbytes, fut = pending.popleft()
                    array = fut.result()
                    yield name, array
                    del array, fut
                    held -= nbytes
            finally:
                for _, _, fut in pending:
                    fut.cancel()

    def config(self) -> dict[str, Any]:
        """The embedded ``config.json`` parsed (``{}`` when there is none); a JSON object with a list of
        strings as ``architectures``, or ``QntFormatError``."""
        if "config.json" not in self._files:
            return {}
        try:
            cfg = limits.load_json(self.file("config.json"), "embedded config.json")
        except limits.JsonError as e:
            self._fail(str(e))
        if not isinstance(cfg, dict):
            self._fail("embedded config.json is not a JSON object")
        arch = cfg.get("architectures")
        if arch is not None and not (isinstance(arch, list) and all(isinstance(a, str) for a in arch)):
            self._fail(f"embedded config.json: 'architectures' must be a list of strings, not {_show(arch)}")
        return cfg

    def decoded_bytes(self, names: list[str] | None = None) -> int:
        """Bytes the tensors (all, or ``names``) take once decoded."""
        return sum(self._tensors[n]["numel"] * itemsize(self._tensors[n]["dtype"]) for n in (self._tensors if names is None else names))

    def require_memory(self, nbytes: int, what: str) -> None:
        """Raises ``QntLimitError`` when an operation on this file would hold more than ``max_memory``."""
        if nbytes > self.max_memory:
            raise QntLimitError(f"{self.path}: {what} needs {limits.format_size(nbytes)}, above the memory limit of "
                                f"{limits.format_size(self.max_memory)} ({QntLimitError.HINT})")

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
