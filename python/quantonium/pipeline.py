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
from .container import QntFile, QntFormatError
from .filenames import module_dir_path, module_dirs, target_path
from .outputs import AtomicFolder, write_plain

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
    empty folder, filled under a temporary name and renamed when complete).
    ``model.safetensors`` is streamed (:mod:`quantonium.safetensors_stream`):
    its header comes from the checked index, then each tensor is written as
    soon as it is decoded (``threads`` decoding at once) while the disk writes
    the previous ones, so memory is the tensors in flight and the write
    buffers, never the model; both count against the file's memory limit
    (:meth:`QntFile.read_iter`). The file is the one
    ``safetensors.torch.save_file`` writes for the same tensors (same order,
    same header; the untied copies of an untied model as tensors of their
    own, decoded again where they fall in the file).
    Every embedded file comes back byte for byte, sentence-transformers module
    files in their folders (``1_Pooling/config.json``), and the module folders
    that ``modules.json`` lists are made even when they hold no file
    (``2_Normalize``), so that the folder also loads with sentence-transformers.
    ``progress``: a byte bar on stderr (``decode+write``, bytes of model.safetensors).
    """
    from contextlib import closing

    from .compress.progress import Progress
    from .safetensors_stream import SafetensorsWriter, layout

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
        source = {n: n for n in f}  # tensor in the safetensors file -> stored tensor that holds it
        if not tie:  # an untied model needs its copies written out
            source.update(f.model.get("tied") or {})
        try:  # names, dtypes and shapes from the checked index; a tied alias named "__metadata__" cannot be written
            lay = layout(((n, f.info(s)["dtype"], tuple(f.info(s)["shape"])) for n, s in source.items()),
                         metadata={"format": "pt", "quantonium": __version__})
        except ValueError as e:
            raise QntFormatError(f"{f.path}: cannot be written as safetensors ({e})") from None
        dest = out.path / "model.safetensors"
        with SafetensorsWriter(dest, lay, shown_as=out.shown(dest)) as w, prog.stage("decode+write", lay.size) as update:
            update(len(lay.head))
            decoded = f.read_iter([source[s.name] for s in lay.slots], threads=threads, reserve=w.staging_bytes(lay))
            with closing(decoded):
                for slot, (_, array) in zip(lay.slots, decoded):
                    w.add(slot.name, array)
                    del array
                    update(slot.nbytes)
                    update.note(slot.name)
    return Path(outdir)


def load(path: str | Path, *, threads: int = 1, dtype=None, progress: bool = False):
    """A ready transformers model (eval mode) and its tokenizer (None if the file has none), built in memory.

    ``progress``: a byte bar on stderr while the tensors are decoded (``decode``).
    """
    from .compress.progress import Progress
    from .models.loader import load_qnt

    return load_qnt(path, dtype=dtype, threads=threads, progress=Progress(progress))
