"""Quantonium: compress model weights with the Resonance Fourier Transform, and measure it.

Modules: :mod:`quantonium.reference` and :mod:`quantonium.quant_reference`
(numpy oracles), :mod:`quantonium.codecs`, :mod:`quantonium.container` (.qnt),
:mod:`quantonium.models` (model sources), :mod:`quantonium.pipeline`
(compress / decompress / load) and :mod:`quantonium.cli`; the native kernels
live in :mod:`quantonium_native`. ``quantonium.open(path)`` gives the
container, ``quantonium.load(path)`` a ready transformers model and tokenizer.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("quantonium")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

def open(path, *, max_memory=None, max_index_bytes=None):  # noqa: A001 - the documented name
    """The .qnt container with per-tensor access (:class:`quantonium.container.QntFile`).

    ``max_memory`` / ``max_index_bytes`` (bytes or sizes such as ``"8G"``) bound what reading
    it may use; defaults in :mod:`quantonium.limits`.
    """
    from .container import QntFile

    return QntFile(path, max_memory=max_memory, max_index_bytes=max_index_bytes)


def load(path, *, dtype=None, threads: int = 1):
    """A ready transformers model (eval mode) and its tokenizer, rebuilt in memory from a .qnt file.

    ``dtype``: "float32", "bfloat16", "float16" or a torch dtype; None keeps the stored dtypes.
    ``threads``: tensors decoded at once.
    """
    from .models.loader import load_qnt

    return load_qnt(path, dtype=dtype, threads=threads)


__all__ = ["__version__", "load", "open"]
