"""Quantonium: compress model weights with the Resonance Fourier Transform, and measure it.

For now the package holds the numpy reference of the transforms
(:mod:`quantonium.reference`) and the command line (:mod:`quantonium.cli`);
the native kernels live in :mod:`quantonium_native`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("quantonium")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
