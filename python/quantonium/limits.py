"""What a reader of files from strangers allows itself: memory, index size, JSON nesting.

A ``.qnt`` file states the shapes of its tensors and the sizes of its
streams; those are claims, and a well-formed file of a few hundred bytes can
claim a tensor of any size (a constant tensor costs a few bytes whatever its
size). The reader therefore never lets a claim decide how much it allocates:

**Memory limit.** Every decode computes, before allocating anything, the
working memory it will need (the output and every temporary: symbol arrays,
float32 copies, byte planes, complex spectra), and refuses when that exceeds
the limit. Operations that hold a whole model (``load``, ``state_dict``)
refuse when the model's tensors add up to more than the limit;
``decompress`` streams, and counts the tensors in flight and its write
buffers (``QntFile.read_iter``). The limit is, in order of precedence:

1. the ``max_memory`` argument of :class:`quantonium.container.QntFile` /
   :func:`quantonium.open` (bytes, or a size such as ``"8G"``);
2. the environment variable ``QUANTONIUM_MAX_MEMORY`` (the CLI's
   ``--max-memory SIZE`` sets it for the command and its children);
3. by default, :data:`MEMORY_FRACTION` (half) of the machine's memory: the
   smaller of the physical memory (``os.sysconf``) and the cgroup's memory
   limit, when the process runs in a container.

**Index limit.** Opening a file costs about seven times its index in memory
and about 55 ms per MiB of index on an idle core (several times more on a
loaded machine; measured: ``bench/hostile_memory.py``). The index
may be at most ``max_index_bytes`` (argument, ``QUANTONIUM_MAX_INDEX``, CLI
``--max-index``; default :data:`DEFAULT_MAX_INDEX_BYTES`, 64 MiB: about
55,000 tensors with ``auto``'s full report each) and at most
``max_memory // INDEX_MEMORY_FACTOR``, never above the format's hard limit
:data:`HARD_MAX_INDEX_BYTES` (256 MiB).

**JSON nesting.** JSON read from a file (index, payload headers, embedded
configuration) may nest at most :data:`MAX_JSON_DEPTH` levels; deeper input
is refused before it is parsed, so no reader ever meets a ``RecursionError``.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_MAX_INDEX_BYTES",
    "ENV_MAX_INDEX",
    "ENV_MAX_MEMORY",
    "HARD_MAX_INDEX_BYTES",
    "INDEX_MEMORY_FACTOR",
    "MAX_JSON_DEPTH",
    "MEMORY_FRACTION",
    "JsonError",
    "LimitError",
    "format_size",
    "json_depth",
    "load_json",
    "machine_memory",
    "max_index_bytes",
    "max_memory",
    "parse_size",
]

ENV_MAX_MEMORY = "QUANTONIUM_MAX_MEMORY"
ENV_MAX_INDEX = "QUANTONIUM_MAX_INDEX"
#: Share of the machine's memory a reader may use by default.
MEMORY_FRACTION = 0.5
#: The format's own limit on the index (a reader never accepts more).
HARD_MAX_INDEX_BYTES = 256 << 20
DEFAULT_MAX_INDEX_BYTES = 64 << 20
#: Peak memory of opening a file, per byte of its index (measured about 7: bench/hostile_memory.py).
INDEX_MEMORY_FACTOR = 8
MAX_JSON_DEPTH = 32

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
          "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40}
_SIZE_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*")


class LimitError(ValueError):
    """An operation would need more than a limit allows (memory, index size)."""


class JsonError(ValueError):
    """JSON from a file that is invalid or nests too deeply."""


def parse_size(text: str | int) -> int:
    """Bytes from ``1234``, ``"512M"``, ``"8G"``, ``"1.5GiB"`` (binary units); ValueError otherwise."""
    if isinstance(text, bool):
        raise ValueError(f"not a size: {text!r}")
    if isinstance(text, int):
        if text <= 0:
            raise ValueError(f"a size must be positive, not {text}")
        return text
    m = _SIZE_RE.fullmatch(str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (expected bytes or a number with K, M, G or T, e.g. 8G)")
    n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n <= 0:
        raise ValueError(f"a size must be positive, not {text!r}")
    return n


def format_size(n: int) -> str:
    """``n`` bytes for people: ``1.50 GiB``."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} bytes"


def _cgroup_limit() -> int | None:
    for p in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(p).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < (1 << 60):  # "max" or a huge number: no limit
            return int(text)
    return None


@functools.lru_cache(maxsize=1)
def machine_memory() -> int:
    """The memory this process may use: physical memory, or the cgroup's limit when smaller."""
    try:
        phys = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        phys = 8 << 30
    cg = _cgroup_limit()
    return min(phys, cg) if cg else phys


def _from_env(name: str) -> int | None:
    v = os.environ.get(name)
    if v is None or not v.strip():
        return None
    try:
        return parse_size(v)
    except ValueError as e:
        raise LimitError(f"{name}={v!r}: {e}") from None


def max_memory(value: int | str | None = None) -> int:
    """The memory limit in bytes: ``value`` if given, else the environment's, else half the machine's."""
    if value is not None:
        return parse_size(value)
    env = _from_env(ENV_MAX_MEMORY)
    return env if env is not None else int(machine_memory() * MEMORY_FRACTION)


def max_index_bytes(value: int | str | None = None, memory: int | None = None) -> int:
    """The index size limit: ``value`` / the environment's / the default, bounded by memory and the format."""
    if value is not None:
        limit = parse_size(value)
    else:
        env = _from_env(ENV_MAX_INDEX)
        limit = env if env is not None else DEFAULT_MAX_INDEX_BYTES
    return min(limit, max_memory(memory) // INDEX_MEMORY_FACTOR, HARD_MAX_INDEX_BYTES)


# --- JSON from files ----------------------------------------------------------------
_KEEP = b'"[]{}'
_NOT_KEPT = bytes(b for b in range(256) if b not in _KEEP)


def json_depth(raw: bytes) -> int:
    """How deeply the arrays and objects of a JSON text nest, brackets inside strings skipped.

    Cheap and without parsing (C-speed byte operations and numpy): escaped
    backslashes, then escaped quotes, are removed (in JSON every backslash
    escapes the next character, so pairs from the left of a run are exactly
    the escaped backslashes); every quote left delimits a string; the brackets
    outside strings give the depth. Invalid JSON gives some number; the parser
    refuses it afterwards.
    """
    marks = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_KEPT)
    if not marks:
        return 0
    a = np.frombuffer(marks, np.uint8)
    quote = a == ord('"')
    outside = np.bitwise_xor.accumulate(quote.view(np.uint8)) == 0  # after an even number of quotes
    b = a[outside & ~quote]
    if not b.size:
        return 0
    step = np.where((b == ord("[")) | (b == ord("{")), 1, -1).astype(np.int32)
    return int(np.cumsum(step).max())


def load_json(raw: bytes | memoryview, what: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parses JSON read from a file; raises :class:`JsonError` (one line) when invalid or nested too deeply."""
    raw = bytes(raw)
    depth = json_depth(raw)
    if depth > max_depth:
        raise JsonError(f"{what} nests {depth} levels deep, more than the {max_depth} allowed")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise JsonError(f"{what} is not valid JSON ({e})") from None
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise JsonError(f"{what} nests too deeply") from None
