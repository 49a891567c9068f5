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
wht_forward, wht_inverse
    Orthonormal Walsh-Hadamard transform of real rows, any length m * 2**k
    with a Hadamard matrix of order m built here (Sylvester, Paley).
hadamard_factor, hadamard_matrix
    The factorisation n = m * 2**k used, and the matrix of order m.
quantize_uniform, dequantize_uniform
    Uniform scalar quantisation, one step per group, optional dead zone.
quantize_fixed, dequantize_fixed
    Fixed-rate RTN integers (2-8 bits) with fp16 scales (and minimums) per group.
pack_bits, unpack_bits
    LSB-first bit packing.
rans_encode, rans_decode, rans_stream_info
    Order-0 rANS entropy coding of int8 / int16 / uint8 symbol streams
    (format 2: interleaved, chunked, threaded; format-1 streams still decode).
rans_stream_size
    Exact table size and estimated payload of a stream with given symbol counts.
byte_planes, or_byte_plane, join_byte_planes
    Float bit patterns split into exponent and sign+mantissa byte planes, and
    joined back plane by plane (the lossless codec's split, exact).
energy_sums
    Signal and error energy of a tensor against its reconstruction (float64
    sums, thread-count independent): the SNR of large tensors without copies.
quantize_histograms
    Symbol counts and squared errors of uniform quantisation at many steps
    (rate-distortion curves without coding).
build_info
    FFTW version, SIMD paths compiled and selected, compiler.
set_planner_effort, clear_caches
    FFTW planning control.
CANONICAL_MAX_N, MAX_THREADS
    The longest canonical RFT and the largest ``nthreads`` accepted.
"""

from ._core import (
    CANONICAL_MAX_N,
    HADAMARD_MAX_M,
    MAX_THREADS,
    __version__,
    build_info,
    byte_planes,
    canonical_basis,
    canonical_rft_forward,
    canonical_rft_inverse,
    canonical_unitarity_error,
    clear_caches,
    dequantize_fixed,
    dequantize_uniform,
    energy_sums,
    hadamard_factor,
    hadamard_matrix,
    join_byte_planes,
    or_byte_plane,
    pack_bits,
    quantize_fixed,
    quantize_histograms,
    quantize_uniform,
    rans_decode,
    rans_encode,
    rans_stream_info,
    rans_stream_size,
    rft_forward,
    rft_inverse,
    rft_real_forward,
    rft_real_inverse,
    set_planner_effort,
    unpack_bits,
    wht_forward,
    wht_inverse,
)

__all__ = [
    "CANONICAL_MAX_N",
    "HADAMARD_MAX_M",
    "MAX_THREADS",
    "__version__",
    "build_info",
    "byte_planes",
    "canonical_basis",
    "canonical_rft_forward",
    "canonical_rft_inverse",
    "canonical_unitarity_error",
    "clear_caches",
    "dequantize_fixed",
    "dequantize_uniform",
    "energy_sums",
    "hadamard_factor",
    "hadamard_matrix",
    "join_byte_planes",
    "or_byte_plane",
    "pack_bits",
    "quantize_fixed",
    "quantize_histograms",
    "quantize_uniform",
    "rans_decode",
    "rans_encode",
    "rans_stream_info",
    "rans_stream_size",
    "rft_forward",
    "rft_inverse",
    "rft_real_forward",
    "rft_real_inverse",
    "set_planner_effort",
    "unpack_bits",
    "wht_forward",
    "wht_inverse",
]
