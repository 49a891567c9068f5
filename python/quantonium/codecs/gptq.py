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
1% of the mean diagonal added to H (damping), as in the GPTQ reference code;
if the Cholesky factorisation still fails, 10% more is added. Inputs that are
never active (zero diagonal) get a unit diagonal: their weights are rounded to
the nearest grid point and take no error from the others.

The arithmetic (same mathematics as GPTQ, cheaper and better conditioned):

- GPTQ writes ``H^-1 = U^T U`` (U upper) and, for column j in order, with
  ``w'`` the weights updated so far and ``q_j`` the grid point nearest to
  ``w'_j``, sets ``E_j = (w'_j - q_j) / U_jj`` and ``w'_k -= E_j U_jk`` for
  every later column k. Written for all columns at once this is
  ``W - Q = Delta (D^-1 U)`` with ``Delta = W' - Q``, so
  ``W' = W + (W - Q) (V D - I)`` where ``V = U^-1`` and ``D = diag(U)``:
  column k receives ``sum_{j<k} (w_j - q_j) V_jk / V_kk``, the residuals
  of the *original* weights times the normalised upper factor V.
- ``V`` is upper triangular with ``H = V V^T``: the lower Cholesky factor of H
  taken in reversed column order, reversed back. One Cholesky of the damped H
  gives it; no inverse of H and no second factorisation (GPTQ's reference
  code computes ``cholesky(H)``, ``cholesky_inverse``, ``cholesky(upper)``:
  four times the work, and the factor of an inverse is less accurate).
- The lazy-batch update of the GPTQ paper: columns are taken in blocks of
  128; inside a block, column by column with rank-1 updates of the block;
  after the block, one matrix product updates every later column. The work
  is ``out * in^2`` multiply-adds in float32 (torch / MKL), plus the
  Cholesky (``in^3 / 3``), in float32 when it succeeds there and in float64
  otherwise (``bench/gptq_bench.py`` measures the difference in output error).
  Rows are independent: with ``nthreads`` > 1 the Cholesky runs on that many
  threads, and the rows are split into that many groups, each updated by one
  thread with single-threaded torch operations.
- The symbols are integers ``q`` chosen by rounding ``w' / step`` (float32,
  half to even, as the codec rounds), kept within +-31999 (the codec widens
  its step when a value needs 32000 steps or more). The returned weights are
  what the decoder computes from those symbols, ``float32(q * step) / (a_i b_j)``
  in float32 with the float32 product of the scales, so re-encoding them
  with the codec at the same step finds the same symbols (the error of the
  float32 scaling is a few units in the last place, far from a rounding
  boundary at +-0.5) and decodes to the same bits.

Same inputs and thread count give bitwise the same result. ``nthreads`` sets
torch's (process-wide) thread count for the duration of a call. Memory above
the inputs: the factorisation works in place on one in x in float32 matrix,
and the factor and the transposed weights live through the updates: about
``2 * in^2 * 4`` bytes (512 MB at in = 8192).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

__all__ = ["Factor", "compensate", "factorise", "quantise"]

#: columns quantised per block before the rest is updated by one matrix product
BLOCK = 128
#: largest |symbol| chosen: the codec keeps its step only below 32000 steps
MAX_SYMBOL = 31999
_FALLBACK_DAMP = 0.1
_MIN_ROWS_PER_THREAD = 64
_GATHER_ROWS = 512


@dataclass(frozen=True)
class Factor:
    """What GPTQ needs from the Gram matrix: the column order and the update matrix.

    It depends on the Gram matrix, the column scales and the damping, not on the
    step or the row scales, so one factor serves every step of a tensor (and every
    tensor with the same input and the same column scales).
    """

    #: input columns in factorisation order: the reverse of the quantisation order
    #: (act order reversed), so ``order[-1]`` is quantised first
    order: torch.Tensor
    #: (in, in) float32 lower triangular, unit diagonal: the Cholesky factor ``L`` of the
    #: scaled, damped Gram matrix in ``order`` (``H = L L^T``), each column divided by its
    #: diagonal element. Quantising position j adds ``ln[j, k] * (w_j - q_j)`` to every
    #: position k < j (the columns quantised after it).
    ln: torch.Tensor
    #: the codec's column scales as float32 (or None), which the grid uses too
    col: np.ndarray | None
    #: damping added to the diagonal, relative to its mean (``damp``, or more after a failed Cholesky)
    damp: float
    #: dtype the Cholesky factorisation was computed in ("float32", or "float64" when float32 failed)
    factor_dtype: str


def _check_threads(nthreads) -> None:
    if not isinstance(nthreads, int) or isinstance(nthreads, bool) or nthreads < 1:
        raise ValueError(f"GPTQ: nthreads must be a positive integer, not {nthreads!r}")


@contextmanager
def _threads(nthreads: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``nthreads`` for the block, restored afterwards."""
    _check_threads(nthreads)
    old = torch.get_num_threads()
    if nthreads != old:
        torch.set_num_threads(nthreads)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


def _scale(v, n: int, what: str) -> np.ndarray | None:
    if v is None:
        return None
    v = np.asarray(v, np.float32).reshape(-1)
    if v.size != n or not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"GPTQ: {what} scale must be {n} finite positive values")
    return v


def _as_matrix(x, what: str) -> torch.Tensor | np.ndarray:
    """A 2-D float32 / float64 matrix: the torch tensor itself, or a numpy array (not copied when
    already float32 / float64: read-only arrays stay numpy, torch does not wrap them)."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        ok = t.is_floating_point()
        if ok and t.dtype not in (torch.float32, torch.float64):
            t = t.to(torch.float32)
    else:
        t = np.asarray(x)
        ok = t.dtype.kind == "f"
        if ok and t.dtype not in (np.float32, np.float64):
            t = t.astype(np.float32)
    if t.ndim != 2 or not ok:
        raise ValueError(f"GPTQ: {what} must be a 2-D floating-point matrix, not {tuple(t.shape)} {t.dtype}")
    return t


def _cholesky_in_place(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(lower Cholesky factor, LAPACK info) of the symmetric ``m``, computed in ``m``'s own memory.

    ``m.T`` is ``m`` (symmetric) in the column-major layout LAPACK works in, so torch
    factorises it in place when given it as its own output (no second n x n buffer:
    256 MB at n = 8192); should torch refuse the aliasing, it factorises a copy.
    """
    a = m.T
    info = torch.zeros((), dtype=torch.int32)
    try:
        return torch.linalg.cholesky_ex(a, out=(a, info))
    except RuntimeError:
        return torch.linalg.cholesky_ex(a)


def factorise(h, col=None, *, damp: float = 0.01, act_order: bool = True, nthreads: int = 1,
              factor_dtype: str = "auto") -> Factor:
    """The column order and update matrix of GPTQ for the input Gram matrix ``h`` (in, in).

    ``h`` is a float32 or float64 numpy array or torch tensor (read, never
    modified; only the triangle the factorisation reads is used, H is taken as
    symmetric); ``col`` the codec's normalised column scales (None for ones).
    ``factor_dtype`` "auto" factorises in float32 and retries in float64 when
    that fails; "float64" factorises in float64 only. Raises ValueError when
    ``h`` is not a finite square matrix or is not positive definite even with
    the fallback damping.
    """
    if not (isinstance(damp, (int, float)) and math.isfinite(damp) and damp >= 0):
        raise ValueError(f"GPTQ: damping must be finite and >= 0, not {damp!r}")
    if factor_dtype not in ("auto", "float64"):
        raise ValueError(f"GPTQ: factor_dtype must be 'auto' or 'float64', not {factor_dtype!r}")
    ht = _as_matrix(h, "the Gram matrix")
    n = ht.shape[0]
    if tuple(ht.shape) != (n, n):
        raise ValueError(f"GPTQ: the Gram matrix must be square, not {tuple(ht.shape)}")
    b = _scale(col, n, "column")
    with _threads(nthreads), torch.no_grad():
        if n == 0:
            return Factor(torch.zeros(0, dtype=torch.int64), torch.zeros((0, 0)), b, float(damp), "float32")
        inv_b = torch.ones(n, dtype=torch.float64) if b is None else 1.0 / torch.tensor(b, dtype=torch.float64)
        diag_h = torch.diagonal(ht) if isinstance(ht, torch.Tensor) else torch.from_numpy(np.diagonal(ht).copy())
        d = diag_h.double() * inv_b * inv_b  # the diagonal of B^-1 H B^-1
        if not bool(torch.isfinite(d).all()):
            raise ValueError("GPTQ: the Gram matrix has non-finite values on its diagonal")
        dead = d <= 0
        d = torch.where(dead, torch.ones_like(d), d)
        perm = torch.argsort(-d, stable=True) if act_order else torch.arange(n)
        # H = V V^T with V upper (what GPTQ's update needs, see the module docstring) is the
        # lower Cholesky factor of H in reversed order: factorise in the reversed act order
        order = perm.flip(0)
        s, dead_o, mean_d, r = inv_b[order], dead[order], float(d.mean()), order.numpy()

        def damped(dtype: torch.dtype, extra: float) -> torch.Tensor:
            # our own copy of B^-1 H B^-1 in order, damped; gathered by blocks of rows so that
            # no whole intermediate copy (of a float64 H, say) is ever held
            m = torch.empty((n, n), dtype=dtype)
            for i0 in range(0, n, _GATHER_ROWS):
                i1 = min(i0 + _GATHER_ROWS, n)
                if isinstance(ht, torch.Tensor):
                    m[i0:i1] = ht.index_select(0, order[i0:i1]).index_select(1, order)
                else:
                    m[i0:i1] = torch.from_numpy(ht[np.ix_(r[i0:i1], r)])
            sd = s.to(dtype)
            m.mul_(sd[:, None]).mul_(sd[None, :])
            diag = torch.diagonal(m)
            diag[dead_o] = 1.0
            diag.add_(damp * mean_d)
            if extra:  # the fallback: 10% of the mean of the damped diagonal more
                diag.add_(extra * mean_d * (1.0 + damp))
            return m

        attempts = [(torch.float32, 0.0), (torch.float64, 0.0), (torch.float32, _FALLBACK_DAMP),
                    (torch.float64, _FALLBACK_DAMP)]
        if factor_dtype == "float64":
            attempts = [a for a in attempts if a[0] == torch.float64]
        tried = []
        for dtype, extra in attempts:
            m = damped(dtype, extra)
            if not (math.isfinite(float(m.amax())) and math.isfinite(float(m.amin()))):  # NaN propagates
                raise ValueError("GPTQ: the Gram matrix has non-finite values")
            low, info = _cholesky_in_place(m)
            del m
            # NaN never fails a comparison in the factorisation: check its diagonal too
            if int(info) == 0 and bool(torch.isfinite(torch.diagonal(low)).all()):
                break
            del low
            tried.append(f"{str(dtype).removeprefix('torch.')} with damping {damp + extra * (1 + damp):g}")
        else:
            raise ValueError(f"GPTQ: the Gram matrix is not positive definite even with damping "
                             f"(tried {'; '.join(tried)})")
        ln = low.to(torch.float32)
        del low
        ln.div_(torch.diagonal(ln).clone()[None, :])
        return Factor(order, ln, b, float(damp + extra * (1.0 + damp)), str(dtype).removeprefix("torch."))


def _sweep(y: torch.Tensor, x: torch.Tensor, ln: torch.Tensor, step: float, s: int, e: int) -> None:
    """Quantises positions e-1 down to s, one at a time, with rank-1 updates of [s, j)."""
    for j in range(e - 1, s - 1, -1):
        qj = y[j]
        qj.div_(step).round_().clamp_(-MAX_SYMBOL, MAX_SYMBOL)  # round half to even, as the codec
        rj = x[j]
        rj.sub_(qj, alpha=step)  # the residual w_j - q_j step of the original weight
        if j > s:
            y[s:j].addr_(ln[j, s:j], rj)


def _gptq_rows(x: torch.Tensor, ln: torch.Tensor, step: float) -> torch.Tensor:
    """Symbols (in, rows) for the scaled weights ``x`` (in, rows) in factorisation order; ``x``
    becomes the residuals. The lazy batch of the GPTQ paper, last position first: a block of
    BLOCK positions is quantised with rank-1 updates inside it, then one matrix product updates
    every position not yet quantised."""
    with torch.no_grad():
        y = x.clone()  # the updated weights w', then the symbols q
        for e in range(x.shape[0], 0, -BLOCK):
            s = max(0, e - BLOCK)
            _sweep(y, x, ln, step, s, e)
            if s > 0:
                y[:s].addmm_(ln[s:e, :s].T, x[s:e])
        return y


def quantise(w, factor: Factor, step: float, row=None, *, nthreads: int = 1) -> np.ndarray:
    """GPTQ with a prepared ``factor``: float32 weights (out, in) on the grid ``step / (row_i col_j)``.

    ``w`` is (out, in), a numpy array or torch tensor; ``row`` the codec's
    normalised row scales (None for ones); the column scales are the factor's.
    Rows are independent: with ``nthreads`` > 1 they are split into that many
    contiguous groups, each run by one thread (torch single-threaded inside:
    the many small operations of the column sweep do not pay for a parallel
    region, and on a busy machine they lose badly to one).
    """
    wt = _as_matrix(w, "the weight")
    if isinstance(wt, torch.Tensor):
        wt = wt.numpy()
    out_dim, in_dim = wt.shape
    if tuple(factor.ln.shape) != (in_dim, in_dim):
        raise ValueError(f"GPTQ: Gram matrix of {factor.ln.shape[0]} inputs does not match the weight's {in_dim} inputs")
    step32 = np.float32(step)  # the codec stores and uses the step as float32
    if not (np.isfinite(step32) and step32 > 0):
        raise ValueError(f"GPTQ: step must be finite and > 0, not {step!r}")
    a, b = _scale(row, out_dim, "row"), factor.col
    _check_threads(nthreads)
    if out_dim == 0 or in_dim == 0:
        return np.zeros((out_dim, in_dim), np.float32)
    w32 = np.asarray(wt, np.float32)
    m = None  # the codec's scaling, operation for operation: float32(w * float32(a_i b_j))
    if a is not None or b is not None:
        m = (np.ones((out_dim, 1), np.float32) if a is None else a[:, None]) * \
            (np.ones((1, in_dim), np.float32) if b is None else b[None, :])
    ws = torch.from_numpy(w32 * m if m is not None else w32 if w32.flags.writeable else w32.copy())
    st = float(step32)
    groups = max(1, min(nthreads, out_dim // _MIN_ROWS_PER_THREAD))
    edges = np.linspace(0, out_dim, groups + 1).astype(int).tolist()
    bounds = list(zip(edges[:-1], edges[1:]))
    with _threads(1), torch.no_grad():
        # transposed, in factorisation order: row j of a group is input column order[j]
        # (torch's blocked transposing copy, then whole rows gathered: both far faster than a
        # gather from the transposed view)
        xs = [ws[r0:r1].T.contiguous().index_select(0, factor.order) for r0, r1 in bounds]
        del ws
        if groups == 1:
            ys = [_gptq_rows(xs[0], factor.ln, st)]
        else:
            with ThreadPoolExecutor(groups) as pool:
                ys = list(pool.map(lambda x: _gptq_rows(x, factor.ln, st), xs))
        del xs
        q = torch.empty((in_dim, out_dim), dtype=torch.float32)
        for (r0, r1), y in zip(bounds, ys):
            q[:, r0:r1].index_copy_(0, factor.order, y)
        del ys
        out = q.T.contiguous().numpy()
        del q
    # what the decoder computes from the symbols: float32(q * step) / float32(a_i b_j)
    out += np.float32(0.0)  # -0.0 -> +0.0, as the decoder gives
    out *= step32
    if m is not None:
        out /= m
    return out


def compensate(w, h, step: float, row, col, *, damp: float = 0.01, act_order: bool = True,
               nthreads: int = 1) -> np.ndarray:
    """Weights on the grid ``step / (row_i col_j)`` chosen by GPTQ for the input Gram matrix ``h``.

    ``w`` is (out, in) with inputs along axis 1; ``h`` is (in, in), a float32 or
    float64 numpy array or torch tensor; ``row`` / ``col`` are the codec's
    normalised scales (or None for ones). Returns float32 (out, in): re-encoded
    by ``Direct(row_scale, col_scale).encode_step`` at the same step, it gives
    the symbols chosen here and decodes to the same values. ``nthreads`` sets
    torch's thread count for the call (restored afterwards).
    """
    wt = _as_matrix(w, "the weight")
    hs = tuple(h.shape) if isinstance(h, torch.Tensor) else np.shape(h)
    if hs != (wt.shape[1], wt.shape[1]):
        raise ValueError(f"GPTQ: Gram matrix {hs} does not match the weight's {wt.shape[1]} inputs")
    f = factorise(h, col, damp=damp, act_order=act_order, nthreads=nthreads)
    return quantise(wt, f, step, row, nthreads=nthreads)
