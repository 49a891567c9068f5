"""Building models in memory: from a ``.qnt`` file, and the original from its source.

One loader for everything that needs a live model (``quantonium.load``,
``eval``, calibration, chat and serving). The model is built with its
parameters on the meta device (no memory, ``arch.build_empty``), then every
parameter is put in place, tensor by tensor, with ``assign`` semantics: the
decoded (or memory-mapped) array *becomes* the parameter, nothing is copied
into a second buffer, and no temporary folder is written. Peak memory is
about one copy of the loaded model plus the tensors being decoded.

- ``load_qnt(path, dtype=..., threads=...)``: decodes the tensors of a
  ``.qnt`` (``threads`` at once) and converts each to ``dtype`` as it arrives.
- ``load_source(source, dtype=...)``: the uncompressed original. From
  safetensors the parameters are zero-copy views of the memory-mapped file
  (page cache, not anonymous memory) when no dtype conversion is asked; from
  ``pytorch_model.bin`` they come from ``torch.load(weights_only=True,
  mmap=True)``; GGUF files are dequantised by transformers.

Tied weights are re-tied by the model (``tie_weights``) or, for checkpoints
that stored a shared tensor under two names, assigned from the stored one.
A parameter that no stored tensor fills is a one-line error.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .arch import build_empty, classify
from .names import match_names

__all__ = ["DTYPES", "TOKENIZER_FILES", "LoadError", "load_qnt", "load_source", "resolve_dtype", "to_torch", "tokenizer_from_files"]

#: dtype names accepted by the loaders (``None`` keeps what the file stores)
DTYPES = ("float32", "bfloat16", "float16")

#: files of which at least one means a tokenizer can be built (``tokenizer_from_files``)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model")


class LoadError(ValueError):
    """A model that cannot be rebuilt (a parameter no tensor fills, an unknown architecture)."""


def resolve_dtype(dtype: Any):
    """A torch floating dtype from a name ("float32", "bfloat16", "float16") or a torch dtype; None stays None."""
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if str(dtype) not in table:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    return table[str(dtype)]


def to_torch(a: np.ndarray):
    """A numpy array as a torch tensor sharing its memory (bfloat16 through an int16 view)."""
    import torch

    if a.dtype.name == "bfloat16":
        return torch.from_numpy(np.ascontiguousarray(a).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(a))


def _set_param(model, name: str, t) -> None:
    import torch

    mod_name, _, leaf = name.rpartition(".")
    mod = model.get_submodule(mod_name) if mod_name else model
    old = mod._parameters.get(leaf)
    if old is not None and tuple(old.shape) != tuple(t.shape):
        if t.numel() == old.numel():
            t = t.reshape(old.shape)
        else:
            raise LoadError(f"tensor for {name!r} has shape {tuple(t.shape)}, the model expects {tuple(old.shape)}")
    mod._parameters[leaf] = torch.nn.Parameter(t, requires_grad=False)


def _finish(model, tied: dict[str, str], mapping: dict[str, str], filled: set[str], where: str) -> None:
    """Re-ties shared weights and checks that every parameter was filled."""
    if getattr(model.config, "tie_word_embeddings", False) and hasattr(model, "tie_weights"):
        model.tie_weights()
    params = dict(model.named_parameters(remove_duplicate=False))
    for alias, canon in tied.items():  # checkpoints that stored one tensor under two names
        a, c = mapping.get(alias) or alias, mapping.get(canon) or canon
        if a in params and params[a].is_meta and c in params and not params[c].is_meta:
            _set_param(model, a, params[c].data)
    missing = [n for n, p in model.named_parameters(remove_duplicate=False) if p.is_meta]
    if missing:
        raise LoadError(f"{where}: {len(missing)} parameters of {type(model).__name__} have no stored tensor, "
                        f"e.g. {missing[0]!r} (the file does not match its architecture)")


def _mapping(model, names: Iterable[str]) -> dict[str, str]:
    params = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    return match_names(params, names, getattr(model, "base_model_prefix", "") or "")


def tokenizer_from_files(files: dict[str, bytes]):
    """A tokenizer from embedded files (None when there is no tokenizer among them)."""
    if not any(n in files for n in TOKENIZER_FILES):
        return None
    import transformers

    from ..filenames import target_path

    with tempfile.TemporaryDirectory() as d:
        for name, data in files.items():
            p = target_path(d, name)
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(data)
        return transformers.AutoTokenizer.from_pretrained(d)


def load_qnt(path: str | Path, *, dtype: Any = None, threads: int = 1, progress=None):
    """(model in eval mode, tokenizer or None) rebuilt from a ``.qnt`` file, in memory.

    ``progress`` (a :class:`~quantonium.compress.progress.Progress`): a ``decode`` bar over the bytes of
    the decoded tensors.
    """
    from ..codecs.base import itemsize
    from ..compress.progress import Progress
    from ..container import QntFile

    progress = progress if progress is not None else Progress(False)

    tdtype = resolve_dtype(dtype)
    with QntFile(path) as f:
        if "config.json" not in f.file_names:
            raise LoadError(f"{path}: the file embeds no config.json, so no model can be built from it")
        config = f.config()  # a JSON object, nesting bounded (QntFormatError naming the file otherwise)
        f.require_memory(f.decoded_bytes(), "building the model")  # the model holds every tensor (issue 11)
        model = _build(config, path)
        names = list(f)
        mapping = _mapping(model, names)
        unknown = [n for n in names if n not in mapping]
        if unknown:
            raise LoadError(f"{path}: {len(unknown)} stored tensors match no parameter of {type(model).__name__}, "
                            f"e.g. {unknown[0]!r}")

        def decode(name: str):
            t = to_torch(f.read(name))
            if tdtype is not None and t.is_floating_point() and t.dtype != tdtype:
                t = t.to(tdtype)
            return name, t

        filled: set[str] = set()
        with ThreadPoolExecutor(max(1, threads)) as pool, progress.stage("decode", f.decoded_bytes()) as update:
            for name, t in pool.map(decode, names):  # in order; a decoded tensor goes into the model at once
                _set_param(model, mapping[name], t)
                filled.add(mapping[name])
                update(f.info(name)["numel"] * itemsize(f.info(name)["dtype"]))
                update.note(name)
        tied = f.model.get("tied") if isinstance(f.model.get("tied"), dict) else {}
        _finish(model, tied, mapping, filled, str(path))
        tok = tokenizer_from_files({n: f.file(n) for n in f.file_names})
    if tdtype is not None:
        model.config.dtype = tdtype
    return model.eval(), tok


def _build(config: dict[str, Any], where: Any):
    try:
        return build_empty(config)
    except Exception as e:  # transformers raises many types for configs it cannot build
        raise LoadError(f"{where}: transformers cannot build this architecture ({type(e).__name__}: {str(e)[:120]})") from None


def load_source(source: str | Path, *, dtype: Any = None):
    """(model in eval mode, tokenizer or None): the uncompressed original, from any source the pipeline reads."""
    import torch

    from .sources import open_source

    p = Path(source)
    tdtype = resolve_dtype(dtype)
    if p.suffix == ".gguf" and p.is_file():
        from .gguf_model import load_gguf

        try:
            return load_gguf(p, tdtype)
        except Exception as e:
            raise LoadError(f"{p}: transformers could not load this GGUF file ({str(e)[:120]})") from None
    src = open_source(source)
    if not src.config:
        raise LoadError(f"{source}: no config.json beside the weights, so the model cannot be built")
    model = _build(src.config, source)
    roles = classify(src.names, src.config, src.shared)
    names = [n for n in src.names if n not in roles.buffers]
    mapping = _mapping(model, names)
    filled: set[str] = set()
    for n in names:
        if n not in mapping or n in roles.tied:
            continue  # a head this class does not have, or a tied copy
        t = to_torch(src.read(n))
        if tdtype is not None and t.is_floating_point() and t.dtype != tdtype:
            t = t.to(tdtype)
        _set_param(model, mapping[n], t)
        filled.add(mapping[n])
    _finish(model, roles.tied, mapping, filled, str(source))
    tok = tokenizer_from_files(src.files) if src.files else None
    if tdtype is not None:
        model.config.dtype = tdtype
    return model.eval(), tok


