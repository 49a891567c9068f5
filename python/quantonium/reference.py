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
* Walsh-Hadamard transform (the peer of the Phi-RFT for incoherence
  processing): for ``n = m * 2^k``, ``H_n = (H_m kron H_(2^k)) / sqrt(n)`` with
  ``H_(2^k)`` Sylvester's and ``H_m`` Paley's (see :func:`hadamard_matrix`);
  forward ``H_n x``, inverse ``H_n^T y``.
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
    "hadamard_factor",
    "hadamard_matrix",
    "wht_forward",
    "wht_inverse",
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


# --- Walsh-Hadamard transform of any length n = m * 2^k with a known Hadamard matrix of order m -----

#: largest order of a Paley Hadamard matrix built here
HADAMARD_MAX_M = 256


def _is_prime(q: int) -> bool:
    return q >= 2 and all(q % d for d in range(2, int(q**0.5) + 1))


def _jacobsthal(q: int) -> np.ndarray:
    """Q[i, j] = chi(j - i) for the quadratic character chi of the prime field GF(q)."""
    chi = -np.ones(q, np.int64)
    chi[0] = 0
    chi[[(x * x) % q for x in range(1, q)]] = 1
    idx = (np.arange(q)[None, :] - np.arange(q)[:, None]) % q
    return chi[idx]


def hadamard_matrix(m: int) -> np.ndarray:
    """A Hadamard matrix of order m (entries +-1, H H^T = m I), int8.

    Orders: 1 and 2 (Sylvester), q + 1 for a prime q = 3 mod 4 (Paley I:
    ``H = I + S``, S the skew conference matrix ``[[0, 1^T], [-1, Q]]``) and
    2 (q + 1) for a prime q = 1 mod 4 (Paley II: ``C kron [[1, -1], [-1, -1]] +
    I kron [[1, 1], [1, -1]]``, C the symmetric ``[[0, 1^T], [1, Q]]``), Q the
    Jacobsthal matrix of GF(q). Other orders raise ``ValueError``.
    """
    if m == 1:
        return np.ones((1, 1), np.int8)
    if m == 2:
        return np.array([[1, 1], [1, -1]], np.int8)
    if m % 4 == 0 and m <= HADAMARD_MAX_M and _is_prime(m - 1) and (m - 1) % 4 == 3:
        q = m - 1
        s = np.zeros((m, m), np.int64)
        s[0, 1:], s[1:, 0], s[1:, 1:] = 1, -1, _jacobsthal(q)
        h = np.eye(m, dtype=np.int64) + s
    elif m % 4 == 0 and m <= HADAMARD_MAX_M and _is_prime(m // 2 - 1) and (m // 2 - 1) % 4 == 1:
        q = m // 2 - 1
        c = np.zeros((q + 1, q + 1), np.int64)
        c[0, 1:], c[1:, 0], c[1:, 1:] = 1, 1, _jacobsthal(q)
        h = np.kron(c, np.array([[1, -1], [-1, -1]])) + np.kron(np.eye(q + 1, dtype=np.int64), np.array([[1, 1], [1, -1]]))
    else:
        raise ValueError(f"no Hadamard matrix of order {m} is built here (orders: 1, 2, and Paley's q + 1 or 2 (q + 1) "
                         f"for a prime q, up to {HADAMARD_MAX_M})")
    if not np.array_equal(h @ h.T, m * np.eye(m, dtype=np.int64)):  # a construction error, never input
        raise AssertionError(f"Hadamard construction of order {m} failed")
    return h.astype(np.int8)


def hadamard_factor(n: int) -> tuple[int, int]:
    """(m, p) with n = m * p, p a power of two and m the smallest order :func:`hadamard_matrix` builds."""
    if n < 1:
        raise ValueError(f"a Walsh-Hadamard transform needs a length >= 1, not {n}")
    p = n & -n  # the largest power of two dividing n
    while p >= 1:
        m = n // p
        try:
            hadamard_matrix(m)
            return m, p
        except ValueError:
            p //= 2
    raise ValueError(f"no Hadamard matrix of order {n} is built here: n must be m * 2^k with m = 1, 2, or a Paley order "
                     f"(q + 1 for a prime q = 3 mod 4, 2 (q + 1) for a prime q = 1 mod 4) up to {HADAMARD_MAX_M}")


def _fwht_rows(x: np.ndarray) -> np.ndarray:
    """Unnormalised Sylvester WHT along the last axis (its length a power of two), float64."""
    rows, p = x.shape
    h = 1
    while h < p:
        v = x.reshape(rows, p // (2 * h), 2, h)
        x = np.stack((v[:, :, 0] + v[:, :, 1], v[:, :, 0] - v[:, :, 1]), axis=2).reshape(rows, p)
        h *= 2
    return x


def _wht(x: npt.ArrayLike, axis: int, inverse: bool) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"wht takes float32 or float64, not {x.dtype}")
    rows = np.moveaxis(x, axis, -1)
    n = rows.shape[-1]
    m, p = hadamard_factor(n)
    h = hadamard_matrix(m).astype(np.float64)
    flat = rows.reshape(-1, n).astype(np.float64)
    y = _fwht_rows(flat.reshape(-1, p)).reshape(-1, m, p)
    y = np.einsum("ab,rbp->rap", h.T if inverse else h, y) / np.sqrt(n)
    return np.moveaxis(y.reshape(rows.shape), -1, axis).astype(x.dtype)


def wht_forward(x: npt.ArrayLike, axis: int = -1) -> np.ndarray:
    """Orthonormal Walsh-Hadamard transform along ``axis``: ``(H_m kron H_p) x / sqrt(n)``."""
    return _wht(x, axis, inverse=False)


def wht_inverse(y: npt.ArrayLike, axis: int = -1) -> np.ndarray:
    """Inverse of :func:`wht_forward` (its transpose)."""
    return _wht(y, axis, inverse=True)
