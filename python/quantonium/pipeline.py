"""Compress a model into a .qnt file and get it back: the user-facing entry points.

``compress`` lives in :mod:`quantonium.compress` (plan -> executor -> sink);
``decompress`` writes an HF folder; ``load`` builds the model in memory
(:mod:`quantonium.models.loader`); ``state_dict`` decodes every tensor.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import __version__
from .compress import CompressResult, compress
from .container import QntFile
from .filenames import target_path

__all__ = ["CompressResult", "compress", "decompress", "load", "state_dict"]


def state_dict(f: QntFile, *, threads: int = 1) -> dict[str, np.ndarray]:
    """Every stored tensor decoded, plus the tied aliases (as the same array)."""
    out = {name: f.read(name, nthreads=threads) for name in f}
    for alias, canon in (f.model.get("tied") or {}).items():
        if canon in out:
            out[alias] = out[canon]
    return out


def decompress(path: str | Path, outdir: str | Path, *, threads: int = 1) -> Path:
    """Writes an HF folder (config, tokenizer files, model.safetensors) that transformers loads unchanged."""
    import shutil
    import tempfile

    import torch
    from safetensors.torch import save_file

    outdir = Path(outdir)
    if outdir.exists() and (not outdir.is_dir() or any(outdir.iterdir())):
        raise FileExistsError(f"{outdir}: exists and is not an empty folder; choose a new output folder")
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    try:
        with QntFile(path) as f:
            for name in f.file_names:  # names checked against the allow-list by QntFile
                dest = target_path(tmp, name)
                dest.parent.mkdir(exist_ok=True)
                dest.write_bytes(f.file(name))
            tensors = {}
            tie = bool(json.loads(f.file("config.json")).get("tie_word_embeddings", True)) if "config.json" in f.file_names else False
            for name in f:
                a = f.read(name, nthreads=threads)
                tensors[name] = (torch.from_numpy(a.view(np.int16)).view(torch.bfloat16) if a.dtype.name == "bfloat16" else torch.from_numpy(np.ascontiguousarray(a)))
            if not tie:  # an untied model needs its copies written out
                for alias, canon in (f.model.get("tied") or {}).items():
                    tensors[alias] = tensors[canon].clone()
            save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt", "quantonium": __version__})
        if outdir.exists():
            outdir.rmdir()  # empty, checked above
        tmp.rename(outdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return outdir


def load(path: str | Path, *, threads: int = 1, dtype=None):
    """A ready transformers model (eval mode) and its tokenizer (None if the file has none), built in memory."""
    from .models.loader import load_qnt

    return load_qnt(path, dtype=dtype, threads=threads)
