"""numpy reference of the RFT definitions (shared/docs/RFT.md), written for clarity.

This module is the oracle of every test of :mod:`quantonium_native` and the
baseline of its benchmarks. It favours readability over speed: phases are
recomputed on every call, the canonical basis is rebuilt on every call.

Conventions shared with the native module:

* ``F`` is the unitary DFT (``numpy.fft.fft(x, norm="ortho")``).
* Fast Phi-RFT: ``y = exp(i*theta) * F x`` with
  ``theta_k = 2*pi*beta*frac(k/phi) + pi*sigma*k**2/n``.
* Real-orthogonal Phi-RFT: pairs ``z_j = x[2j] + i*x[2j+1]``, Phi-RFT of
  length n//2, output interleaved ``(Re y_0, Im y_0, Re y_1, ...)``; for odd n
  the last element passes through unchanged.
* Canonical RFT: ``Phi[j, k] = exp(2*pi*i*frac((k+1)*phi)*j)/sqrt(n)``,
  ``Phi_tilde = Phi (Phi^H Phi)^(-1/2)``, forward ``Phi_tilde^H x``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

PHI = (1.0 + np.sqrt(5.0)) / 2.0

__all__ = [
    "PHI",
    "canonical_basis",
    "canonical_rft_forward",
    "canonical_rft_inverse",
    "phi_rft_phases",
    "rft_forward",
    "rft_inverse",
    "rft_real_forward",
    "rft_real_inverse",
]


def _complex_dtype(x: np.ndarray) -> np.dtype:
    """complex64 for single precision input, complex128 otherwise."""
    single = x.dtype in (np.float32, np.complex64)
    return np.dtype(np.complex64 if single else np.complex128)


def phi_rft_phases(n: int, beta: float = 1.0, sigma: float = 1.0) -> np.ndarray:
    """exp(i*theta_k), k = 0..n-1, in complex128 (theta computed in float64)."""
    k = np.arange(n, dtype=np.float64)
    frac = np.mod(k / PHI, 1.0)
    theta = 2.0 * np.pi * beta * frac + np.pi * sigma * k * k / n
    return np.exp(1j * theta)


def rft_forward(x: npt.ArrayLike, beta: float = 1.0, sigma: float = 1.0, axis: int = -1) -> np.ndarray:
    """Fast Phi-RFT along ``axis``: exp(i*theta) * FFT_ortho(x)."""
    x = np.asarray(x)
    n = x.shape[axis]
    spectrum = np.fft.fft(x.astype(np.complex128), axis=axis, norm="ortho")
    phases = np.moveaxis(phi_rft_phases(n, beta, sigma).reshape(-1, *([1] * (x.ndim - 1))), 0, axis)
    return (phases * spectrum).astype(_complex_dtype(x))


def rft_inverse(y: npt.ArrayLike, beta: float = 1.0, sigma: float = 1.0, axis: int = -1) -> np.ndarray:
    """Inverse fast Phi-RFT along ``axis``: IFFT_ortho(exp(-i*theta) * y)."""
    y = np.asarray(y)
    n = y.shape[axis]
    phases = np.moveaxis(phi_rft_phases(n, beta, sigma).reshape(-1, *([1] * (y.ndim - 1))), 0, axis)
    x = np.fft.ifft(np.conj(phases) * y.astype(np.complex128), axis=axis, norm="ortho")
    return x.astype(_complex_dtype(y))




def rft_real_forward(x: npt.ArrayLike, beta: float = 1.0, sigma: float = 1.0, axis: int = -1) -> np.ndarray:
    """Real-orthogonal Phi-RFT: real rows in, interleaved real coefficients out."""
    x = np.asarray(x)
    rows = np.moveaxis(x, axis, -1)
    m = rows.shape[-1] // 2
    out = rows.astype(np.float64, copy=True)
    if m > 0:
        z = rows[..., 0 : 2 * m : 2].astype(np.float64) + 1j * rows[..., 1 : 2 * m : 2].astype(np.float64)
        y = rft_forward(z, beta, sigma)
        out[..., 0 : 2 * m : 2] = y.real
        out[..., 1 : 2 * m : 2] = y.imag
    # odd length: out[..., -1] still holds the untouched last element
    return np.moveaxis(out, -1, axis).astype(x.dtype)


def rft_real_inverse(c: npt.ArrayLike, beta: float = 1.0, sigma: float = 1.0, axis: int = -1) -> np.ndarray:
    """Inverse of :func:`rft_real_forward`."""
    c = np.asarray(c)
    rows = np.moveaxis(c, axis, -1)
    m = rows.shape[-1] // 2
    out = rows.astype(np.float64, copy=True)
    if m > 0:
        y = rows[..., 0 : 2 * m : 2].astype(np.float64) + 1j * rows[..., 1 : 2 * m : 2].astype(np.float64)
        z = rft_inverse(y, beta, sigma)
        out[..., 0 : 2 * m : 2] = z.real
        out[..., 1 : 2 * m : 2] = z.imag
    return np.moveaxis(out, -1, axis).astype(c.dtype)


def canonical_basis(n: int) -> np.ndarray:
    """Phi_tilde = Phi (Phi^H Phi)^(-1/2), (n, n) complex128, columns are basis vectors."""
    j = np.arange(n, dtype=np.float64)[:, None]
    f = np.mod((np.arange(n, dtype=np.float64) + 1.0) * PHI, 1.0)[None, :]
    phi = np.exp(2j * np.pi * f * j) / np.sqrt(n)
    gram = phi.conj().T @ phi
    w, v = np.linalg.eigh(gram)
    return phi @ (v * (1.0 / np.sqrt(w))) @ v.conj().T


def canonical_rft_forward(x: npt.ArrayLike, axis: int = -1) -> np.ndarray:
    """Canonical RFT along ``axis``: X = Phi_tilde^H x."""
    x = np.asarray(x)
    rows = np.moveaxis(x, axis, -1).astype(np.complex128)
    basis = canonical_basis(rows.shape[-1])
    out = rows @ basis.conj()  # row form of Phi_tilde^H x
    return np.moveaxis(out, -1, axis).astype(_complex_dtype(x))


def canonical_rft_inverse(X: npt.ArrayLike, axis: int = -1) -> np.ndarray:
    """Inverse canonical RFT along ``axis``: x = Phi_tilde X."""
    X = np.asarray(X)
    rows = np.moveaxis(X, axis, -1).astype(np.complex128)
    basis = canonical_basis(rows.shape[-1])
    out = rows @ basis.T  # row form of Phi_tilde X
    return np.moveaxis(out, -1, axis).astype(_complex_dtype(X))
