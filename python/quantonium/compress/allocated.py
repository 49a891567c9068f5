"""The allocated run: one average bit budget for the model, spent where the output is sensitive.

Stages (each with its progress bar), for a source of any size:

1. **small tensors** (norms, biases, ``--include``/``--exclude`` leftovers):
   lossless, first, so that the budget left for the rest is exact;
2. **sensitivities** (with calibration text, ``quantonium.calibration.measure``):
   the original model is built from the memory-mapped source (no copy), the
   text runs through it forward and backward with block checkpointing; only
   two vectors per weight are kept (and saved with the checkpoint, so a
   resumed run reuses them instead of measuring again);
3. **curves**: each large tensor's rate-distortion curve, on a row sample
   (``codecs.allocate.measure_curve``); only the curves are kept;
4. **encode**: the tensors that GPTQ applies to (Linear / Conv1D weights of
   layers called once per pass, codec ``direct`` or ``auto``) are coded
   during ONE pass of the calibration text through the model
   (``calibration.gram_sweep``): when a layer has run, its input Gram matrix
   is complete; its weights get their step from the allocation (solved again
   with the real sizes so far), GPTQ, the codec, the sink; the matrix is then
   released. The other large tensors (embeddings, tied heads) follow, one at a
   time, with the same re-solved allocation: they absorb what the estimates
   missed, so the total lands just under the budget.

Without calibration (``--allocate`` alone) stages 2 and the sweep are
skipped: plain squared error, no GPTQ.

On a cluster (``executor`` a :class:`~.dask_executor.DaskExecutor`): the
sensitivities and the Gram sweep stay on the client (they need the model);
the lossless stage and the curves (independent per tensor, the parallel part)
run on the workers, results in plan order. The encode stage is sequential by
design (each tensor's step is chosen after the real sizes of the tensors
before it), so a cluster cannot make it faster: tensors without a Gram matrix
are coded on a worker one at a time (the client stays free, the bytes are the
same); tensors with a Gram matrix (GPTQ) are coded on the client, because
shipping the matrix costs more than the weights it corrects (in x in float64:
512 MiB for an 8192-input layer whose weights are 64 MiB), it would buy no
parallelism, and GPTQ runs in torch, whose sums depend on the thread count
and the CPU: on the client they are those of a local run.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ..codecs.allocate import Allocator, Curve, allocation_scales, curve_for
from ..memory import bounded_allocator, trim
from ..models.sources import TensorRef
from .executor import ThreadExecutor
from .jobs import run_job
from .plan import TensorJob
from .run import _numel, is_small

__all__ = ["CurveJob", "curve_job", "run_allocated"]


@dataclass
class CurveJob:
    """One tensor's rate-distortion curve to measure (picklable: runs wherever the executor sends it)."""

    name: str
    ref: TensorRef
    codecs: tuple[str, ...]
    row: np.ndarray | None
    col: np.ndarray | None
    weight: float
    kind: str
    nthreads: int = 1


def curve_job(job: CurveJob) -> Curve:
    """``codecs.allocate.curve_for`` on the job's tensor (the same curve for any ``nthreads``)."""
    return curve_for(job.name, job.ref.read(), job.codecs, job.row, job.col, weight=job.weight, kind=job.kind,
                     nthreads=job.nthreads)


def _calibration_text(calibration: str) -> tuple[str, str]:
    from ..models.texts import calibration_text, read_text_file

    if calibration == "builtin":
        return calibration_text()
    text, name = read_text_file(calibration, "calibration text")
    return name, text


def run_allocated(src, todo: list[str], sink, *, bpw: float, codec: str, forced: set[str], calibration: str | None,
                  floor: float | None, threads: int, progress, tokens: int | None = None,
                  executor=None) -> dict[str, Any]:
    """Runs the stages of the module docstring into ``sink``; returns metadata for the file's index."""
    from ..calibration import DEFAULT_FLOOR

    executor = executor or ThreadExecutor(threads)
    remote = executor.remote

    shapes = {n: tuple(src.shape(n)) for n in todo}
    small = [n for n in todo if is_small(shapes[n]) or n in forced]
    large = [n for n in todo if n not in small]
    total_w = sum(_numel(shapes[n]) for n in todo)
    meta: dict[str, Any] = {}

    # 1. the model and the calibration text first: an architecture that cannot run fails before any work
    #    (then 2. sensitivities)
    model = data = None
    sens: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    fl = DEFAULT_FLOOR if floor is None else floor
    if calibration is not None:
        import torch

        from ..calibration import DEFAULT_TOKENS, CalibrationData, measure
        from ..models import load_source, match_names

        bounded_allocator()
        torch.set_num_threads(threads)
        cal_name, text = _calibration_text(calibration)
        model, tok = src.live if src.live is not None else load_source(src.source)
        data = CalibrationData.make(model, tok, text, max_tokens=tokens or DEFAULT_TOKENS)
        saved = sink.load_plan() if sink.done else None
        names = match_names([n for n, _ in model.named_parameters()], large, getattr(model, "base_model_prefix", "") or "")
        back = {m: n for n, m in names.items()}
        if saved is not None:
            sens = {n: (saved[f"row/{n}"], saved[f"col/{n}"]) for n in large if f"row/{n}" in saved}
        else:
            with progress.stage("calibrate", data.tokens, unit="tok") as update:
                s = measure(model, tok, data=data, progress=update)
            sens = {back[m]: v.factors(fl) for m, v in s.items() if back.get(m) in shapes}
            sink.save_plan({**{f"row/{n}": r for n, (r, _) in sens.items()}, **{f"col/{n}": c for n, (_, c) in sens.items()}})
            trim()
        meta["calibration"] = {"text": cal_name, "chars": len(text), "tokens": data.tokens, "floor": fl,
                               "weighted_tensors": len(sens),
                               "method": "row: E[(dL/dy)^2] under sampled labels; col: E[x^2] (quantonium.calibration)"}

    # 3. small tensors, lossless, exact bits
    jobs = (TensorJob(n, src.ref(n), "lossless", source_dtype=src.source_dtypes.get(n)) for n in small if n not in sink.done)
    with progress.stage("lossless", sum(src.nbytes(n) for n in small if n not in sink.done)) as update:
        for res in executor.map(run_job, jobs):
            sink.add(res)
            update(res.source_nbytes)
    spent_small = sum(int((sink.results.get(n) or sink.done[n])["bits"]) for n in small)
    budget = bpw * total_w - spent_small

    # which tensors get GPTQ: weights of layers the sweep sees once, coded direct
    gram_of_module: dict[str, list[str]] = {}
    transposed: dict[str, bool] = {}
    if model is not None and codec in ("direct", "auto"):
        from ..calibration import gram_modules

        tied_params = _tied_param_names(model)
        for mname, mod, kind in gram_modules(model, data):
            pname = f"{mname}.weight" if mname else "weight"
            ck = back.get(pname)
            if ck is None or ck not in shapes or len(shapes[ck]) != 2 or pname in tied_params:
                continue
            gram_of_module.setdefault(mname, []).append(ck)
            transposed[ck] = kind == "Conv1D"
    gptq = {n for names in gram_of_module.values() for n in names}
    meta.setdefault("calibration", {})["gptq_tensors"] = len(gptq) if calibration is not None else 0
    if calibration is None:
        meta.pop("calibration")

    # 4. curves
    if not large:
        return meta
    codecs = {"direct": ("direct",), "rft-dense": ("rft-dense",), "auto": ("direct", "rft-dense")}[codec]
    arrays = {n: src.ref(n) for n in large}
    scales = allocation_scales({n: _Shape(shapes[n]) for n in large}, sens)
    curves = []

    def curve_jobs():
        for n in large:
            row, col, gm = scales[n]
            # on workers: one thread per curve, the parallelism is across tensors (curves do not depend on it)
            yield CurveJob(n, arrays[n], ("direct",) if n in gptq else codecs, row, col, gm * gm,
                           "gptq" if n in gptq else "plain", 1 if remote else threads)

    with progress.stage("curves", sum(src.nbytes(n) for n in large)) as update:
        for c in (executor.map(curve_job, curve_jobs()) if remote else map(curve_job, curve_jobs())):
            curves.append(c)
            update(src.nbytes(c.name))
    if sum(c.hull[0].bits for c in curves) > budget:
        raise ValueError(f"{bpw:g} bpw is below what these tensors can be coded in (all-zero symbols)")
    alloc = Allocator(curves, budget)
    for n in large:
        if n in sink.done:
            e = sink.done[n]
            alloc.record(n, float((e.get("report") or {}).get("estimated_bits", e["bits"])), float(e["bits"]))

    def code(n: str, gram=None) -> None:
        row, col, _ = scales[n]
        p = alloc.choose(n)
        while True:
            job = TensorJob(n, arrays[n], p.codec, {"step": p.step}, options={"row_scale": row, "col_scale": col},
                            gram=gram, gram_transposed=transposed.get(n, False), source_dtype=src.source_dtypes.get(n),
                            report={"rate_control": "lagrangian", "target_bpw": bpw, "weighted": n in sens,
                                    "gptq": gram is not None, "estimated_bits": round(p.bits),
                                    "weighted_distortion": p.dist})
            # GPTQ on the client, the others where the executor runs jobs (module docstring)
            res = run_job(job, nthreads=threads) if gram is not None else executor.run(partial(run_job, nthreads=threads), job)
            q = alloc.coarser(n, p)
            if alloc.fits(n, res.encoded.bits) or q is None:
                break
            p = q  # the rest would not fit: one hull point coarser
        alloc.record(n, p.bits, res.encoded.bits)
        sink.add(res)
        update(res.source_nbytes)

    # 5. encode: GPTQ tensors during one pass of the text, then the others
    with progress.stage("encode", sum(src.nbytes(n) for n in large if n not in sink.done)) as update:
        if gptq:
            from ..calibration import gram_sweep

            def on_gram(mname: str, h, _t: bool) -> None:
                for n in gram_of_module.get(mname, []):
                    if n not in sink.done and n not in sink.results:
                        code(n, h)

            todo_modules = {m for m, ns in gram_of_module.items() if any(n not in sink.done for n in ns)}
            if todo_modules:
                gram_sweep(model, data, on_gram, modules=todo_modules)
        for n in large:
            if n not in sink.done and n not in sink.results:
                code(n)
    return meta


class _Shape:
    """A stand-in with ``.size``/``.ndim`` for ``allocation_scales`` (it needs no values)."""

    def __init__(self, shape) -> None:
        self.shape, self.ndim, self.size = shape, len(shape), _numel(shape)


def _tied_param_names(model) -> set[str]:
    """Parameter names (all of them) of tensors used under more than one name (tied embeddings and heads)."""
    seen: dict[int, list[str]] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        seen.setdefault(id(p), []).append(n)
    return {n for names in seen.values() if len(names) > 1 for n in names}
