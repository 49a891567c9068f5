"""GPTQ for the fixed-rate grid: integer levels with one float16 scale per group of inputs.

``codecs.gptq`` compensates on the entropy-coded uniform grid of ``direct``
(one step for the whole tensor). The fixed-rate codecs (``fixed``,
``rft-fixed``, ``wht-fixed``) use a different grid: for a weight (out, in)
with its inputs along the rows, each row is cut into groups of ``g``
consecutive inputs, and group k of row i has its own scale
``s_ik = fp16(max_j |w_ij| / qmax)`` (qmax = 2^(bits-1) - 1) and the levels
``-qmax..qmax``. GPTQ (Frantar et al., 2022) quantises one input column at a
time and pushes each column's rounding error onto the columns not yet
quantised, through the upper Cholesky factor U of ``H^-1`` (H = E[x x^T] of
the layer's inputs, 1% of its mean diagonal added):

    q_j   = clip(rint(w_j / s_j), -qmax, qmax) * s_j
    e_j   = (w_j - q_j) / U_jj
    w_k  -= e_j U_jk          for every k > j

Two ways of choosing the scales (``act_order``):

- ``False`` (the GPTQ reference with ``groupsize``): columns in their natural
  order, and each group's scales computed from the *updated* weights when the
  group's first column comes up, so that the scale fits what is left to code;
- ``True`` ("act order" with static groups): columns in order of decreasing
  input energy (diag H), scales computed beforehand from the original weights
  (a group's columns are no longer consecutive in the processing order).

The result is levels and scales that the codec's decoder reads unchanged
(``Fixed.encode_levels``, ``RotatedFixed.encode_levels``): only which grid
point each weight takes and its group's scale differ from round-to-nearest.

For a rotated codec the same code runs in the rotated basis: with T D the
codec's orthogonal row map, ``W x = (W D T^T)(T D x)``, so the coefficients
``C = W D T^T`` (``RotatedFixed.rotate``) are quantised with the Gram matrix
``T D H D T^T`` (``RotatedFixed.rotate_gram``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["compensate_fixed", "output_error", "rtn_fixed"]


def _scales(w: np.ndarray, qmax: int) -> np.ndarray:
    """float16 scales max|w| / qmax along the last axis (as the native quantiser computes them)."""
    amax = np.max(np.abs(w), axis=-1).astype(np.float32)
    return (amax / np.float32(qmax)).astype(np.float16)


def _round(x: np.ndarray, s: np.ndarray, qmax: int) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(s > 0, np.rint(x / np.where(s > 0, s, 1.0)), 0.0)
    return np.clip(q, -qmax, qmax)


def rtn_fixed(w: np.ndarray, bits: int, group_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Round to nearest on the fixed grid: (levels int8 (out, in), scales float16 (out, in / g))."""
    w = np.asarray(w, np.float64)
    out_dim, in_dim = w.shape
    if in_dim % group_size:
        raise ValueError(f"rows of {in_dim} inputs do not split into groups of {group_size}")
    qmax = (1 << (bits - 1)) - 1
    g = w.reshape(out_dim, in_dim // group_size, group_size)
    s = _scales(g, qmax)
    q = _round(g, s.astype(np.float64)[..., None], qmax)
    return q.reshape(out_dim, in_dim).astype(np.int8), s


def compensate_fixed(w: np.ndarray, h: np.ndarray, bits: int, group_size: int, *, damp: float = 0.01,
                     act_order: bool = False, block: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """GPTQ on the fixed grid: (levels int8 (out, in), scales float16 (out, in / group_size)).

    ``w`` is (out, in) with the inputs along axis 1 (``nn.Linear``), ``h`` the
    (in, in) Gram matrix of the inputs; ``in`` must be a multiple of ``group_size``.
    """
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in [2, 8], not {bits}")
    w = np.array(w, np.float64)
    out_dim, in_dim = w.shape
    if h.shape != (in_dim, in_dim):
        raise ValueError(f"Gram matrix {h.shape} does not match the weight's {in_dim} inputs")
    if in_dim % group_size:
        raise ValueError(f"rows of {in_dim} inputs do not split into groups of {group_size}")
    qmax = (1 << (bits - 1)) - 1
    ngroups = in_dim // group_size
    hs = np.array(h, np.float64)
    hs = 0.5 * (hs + hs.T)
    dead = np.diag(hs) <= 0
    hs[dead, dead] = 1.0
    scales = np.zeros((out_dim, ngroups), np.float16)
    if act_order:
        scales[:] = _scales(w.reshape(out_dim, ngroups, group_size), qmax)
        perm = np.argsort(-np.diag(hs), kind="stable")
    else:
        perm = np.arange(in_dim)
        block = max(group_size, block // group_size * group_size)  # groups never straddle two blocks
    w, hs = w[:, perm], hs[np.ix_(perm, perm)]
    hs[np.diag_indices(in_dim)] += damp * float(np.mean(np.diag(hs)))
    try:
        u = np.linalg.cholesky(np.linalg.inv(hs)).T  # upper: H^-1 = U^T U
    except np.linalg.LinAlgError:
        hs[np.diag_indices(in_dim)] += 0.1 * float(np.mean(np.diag(hs)))
        u = np.linalg.cholesky(np.linalg.inv(hs)).T
    levels = np.zeros((out_dim, in_dim), np.int8)
    group_of = perm // group_size
    for s in range(0, in_dim, block):
        e = min(s + block, in_dim)
        blk = w[:, s:e].copy()
        err = np.empty_like(blk)
        for j in range(e - s):
            col = s + j
            if not act_order and col % group_size == 0:
                scales[:, col // group_size] = _scales(blk[:, j:j + group_size], qmax)
            sc = scales[:, group_of[col]].astype(np.float64)
            q = _round(blk[:, j], sc, qmax)
            levels[:, col] = q.astype(np.int8)
            ej = (blk[:, j] - q * sc) / u[col, col]
            err[:, j] = ej
            if j + 1 < e - s:
                blk[:, j + 1:] -= np.outer(ej, u[col, col + 1:e])
        if e < in_dim:
            w[:, e:] -= err @ u[s:e, e:]
    out = np.empty_like(levels)
    out[:, perm] = levels
    return out, scales


def output_error(w: np.ndarray, w_hat: np.ndarray, h: np.ndarray) -> float:
    """tr(E H E^T) / tr(W H W^T) with E = w - w_hat: the relative error of the layer's output on the calibration inputs."""
    w = np.asarray(w, np.float64)
    e = w - np.asarray(w_hat, np.float64)
    h = np.asarray(h, np.float64)
    return float(np.sum((e @ h) * e) / np.sum((w @ h) * w))
