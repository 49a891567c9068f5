"""Compress a model into a .qnt file and get it back: the user-facing entry points.

``compress`` lives in :mod:`quantonium.compress` (plan -> executor -> sink);
``decompress`` writes an HF folder; ``load`` builds the model in memory
(:mod:`quantonium.models.loader`); ``state_dict`` decodes every tensor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import __version__
from .compress import CompressResult, compress
from .container import QntFile
from .filenames import target_path
from .outputs import AtomicFolder, save_safetensors, write_plain

__all__ = ["CompressResult", "compress", "decompress", "load", "state_dict"]


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


def load(path: str | Path, *, threads: int = 1, dtype=None):
    """A ready transformers model (eval mode) and its tokenizer (None if the file has none), built in memory."""
    from .models.loader import load_qnt

    return load_qnt(path, dtype=dtype, threads=threads)
