"""Type stubs of the compiled module quantonium_native._core."""

from collections.abc import Sequence
from typing import Literal, TypedDict, overload

import numpy as np
import numpy.typing as npt

__version__: str
CANONICAL_MAX_N: int
HADAMARD_MAX_M: int
MAX_THREADS: int  # the largest nthreads accepted (1024)

_F32 = npt.NDArray[np.float32]
_F64 = npt.NDArray[np.float64]
_C64 = npt.NDArray[np.complex64]
_C128 = npt.NDArray[np.complex128]

class BuildInfo(TypedDict):
    version: str
    fftw_version: str
    compiler: str
    architecture: str
    simd_compiled: list[str]
    simd_selected: str
    planner_effort: str
    rans_kernels: str

class RansStreamInfo(TypedDict):
    format: Literal[1, 2]
    count: int

@overload
def rft_forward(
    x: _F32 | _C64, *, beta: float = 1.0, sigma: float = 1.0, axis: int = -1,
    nthreads: int = 1, out: _C64 | None = None,
) -> _C64: ...
@overload
def rft_forward(
    x: npt.ArrayLike, *, beta: float = 1.0, sigma: float = 1.0, axis: int = -1,
    nthreads: int = 1, out: _C128 | None = None,
) -> _C128: ...
@overload
def rft_inverse(
    y: _F32 | _C64, *, beta: float = 1.0, sigma: float = 1.0, axis: int = -1,
    nthreads: int = 1, out: _C64 | None = None,
) -> _C64: ...
@overload
def rft_inverse(
    y: npt.ArrayLike, *, beta: float = 1.0, sigma: float = 1.0, axis: int = -1,
    nthreads: int = 1, out: _C128 | None = None,
) -> _C128: ...
@overload
def rft_real_forward(
    x: _F32, *, beta: float = 1.0, sigma: float = 1.0, axis: int = -1,
    nthreads: int = 1, out: _F32 | None = None,
) -> _F32: ...
@overload
def rft_real_forward(
    x: npt.ArrayLike, *, beta: float = 1.0, sigma: float = 1.0, axis: int = -1,
    nthreads: int = 1, out: _F64 | None = None,
) -> _F64: ...
@overload
def rft_real_inverse(
    c: _F32, *, beta: float = 1.0, sigma: float = 1.0, axis: int = -1,
    nthreads: int = 1, out: _F32 | None = None,
) -> _F32: ...
@overload
def rft_real_inverse(
    c: npt.ArrayLike, *, beta: float = 1.0, sigma: float = 1.0, axis: int = -1,
    nthreads: int = 1, out: _F64 | None = None,
) -> _F64: ...
@overload
def canonical_rft_forward(
    x: _F32 | _C64, *, axis: int = -1, nthreads: int = 1, out: _C64 | None = None
) -> _C64: ...
@overload
def canonical_rft_forward(
    x: npt.ArrayLike, *, axis: int = -1, nthreads: int = 1, out: _C128 | None = None
) -> _C128: ...
@overload
def canonical_rft_inverse(
    X: _F32 | _C64, *, axis: int = -1, nthreads: int = 1, out: _C64 | None = None
) -> _C64: ...
@overload
def canonical_rft_inverse(
    X: npt.ArrayLike, *, axis: int = -1, nthreads: int = 1, out: _C128 | None = None
) -> _C128: ...
def quantize_uniform(
    x: _F32 | _F64, steps: _F32, *, group_size: int, dead_zone: float = 0.0,
    symbol_dtype: Literal["int8", "int16"] = "int8", nthreads: int = 1,
) -> npt.NDArray[np.int8] | npt.NDArray[np.int16]: ...
def dequantize_uniform(
    q: npt.NDArray[np.int8] | npt.NDArray[np.int16], steps: _F32, *, group_size: int,
    dtype: Literal["float32", "float64"] = "float32", nthreads: int = 1,
) -> _F32 | _F64: ...
def quantize_fixed(
    x: _F32 | _F64, bits: int, *, group_size: int, asymmetric: bool = False, nthreads: int = 1
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float16], npt.NDArray[np.float16] | None]: ...
def dequantize_fixed(
    packed: npt.NDArray[np.uint8] | bytes | memoryview, scales: npt.NDArray[np.float16],
    mins: npt.NDArray[np.float16] | None, *, bits: int, group_size: int, count: int,
    nthreads: int = 1,
) -> _F32: ...
def pack_bits(
    values: npt.NDArray[np.uint8] | npt.NDArray[np.uint16], bits: int
) -> npt.NDArray[np.uint8]: ...
def unpack_bits(
    data: npt.NDArray[np.uint8] | bytes | memoryview, bits: int, count: int,
    dtype: Literal["uint8", "uint16"] = "uint8",
) -> npt.NDArray[np.uint8] | npt.NDArray[np.uint16]: ...
def rans_encode(
    symbols: npt.NDArray[np.int8] | npt.NDArray[np.int16] | npt.NDArray[np.uint8], *,
    format: Literal[1, 2] = 2, nthreads: int = 1, ways: int = 0, chunk_log2: int = 0,
    scale_bits: int = 0,
) -> bytes: ...
def rans_decode(
    data: bytes | bytearray | memoryview | npt.NDArray[np.uint8], count: int,
    dtype: Literal["int8", "int16", "uint8"], *, nthreads: int = 1,
) -> npt.NDArray[np.int8] | npt.NDArray[np.int16] | npt.NDArray[np.uint8]: ...
def rans_stream_info(data: bytes | bytearray | memoryview | npt.NDArray[np.uint8]) -> RansStreamInfo: ...
def rans_stream_size(counts: npt.NDArray[np.int64], *, min_symbol: int = 0) -> tuple[int, float]: ...
def energy_sums(
    x: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    y: npt.NDArray[np.float32] | npt.NDArray[np.float64] | None = None,
    *, nthreads: int = 1,
) -> tuple[float, float]: ...
def byte_planes(
    x: npt.NDArray[np.uint32] | npt.NDArray[np.uint16],
    layout: Literal["float32", "float16", "bfloat16"], *, nthreads: int = 1,
) -> list[npt.NDArray[np.uint8]]: ...
def or_byte_plane(
    out: npt.NDArray[np.uint32] | npt.NDArray[np.uint16], plane: npt.NDArray[np.uint8], index: int,
    layout: Literal["float32", "float16", "bfloat16"], *, nthreads: int = 1,
) -> None: ...
def join_byte_planes(
    planes: Sequence[npt.NDArray[np.uint8]], layout: Literal["float32", "float16", "bfloat16"], *, nthreads: int = 1,
) -> npt.NDArray[np.uint32] | npt.NDArray[np.uint16]: ...
def quantize_histograms(
    c: _F32, steps: _F32, *, nthreads: int = 1,
) -> tuple[npt.NDArray[np.int64], list[npt.NDArray[np.int64]], npt.NDArray[np.float64]]: ...
def canonical_basis(n: int) -> _C128: ...
@overload
def wht_forward(x: _F32, *, axis: int = -1, nthreads: int = 1, out: _F32 | None = None) -> _F32: ...
@overload
def wht_forward(x: npt.ArrayLike, *, axis: int = -1, nthreads: int = 1, out: _F64 | None = None) -> _F64: ...
@overload
def wht_inverse(y: _F32, *, axis: int = -1, nthreads: int = 1, out: _F32 | None = None) -> _F32: ...
@overload
def wht_inverse(y: npt.ArrayLike, *, axis: int = -1, nthreads: int = 1, out: _F64 | None = None) -> _F64: ...
def hadamard_factor(n: int) -> tuple[int, int]: ...
def hadamard_matrix(m: int) -> npt.NDArray[np.int8]: ...
def canonical_unitarity_error(n: int) -> float: ...
def build_info() -> BuildInfo: ...
def set_planner_effort(
    effort: Literal["estimate", "measure", "patient", "exhaustive"],
) -> None: ...
def clear_caches() -> None: ...
def _fftw_c2c(
    x: _C64 | _C128, *, inverse: bool = False, nthreads: int = 1, blocked: bool = False,
    out: _C64 | _C128 | None = None,
) -> _C64 | _C128: ...
