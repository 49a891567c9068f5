"""Zero-copy views of the tensors in a ``.safetensors`` file (memory-mapped, validated).

The ``safetensors`` package reads a tensor into freshly allocated memory, so a
model read through it costs its whole size in anonymous memory. Compression
and calibration only need to *read* the weights: here the file is mapped once
(copy-on-write, so that torch can wrap the arrays as writable tensors; nothing
is ever written back) and every tensor is a numpy view into the mapping. Its
pages live in the page cache: they count in RSS but not in anonymous memory,
and the kernel may drop them under pressure.

The header is the package's documented format (u64 little-endian length, then
JSON: per tensor dtype, shape and ``data_offsets`` relative to the end of the
header). Everything in it is a claim and is checked: sizes against the file,
offsets against each other (no overlap), ``nbytes == itemsize * prod(shape)``,
known dtypes, a bounded header length. The ``safetensors`` package remains the
writer and the reference reader (tests compare the two).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SafetensorsView", "TensorSpan"]

MAX_HEADER = 100 << 20  # the safetensors package's own limit is 100 MB


def _np_dtype(code: str) -> np.dtype:
    if code == "BF16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    table = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
             "I16": np.int16, "I8": np.int8, "U8": np.uint8, "U16": np.uint16, "U32": np.uint32,
             "U64": np.uint64, "BOOL": np.bool_}
    if code not in table:
        raise ValueError(f"unsupported safetensors dtype {code!r}")
    return np.dtype(table[code])


#: safetensors dtype code -> the dtype name used in .qnt files and source_dtypes
DTYPE_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64", "I64": "int64",
               "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


@dataclass(frozen=True)
class TensorSpan:
    """Where one tensor lies in its file (absolute byte offset), and what it is."""

    path: str
    offset: int
    nbytes: int
    dtype: str  # safetensors code: F32, BF16, ...
    shape: tuple[int, ...]


class SafetensorsView:
    """A validated, memory-mapped safetensors file; ``array(name)`` is a zero-copy view."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError(f"{self.path}: too short for a safetensors file")
            (hlen,) = struct.unpack("<Q", head)
            if hlen > MAX_HEADER or 8 + hlen > size:
                raise ValueError(f"{self.path}: header length {hlen} exceeds the file or the {MAX_HEADER}-byte limit")
            raw = f.read(hlen)
        try:
            header = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise ValueError(f"{self.path}: header is not valid JSON ({str(e)[:80]})") from None
        if not isinstance(header, dict):
            raise ValueError(f"{self.path}: header is not a JSON object")
        meta = header.pop("__metadata__", None)
        self.metadata = meta if isinstance(meta, dict) else {}
        base = 8 + hlen
        self.spans: dict[str, TensorSpan] = {}
        used = []
        for name, e in header.items():
            if not isinstance(e, dict):
                raise ValueError(f"{self.path}: entry {name!r} is malformed")
            code, shape, offs = e.get("dtype"), e.get("shape"), e.get("data_offsets")
            if not isinstance(code, str) or not isinstance(shape, list) or not isinstance(offs, list) or len(offs) != 2:
                raise ValueError(f"{self.path}: entry {name!r} lacks dtype, shape or data_offsets")
            if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape + offs):
                raise ValueError(f"{self.path}: entry {name!r} has invalid shape or offsets")
            dt = _np_dtype(code)
            n = dt.itemsize
            for s in shape:
                n *= s
            a, b = offs
            if b - a != n or a > b or base + b > size:
                raise ValueError(f"{self.path}: tensor {name!r} claims bytes [{a}, {b}) that do not match its shape or the file")
            self.spans[name] = TensorSpan(str(self.path), base + a, n, code, tuple(shape))
            used.append((a, b, name))
        used.sort()
        for (a1, b1, n1), (a2, _, n2) in zip(used, used[1:]):
            if b1 > a2:
                raise ValueError(f"{self.path}: tensors {n1!r} and {n2!r} overlap")
        self.size = size
        self._map = np.memmap(self.path, mode="c", dtype=np.uint8) if size else np.zeros(0, np.uint8)

    def names(self) -> list[str]:
        """Tensor names in file order (by offset)."""
        return sorted(self.spans, key=lambda n: self.spans[n].offset)

    def array(self, name: str) -> np.ndarray:
        """The tensor as a numpy view into the mapping (no copy)."""
        s = self.spans[name]
        dt = _np_dtype(s.dtype)
        return self._map[s.offset : s.offset + s.nbytes].view(dt).reshape(s.shape)

    def dtype_name(self, name: str) -> str:
        return DTYPE_NAMES.get(self.spans[name].dtype, self.spans[name].dtype.lower())
