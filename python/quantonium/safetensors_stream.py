"""Writing a safetensors file tensor by tensor: the layout from names, dtypes and shapes, then the bytes.

The safetensors format (https://huggingface.co/docs/safetensors, "Format"):

- 8 bytes: ``N``, the header's length, an unsigned little-endian 64-bit integer;
- ``N`` bytes: a UTF-8 JSON object, padded with spaces (0x20) to a multiple of 8: an optional
  ``"__metadata__"`` (an object of strings), and per tensor
  ``{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}``, offsets relative to the
  byte after the header;
- the data: each tensor's bytes, little-endian, C order, at its offsets, in header order, with no
  gap and no overlap.

Everything in the header is known before any tensor is decoded (names, dtypes and shapes come
from the checked ``.qnt`` index), so :func:`layout` computes it first, and :class:`SafetensorsWriter`
then writes each tensor as soon as it arrives, through :class:`quantonium.outputs.StreamFile`:
memory is the tensors in flight, never the model.

The layout is the library's own (safetensors 0.8, ``prepare`` in ``tensor.rs``): tensors sorted by
descending dtype (its ``Dtype`` enum order: ``F32`` before ``BF16`` before ``F16``), then by name
(Rust compares the UTF-8 bytes; Python's ``str`` order is the same, code point by code point);
the header is ``serde_json``'s compact output, ``__metadata__`` first, then the tensors in data
order; strings are escaped alike by ``json.dumps(ensure_ascii=False)``. The file is therefore
byte-identical to what ``safetensors.torch.save_file`` writes for the same tensors and metadata,
with one exception the library makes itself: it serialises ``__metadata__`` from a Rust
``HashMap``, whose order changes from process to process (two keys come out in either order);
here the metadata keeps the order it is given. With at most one metadata key the bytes are the
same (``tests/test_safetensors_stream.py``).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .outputs import StreamFile

__all__ = ["DTYPE_TAGS", "MAX_HEADER", "Layout", "SafetensorsWriter", "Slot", "layout"]

#: Our dtype names -> safetensors dtype tags.
DTYPE_TAGS = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}
#: Rank of each tag in safetensors' ``Dtype`` enum (only the order matters; data goes highest first).
_RANK = {"F16": 0, "BF16": 1, "F32": 2}
_ITEMSIZE = {"F32": 4, "BF16": 2, "F16": 2}
#: The largest header safetensors readers accept (``MAX_HEADER_SIZE`` of the library: 100 MB).
MAX_HEADER = 100_000_000


@dataclass(frozen=True)
class Slot:
    """One tensor's place in the file: ``begin`` / ``end`` are absolute file offsets of its bytes."""

    name: str
    dtype: str  # ours: float32, bfloat16, float16
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True)
class Layout:
    """A whole safetensors file but its data: ``head`` (length prefix + padded JSON), the slots in data
    order, and the file's ``size`` in bytes."""

    head: bytes
    slots: tuple[Slot, ...]
    size: int


def layout(tensors: Iterable[tuple[str, str, tuple[int, ...]]], metadata: dict[str, str] | None = None) -> Layout:
    """The layout of a safetensors file of ``tensors`` ((name, dtype, shape) each; dtype one of
    :data:`DTYPE_TAGS`) and ``metadata``, in the library's order (module docstring)."""
    entries = []
    for name, dtype, shape in tensors:
        if dtype not in DTYPE_TAGS:
            raise ValueError(f"tensor {name!r}: dtype {dtype!r} has no safetensors tag here (one of {', '.join(DTYPE_TAGS)})")
        if name == "__metadata__":
            raise ValueError("a tensor cannot be named '__metadata__' in a safetensors file")
        entries.append((name, DTYPE_TAGS[dtype], dtype, tuple(int(s) for s in shape)))
    names = [e[0] for e in entries]
    if len(set(names)) != len(names):
        raise ValueError("a tensor name appears twice")
    entries.sort(key=lambda e: (-_RANK[e[1]], e[0]))
    header: dict[str, Any] = {}
    if metadata is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError("safetensors metadata maps strings to strings")
        header["__metadata__"] = dict(metadata)
    rel = []
    offset = 0
    for name, tag, _, shape in entries:
        n = _ITEMSIZE[tag]
        for s in shape:
            n *= s
        header[name] = {"dtype": tag, "shape": list(shape), "data_offsets": [offset, offset + n]}
        rel.append((offset, offset + n))
        offset += n
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    if len(text) > MAX_HEADER:
        raise ValueError(f"the safetensors header would take {len(text)} bytes, more than readers accept ({MAX_HEADER})")
    head = struct.pack("<Q", len(text)) + text
    base = len(head)
    slots = tuple(Slot(name, dtype, shape, base + a, base + b) for (name, _, dtype, shape), (a, b) in zip(entries, rel))
    return Layout(head, slots, base + offset)


class SafetensorsWriter:
    """Writes a :class:`Layout` into a new file inside an :class:`~quantonium.outputs.AtomicFolder` being
    filled: the header at once, then each tensor given to :meth:`add`, in the layout's order.

    :meth:`add` checks the array against its slot (name, dtype, shape, byte count) and copies it into
    the stream (:class:`~quantonium.outputs.StreamFile`: the caller may free it on return);
    :meth:`close` checks that every slot was written and fsyncs. Errors of the disk are one
    :class:`~quantonium.outputs.OutputError` naming the file (``shown_as``).
    """

    def __init__(self, path: str | os.PathLike, lay: Layout, *, shown_as: str | os.PathLike | None = None,
                 direct: bool | None = None) -> None:
        self.layout = lay
        self._next = 0
        self.file = StreamFile(path, lay.size, shown_as=shown_as, direct=direct)
        try:
            self.file.write(lay.head)
        except BaseException:
            self.file.abort()
            raise

    @staticmethod
    def staging_bytes(lay: Layout) -> int:
        """The memory the writer itself holds (its staging buffers)."""
        return StreamFile.staging_bytes(lay.size)

    @property
    def pending(self) -> list[Slot]:
        """The slots not written yet, in order."""
        return list(self.layout.slots[self._next :])

    def add(self, name: str, array: np.ndarray) -> None:
        """Writes the next tensor; ``name`` must be the next slot's, and ``array`` its dtype and shape."""
        if self._next >= len(self.layout.slots):
            raise ValueError(f"{self.file.shown}: tensor {name!r} is one more than the layout holds")
        slot = self.layout.slots[self._next]
        if name != slot.name:
            raise ValueError(f"{self.file.shown}: tensor {name!r} given where {slot.name!r} comes next")
        if array.dtype.name != slot.dtype or tuple(array.shape) != slot.shape or array.nbytes != slot.nbytes:
            raise ValueError(f"{self.file.shown}: tensor {name!r} is {array.dtype.name} {tuple(array.shape)}, "
                             f"the layout says {slot.dtype} {slot.shape}")
        if array.dtype.byteorder == ">":  # safetensors is little-endian  # pragma: no cover - big-endian hosts
            array = array.astype(array.dtype.newbyteorder("<"))
        self.file.write(array)
        self._next += 1

    def close(self) -> Path:
        if self._next != len(self.layout.slots):
            self.file.abort()
            raise ValueError(f"{self.file.shown}: {len(self.layout.slots) - self._next} tensors were not written")
        return self.file.close()

    def abort(self) -> None:
        self.file.abort()

    def __enter__(self) -> SafetensorsWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
