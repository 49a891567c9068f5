"""Error compensation (GPTQ / OBQ) for the entropy-coded uniform grid of ``direct``.

Rounding each weight to its nearest grid point minimises the squared error of
the weights, but what matters is the error of the layer's output ``E x`` over
real inputs: ``sum_i e_i^T H e_i`` with ``H = E[x x^T]`` measured on a
calibration text. GPTQ (Frantar et al., 2022) quantises one input column at a
time and pushes each column's rounding error onto the columns not yet
quantised, through the Cholesky factor of ``H^-1``; the result lies on the
same grid, so the payload and the decoder do not change at all: only which
grid point each weight takes.

Here the grid is the one ``direct`` codes: step ``step / (a_i b_j)`` with the
codec's own (float16, normalised) row and column scales, so the symbols the
codec finds by rounding the returned weights are exactly the ones chosen here.
The column scales change the metric: in the scaled domain H becomes
``B^-1 H B^-1``. Rows are independent, so the row scales only set the grid.
Columns are taken in order of decreasing input energy ("act order"), with
1% of the mean diagonal added to H (damping), as in the GPTQ reference code.
"""

from __future__ import annotations

import numpy as np

__all__ = ["compensate"]

BLOCK = 128


def compensate(w: np.ndarray, h: np.ndarray, step: float, row: np.ndarray | None, col: np.ndarray | None,
               *, damp: float = 0.01, act_order: bool = True) -> np.ndarray:
    """Weights on the grid ``step / (row_i col_j)`` chosen by GPTQ for the input Gram matrix ``h``.

    ``w`` is (out, in) with inputs along axis 1; ``h`` is (in, in); ``row`` /
    ``col`` are the codec's normalised scales (or None for ones).
    """
    w = np.asarray(w, np.float64)
    out_dim, in_dim = w.shape
    if h.shape != (in_dim, in_dim):
        raise ValueError(f"Gram matrix {h.shape} does not match the weight's {in_dim} inputs")
    a = np.ones(out_dim) if row is None else np.asarray(row, np.float64)
    b = np.ones(in_dim) if col is None else np.asarray(col, np.float64)
    ws = w * a[:, None] * b[None, :]
    hs = np.asarray(h, np.float64) / b[:, None] / b[None, :]
    hs = 0.5 * (hs + hs.T)
    d = np.diag(hs).copy()
    dead = d <= 0
    hs[dead, dead] = 1.0
    # "act order": the columns with the largest input energy first, while there are
    # many columns left to absorb their error
    perm = np.argsort(-np.diag(hs), kind="stable") if act_order else np.arange(in_dim)
    ws, hs = ws[:, perm], hs[np.ix_(perm, perm)]
    hs[np.diag_indices(in_dim)] += damp * float(np.mean(np.diag(hs)))
    try:
        hinv = np.linalg.inv(hs)
        u = np.linalg.cholesky(hinv).T  # upper: H^-1 = U^T U
    except np.linalg.LinAlgError:
        hs[np.diag_indices(in_dim)] += 0.1 * float(np.mean(np.diag(hs)))
        u = np.linalg.cholesky(np.linalg.inv(hs)).T
    q = np.empty_like(ws)
    for s in range(0, in_dim, BLOCK):
        e = min(s + BLOCK, in_dim)
        blk = ws[:, s:e].copy()
        err = np.empty_like(blk)
        ub = u[s:e, s:e]
        for j in range(e - s):
            col_w = blk[:, j]
            qj = np.rint(col_w / step) * step
            q[:, s + j] = qj
            ej = (col_w - qj) / ub[j, j]
            err[:, j] = ej
            if j + 1 < e - s:
                blk[:, j + 1:] -= np.outer(ej, ub[j, j + 1:])
        if e < in_dim:
            ws[:, e:] -= err @ u[s:e, e:]
    out = np.empty_like(q)
    out[:, perm] = q
    return (out / a[:, None] / b[None, :]).astype(np.float32)
