"""The one place where the chat package rebuilds a model from a .qnt file.

Every reply of ``quantonium chat`` and ``quantonium serve`` comes from a model
returned by :func:`load_model`, which goes through :func:`quantonium.load`:
the weights are decoded from the ``.qnt`` file and nothing else (no original
checkpoint, no hub download, no canned text). The loader builds the model in
memory and converts each tensor to the asked dtype as it is decoded.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

__all__ = ["DTYPE_NAMES", "dtype_itemsize", "load_model", "resolve_dtype", "set_torch_threads"]

#: Weight dtypes a model can be served in, by name, with their bytes per weight.
DTYPE_NAMES = {"float32": 4, "bfloat16": 2, "float16": 2}


def resolve_dtype(dtype: Any):
    """The torch dtype for a name ("float32", "bfloat16", "float16") or a torch dtype."""
    import torch

    if isinstance(dtype, torch.dtype):
        name = str(dtype).removeprefix("torch.")
        if name not in DTYPE_NAMES:
            raise ValueError(f"unsupported weight dtype {name}; expected one of {', '.join(DTYPE_NAMES)}")
        return dtype
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"unsupported weight dtype {dtype!r}; expected one of {', '.join(DTYPE_NAMES)}")
    return getattr(torch, dtype)


def dtype_itemsize(dtype: Any) -> int:
    """Bytes per weight of a dtype name or torch dtype."""
    return DTYPE_NAMES[str(resolve_dtype(dtype)).removeprefix("torch.")]


def set_torch_threads(n: int) -> None:
    """Sets torch's intra-op threads for this process (generation); imported late, only when a model loads."""
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def _load(path: str | Path, *, threads: int, dtype: Any):
    """``quantonium.load(path, threads=..., dtype=...)``."""
    import quantonium

    return quantonium.load(path, threads=threads, dtype=resolve_dtype(dtype))


def load_model(path: str | Path, *, threads: int = 1, dtype: Any = "float32"):
    """(model in eval mode, tokenizer or None, seconds) rebuilt from ``path`` alone.

    Transformers' progress bars are silenced while loading: the chat and the
    server print their own one-line report.
    """
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    t0 = time.perf_counter()
    try:
        model, tok = _load(path, threads=threads, dtype=dtype)
    finally:
        if was:
            hf_logging.enable_progress_bar()
    model.eval()
    return model, tok, time.perf_counter() - t0
