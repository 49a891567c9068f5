"""A transformers model and tokenizer from a GGUF file, with the file parsed once.

transformers reads a GGUF file through gguf-py's ``GGUFReader`` once for the
tokenizer, once for the config and once for the weights, and builds gguf-py's
``TensorNameMap`` once per module of the model (397 times for SmolLM2-135M).
Parsing the metadata of a 49,152-token vocabulary costs about 4.6 s per
reader and the name maps 7.5 s in all (cProfile, SmolLM2-135M-Instruct
Q4_1: 33.7 s to load under the profiler). ``load_gguf`` lets those calls share
one reader per file (keyed by path, size and modification time) and one name
map per (architecture, layers), both of which transformers only reads, by
replacing ``gguf.GGUFReader`` and ``gguf.get_tensor_name_map`` (which
transformers imports from ``gguf`` at each call) for the duration of the load.
The results are the same objects transformers would have built; nothing is
read differently.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from pathlib import Path
from typing import Any

__all__ = ["gguf_licence", "load_gguf", "shared_gguf_parses"]

_lock = threading.RLock()
_depth = 0
_saved: list = []  # gguf's own GGUFReader and get_tensor_name_map while replaced


@contextlib.contextmanager
def shared_gguf_parses():
    """Within the block, GGUF files are parsed once and name maps built once (module docstring)."""
    global _depth
    import gguf

    with _lock:
        _depth += 1
        if _depth == 1:
            original_reader, original_map = gguf.GGUFReader, gguf.get_tensor_name_map
            readers: dict[tuple, Any] = {}

            def reader(path, mode="r"):
                st = os.stat(path)
                key = (os.path.realpath(path), mode, st.st_size, st.st_mtime_ns)
                if key not in readers:
                    readers[key] = original_reader(path, mode)
                return readers[key]

            gguf.GGUFReader = reader
            gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original_map)
            _saved[:] = [original_reader, original_map]
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gguf.GGUFReader, gguf.get_tensor_name_map = _saved
                _saved.clear()


def load_gguf(path: str | Path, dtype: Any = None):
    """(model in eval mode, tokenizer) from a GGUF file; transformers dequantises the weights (float32 unless ``dtype``).

    Errors are transformers' (the callers turn them into one line).
    """
    import torch
    import transformers

    p = Path(path)
    with shared_gguf_parses():
        tok = transformers.AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name,
                                                                  dtype=dtype or torch.float32)
        return model.eval(), tok


def gguf_licence(path: str | Path) -> str:
    """The file's ``general.license`` field, or "unknown" (the licence is optional metadata)."""
    try:
        with shared_gguf_parses():
            import gguf

            field = gguf.GGUFReader(str(path)).fields.get("general.license")
        if field is not None:
            return bytes(field.parts[field.data[0]]).decode(errors="replace")
    except Exception:
        pass
    return "unknown"
