"""Native RFT kernels of Quantonium (C++, FFTW, SIMD).

The transforms are defined in ``shared/docs/RFT.md`` and mirrored, for
clarity, in :mod:`quantonium.reference` (numpy only), which the tests use as
their oracle.

Functions
---------
rft_forward, rft_inverse
    Fast Phi-RFT (unitary, O(n log n); same magnitudes as the unitary DFT).
rft_real_forward, rft_real_inverse
    Real-orthogonal Phi-RFT of real rows (pair packing, interleaved output).
canonical_rft_forward, canonical_rft_inverse
    Canonical (Gram-normalised golden-ratio) RFT, dense, n <= CANONICAL_MAX_N.
canonical_basis, canonical_unitarity_error
    The cached canonical basis and its measured unitarity error.
build_info
    FFTW version, SIMD paths compiled and selected, compiler.
set_planner_effort, clear_caches
    FFTW planning control.
"""

from ._core import (
    CANONICAL_MAX_N,
    __version__,
    build_info,
    canonical_basis,
    canonical_rft_forward,
    canonical_rft_inverse,
    canonical_unitarity_error,
    clear_caches,
    rft_forward,
    rft_inverse,
    rft_real_forward,
    rft_real_inverse,
    set_planner_effort,
)

__all__ = [
    "CANONICAL_MAX_N",
    "__version__",
    "build_info",
    "canonical_basis",
    "canonical_rft_forward",
    "canonical_rft_inverse",
    "canonical_unitarity_error",
    "clear_caches",
    "rft_forward",
    "rft_inverse",
    "rft_real_forward",
    "rft_real_inverse",
    "set_planner_effort",
]
