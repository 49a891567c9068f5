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
from .filenames import module_dir_path, module_dirs, target_path
from .outputs import AtomicFolder, save_safetensors, write_plain

__all__ = ["CompressResult", "compress", "decompress", "load", "state_dict"]


def state_dict(f: QntFile, *, threads: int = 1) -> dict[str, np.ndarray]:
    """Every stored tensor decoded (within the file's memory limit), plus the tied aliases (as the same array)."""
    out = f.read_all(nthreads=threads)
    for alias, canon in (f.model.get("tied") or {}).items():
        if canon in out:
            out[alias] = out[canon]
    return out


def decompress(path: str | Path, outdir: str | Path, *, threads: int = 1, progress: bool = False) -> Path:
    """Writes an HF folder (config, tokenizer files, model.safetensors) that transformers loads unchanged.

    The folder is written by the rules of :mod:`quantonium.outputs` (a new or
    empty folder, filled under a temporary name and renamed when complete);
    the tensors and their untied copies must fit in the file's memory limit
    (safetensors >= 0.8 writes from the tensors' memory, without a copy).
    Every embedded file comes back byte for byte, sentence-transformers module
    files in their folders (``1_Pooling/config.json``), and the module folders
    that ``modules.json`` lists are made even when they hold no file
    (``2_Normalize``), so that the folder also loads with sentence-transformers.
    ``progress``: byte bars on stderr (``decode``, then ``write``).
    """
    import torch

    from .compress.progress import Progress

    prog = Progress(progress)
    with QntFile(path) as f, AtomicFolder(outdir, inputs=[path]) as out:
        for name in f.file_names:  # names checked against the allow-list by QntFile
            dest = target_path(out.path, name)
            dest.parent.mkdir(exist_ok=True)
            write_plain(dest, f.file(name), shown_as=out.shown(dest))
        if "modules.json" in f.file_names:  # module folders without files (the names are checked: filenames.py)
            for d in module_dirs(f.file("modules.json")):
                module_dir_path(out.path, d).mkdir(exist_ok=True)
        tie = bool(f.config().get("tie_word_embeddings", True)) if "config.json" in f.file_names else False
        copies = {} if tie else dict(f.model.get("tied") or {})  # an untied model needs its copies written out
        with prog.stage("decode", f.decoded_bytes()) as update:
            arrays = f.read_all(nthreads=threads, reserve=f.decoded_bytes(list(copies.values())), progress=update)
        tensors = {n: (torch.from_numpy(a.view(np.int16)).view(torch.bfloat16) if a.dtype.name == "bfloat16" else torch.from_numpy(a))
                   for n, a in arrays.items()}
        for alias, canon in copies.items():
            tensors[alias] = tensors[canon].clone()
        nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
        with prog.stage("write", nbytes) as update:  # one call into safetensors: the bar completes when it returns
            update.note("model.safetensors")
            save_safetensors(tensors, out.path / "model.safetensors", metadata={"format": "pt", "quantonium": __version__},
                             shown_as=out.shown(out.path / "model.safetensors"))
            update(nbytes)
    return Path(outdir)


def load(path: str | Path, *, threads: int = 1, dtype=None, progress: bool = False):
    """A ready transformers model (eval mode) and its tokenizer (None if the file has none), built in memory.

    ``progress``: a byte bar on stderr while the tensors are decoded (``decode``).
    """
    from .compress.progress import Progress
    from .models.loader import load_qnt

    return load_qnt(path, dtype=dtype, threads=threads, progress=Progress(progress))
