"""``quantonium compare``: our codecs and peer quantisers side by side, on one model, one text.

Every method is applied to the same *large* tensors (two or more dimensions,
4096 values or more); small ones (norms, biases) are stored lossless for
every method, with the same bits. bpw = 8 * (bytes of every tensor) / weights,
where a method's bytes are what it must store: our payloads as written to a
.qnt (headers, scales, tables included); for peers, their packed integers plus
their scales / minimums / zeros counted at 16 bits each (fp16), whatever
dtype the library happens to keep them in. Fidelity is measured on the
rebuilt model (``quantonium.evaluate.compare_models``), plus the weight SNR.

Methods (``--bits`` picks the operating points):

- ``direct``, ``rft-dense``, ``rft-spectral``: one setting for all tensors, each
  tensor at the target bpw (the "uniform setting").
- ``auto``: the Lagrangian allocation over direct and rft-dense curves,
  weighted by sensitivities measured on the calibration text, with GPTQ error
  compensation on the grids of the matrices (``codecs.allocate``, ``codecs.gptq``);
  what ``compress --codec auto --bits B --calibration builtin`` writes.
- ``rtn-g32`` / ``rtn-g64`` / ``rtn-g128``: round-to-nearest int-k, symmetric,
  fp16 scale per group (our ``fixed`` codec), k = each requested bit count from 2 to 8.
- Fixed-rate with a rotation (issue 14), the same int-k grid and group scales
  after seeded random signs and an orthogonal transform along the rows:
  ``rft-fixed-gG`` (real-orthogonal Phi-RFT, our ``rft-fixed`` codec),
  ``dft-fixed-gG`` (the same with beta = sigma = 0: the plain DFT) and
  ``wht-fixed-gG`` (randomised Walsh-Hadamard, the ``wht-fixed`` codec), G = 32,
  64, 128; each runs once per seed (``seeds``). ``gptq-fixed-gG`` and
  ``gptq-{rft,dft,wht}-fixed-gG``: the same grids with GPTQ error compensation
  (``codecs.gptq_fixed``) on the matrices that have an input Gram matrix, in
  the rotated basis for the rotated ones (Gram ``T D H D T^T``); tensors
  without one (embeddings) are rounded to nearest.
- ``gguf-q8_0`` / ``gguf-q5_0`` / ``gguf-q4_1`` / ``gguf-q4_0``: the ``gguf``
  package's reference quantisers; each runs at the bit count its name carries.
- ``hqq-g64``: HQQ (half-quadratic, data-free), 1/2/3/4/8 bits, group 64.
- ``quanto``: optimum-quanto qint2 / qint4 (group 128, scale + shift) / qint8 (per row).

A peer whose package is missing, or whose format does not fit a tensor's
shape, is reported as not run, with the reason; nothing is substituted.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import outputs
from .codecs import SMALL_TENSOR, decode_tensor, encode_tensor
from .metrics import snr_db

__all__ = ["METHODS", "OUTPUT_FILES", "Workload", "check_outputs", "compare", "fixed_rate_summary",
           "fixed_rate_verdicts", "write_chart", "write_json"]

GROUPS = (32, 64, 128)
#: fixed-rate rotations: method prefix -> (codec, codec options besides group and seed)
ROTATIONS = {"rft-fixed": ("rft-fixed", {}), "dft-fixed": ("rft-fixed", {"beta": 0.0, "sigma": 0.0}),
             "wht-fixed": ("wht-fixed", {})}
ROTATED = tuple(f"{p}{r}-g{g}" for p in ("", "gptq-") for r in ROTATIONS for g in GROUPS)
GPTQ_FIXED = tuple(f"gptq-fixed-g{g}" for g in GROUPS)
OURS = ("auto", "direct", "rft-dense", "rft-spectral") + ROTATED + GPTQ_FIXED
PEERS = ("rtn-g32", "rtn-g64", "rtn-g128", "gguf-q8_0", "gguf-q5_0", "gguf-q4_1", "gguf-q4_0", "hqq-g64", "quanto")
METHODS = OURS + PEERS
#: what ``quantonium compare`` runs when no methods are named (the fixed-rate rotations are asked for by name
#: or as the group ``fixed-rate``)
DEFAULT_METHODS = ("auto", "direct", "rft-dense", "rft-spectral") + PEERS
#: named groups of methods
METHOD_GROUPS = {"fixed-rate": ("rtn-g32", "rtn-g64", "rtn-g128") + GPTQ_FIXED + ROTATED}
#: methods that run once per seed (their random signs)
SEEDED = ROTATED
#: GPTQ on the fixed grid: columns in order of decreasing input energy, static group scales
#: (chosen on MiniLM: bench/results/gptq_fixed_order.json)
GPTQ_ACT_ORDER = True
_GGUF_BITS = {"gguf-q8_0": 8, "gguf-q5_0": 5, "gguf-q4_1": 4, "gguf-q4_0": 4}


class NotRun(Exception):
    """A method that cannot run here (package missing, shape unsupported): reported, not faked."""


@dataclass
class Workload:
    """A model's tensors, its original (torch) model, the texts."""

    source: str
    tensors: dict[str, np.ndarray]
    model: Any
    tokenizer: Any
    text: str
    text_name: str
    calibration: str
    calibration_name: str
    max_tokens: int = 4096
    sentences: int = 256  # evaluation sentences (encoders)
    calibration_sentences: int = 1024  # calibration sentences (encoders)
    threads: int = 2
    model_id: str = ""
    _sens: dict | None = field(default=None, repr=False)
    _grams: dict | None = field(default=None, repr=False)
    _small_bits: dict[str, int] = field(default_factory=dict, repr=False)
    _reference: dict = field(default_factory=dict, repr=False)  # the original model's outputs, per batch

    @classmethod
    def load(cls, source: str, *, text: str | None = None, text_name: str | None = None,
             calibration: str | None = None, calibration_name: str | None = None, **kw) -> Workload:
        from .models.loader import load_source
        from .models.texts import calibration_text, default_text
        from .models import classify, open_source

        src = open_source(source)
        roles = classify(src.names, src.config, src.shared)
        names = [n for n in src.names if n not in roles.buffers and n not in roles.tied]
        tensors = {n: np.asarray(src.read(n)) for n in names}
        model, tok = load_source(source)
        if text is None:
            text_name, text = default_text()
        if calibration is None:
            calibration_name, calibration = calibration_text()
        return cls(source, tensors, model, tok, text, text_name or "user text", calibration,
                   calibration_name or "user calibration text", model_id=src.model_id, **kw)

    @property
    def large(self) -> dict[str, np.ndarray]:
        return {n: a for n, a in self.tensors.items() if a.ndim > 1 and a.size >= SMALL_TENSOR}

    @property
    def weights(self) -> int:
        return sum(a.size for a in self.tensors.values())

    def sensitivity(self, floor: float | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        from .calibration import DEFAULT_FLOOR

        floor = DEFAULT_FLOOR if floor is None else floor
        back = self._measured()
        return {back[m]: s.factors(floor) for m, s in self._sens.items() if back.get(m) in self.tensors}

    def _data(self):
        from .calibration import CalibrationData

        return CalibrationData.make(self.model, self.tokenizer, self.calibration, max_tokens=self.max_tokens,
                                    n_sentences=self.calibration_sentences)

    def _back(self, names) -> dict[str, str]:
        from .models.names import match_names

        prefix = getattr(self.model, "base_model_prefix", "") or ""
        return {m: n for n, m in match_names(list(names), list(self.tensors), prefix).items()}

    def _measured(self) -> dict[str, str]:
        from .calibration import measure

        if self._sens is None:
            self._sens = measure(self.model, self.tokenizer, data=self._data())
        return self._back(self._sens)

    def grams(self) -> dict[str, tuple[np.ndarray, bool]]:
        """Input Gram matrices (for GPTQ) by tensor name."""
        from .calibration import collect_grams

        if self._grams is None:
            self._grams = collect_grams(self.model, self._data())
        back = self._back(self._grams)
        return {back[m]: g for m, g in self._grams.items() if back.get(m) in self.tensors}


# --- methods: each returns (reconstructed large tensors, bits spent on them) ----------------

def _ours(codec: str) -> Callable:
    def run(wl: Workload, bits: float):
        if codec == "auto":
            from .codecs.allocate import encode_allocated

            # the allocation counts the small tensors (lossless, as here) inside the budget
            enc = encode_allocated(wl.tensors, bits, codec="auto", sensitivity=wl.sensitivity(), grams=wl.grams(),
                                   nthreads=wl.threads)
            enc = {n: e for n, e in enc.items() if n in wl.large}
        else:
            # the bpw target covers the payload; the small tensors' lossless bits are added on top,
            # so the target is corrected to make the total land on `bits`.
            enc = {n: encode_tensor(a, codec, bpw=_large_target(wl, bits), nthreads=wl.threads)
                   for n, a in wl.large.items()}
        rec = {n: decode_tensor(e.payload, e.codec, a.shape, "float32", nthreads=wl.threads) for n, e in enc.items()
               for a in (wl.tensors[n],)}
        return rec, sum(e.bits for e in enc.values()), {"codecs": sorted({e.codec for e in enc.values()})}
    return run


def _large_target(wl: Workload, bits: float) -> float:
    small = sum(_lossless_bits(wl).values())
    nl = sum(a.size for a in wl.large.values())
    return max((bits * wl.weights - small) / nl, 0.05)


def _lossless_bits(wl: Workload) -> dict[str, int]:
    cache = wl._small_bits
    if not cache:
        for n, a in wl.tensors.items():
            if n not in wl.large:
                cache[n] = encode_tensor(a, "lossless").bits
    return cache


def _rtn(group: int) -> Callable:
    def run(wl: Workload, bits: float):
        from .codecs.fixed import Fixed

        k = int(round(bits))
        if k != bits or not 2 <= k <= 8:
            raise NotRun(f"RTN runs at whole bit counts 2-8, not {bits:g}")
        f = Fixed(group_size=group)
        rec, total = {}, 0
        for n, a in wl.large.items():
            w = np.ascontiguousarray(a, np.float32)
            if w.shape[-1] % group:
                raise NotRun(f"rows of {n} ({w.shape[-1]}) are not a multiple of {group}")
            payload = f._encode_bits(w, k, wl.threads)
            rec[n] = decode_tensor(payload, "fixed", w.shape, "float32")
            total += 8 * len(payload)
        return rec, total, {"int_bits": k, "group": group}
    return run


def _fixed_rate(method: str) -> Callable:
    """RTN or GPTQ on the fixed int-k grid with fp16 group scales, after an optional seeded rotation of the rows."""
    gptq = method.startswith("gptq-")
    base, group = method.removeprefix("gptq-").rsplit("-g", 1)
    group = int(group)

    def run(wl: Workload, bits: float, seed: int = 0):
        from .codecs.fixed import Fixed
        from .codecs.gptq_fixed import compensate_fixed
        from .codecs.rotated import RftFixed, WhtFixed

        k = int(round(bits))
        if k != bits or not 2 <= k <= 8:
            raise NotRun(f"fixed-rate methods run at whole bit counts 2-8, not {bits:g}")
        if base == "fixed":
            coder = Fixed(group_size=group)
        else:
            codec, opts = ROTATIONS[base]
            coder = (RftFixed if codec == "rft-fixed" else WhtFixed)(group_size=group, seed=seed, **opts)
        grams = wl.grams() if gptq else {}
        rec, total, compensated = {}, 0, 0
        for n, a in wl.large.items():
            w = np.ascontiguousarray(a, np.float32)
            if w.shape[-1] % group:
                raise NotRun(f"rows of {n} ({w.shape[-1]}) are not a multiple of {group}")
            g = grams.get(n)
            if g is not None and w.ndim == 2:
                h, transposed = g
                if transposed:
                    raise NotRun(f"{n} is stored (in, out): GPTQ on the fixed grid needs its inputs along the rows")
                c = w if base == "fixed" else coder.rotate(w, wl.threads)
                hr = h if base == "fixed" else coder.rotate_gram(h, wl.threads)
                levels, scales = compensate_fixed(c, hr, k, group, act_order=GPTQ_ACT_ORDER)
                enc = coder.encode_levels(w, levels, scales, k, nthreads=wl.threads)
                compensated += 1
            elif base == "fixed":
                payload = coder._encode_bits(w, k, wl.threads)
                enc = None
                rec[n] = decode_tensor(payload, "fixed", w.shape, "float32")
                total += 8 * len(payload)
                continue
            else:
                enc = coder.encode_bits(w, k, nthreads=wl.threads)
            rec[n] = enc.recon if enc.recon is not None else decode_tensor(enc.payload, enc.codec, w.shape, "float32")
            total += enc.bits
        info = {"int_bits": k, "group": group, "transform": base}
        if base != "fixed":
            info["seed"] = seed
        if gptq:
            info.update(gptq_tensors=compensated, act_order=GPTQ_ACT_ORDER)
        return rec, total, info
    return run


def _gguf(method: str) -> Callable:
    def run(wl: Workload, bits: float):
        try:
            from gguf import GGMLQuantizationType, quants
        except ImportError as e:
            raise NotRun(f"gguf package not installed ({e})") from None
        if bits != _GGUF_BITS[method]:
            raise NotRun(f"{method} runs at {_GGUF_BITS[method]} bits")
        qt = getattr(GGMLQuantizationType, method.split("-")[1].upper())
        rec, total = {}, 0
        for n, a in wl.large.items():
            w = np.ascontiguousarray(a, np.float32).reshape(a.shape[0], -1)
            if w.shape[-1] % 32:
                raise NotRun(f"rows of {n} ({w.shape[-1]}) are not a multiple of the 32-weight block")
            q = quants.quantize(w, qt)
            total += 8 * q.nbytes
            rec[n] = quants.dequantize(q, qt).reshape(a.shape).astype(np.float32)
        return rec, total, {"type": qt.name}
    return run


def _hqq(wl: Workload, bits: float):
    try:
        import torch
        from hqq.core.quantize import Quantizer
    except ImportError as e:
        raise NotRun(f"hqq not installed ({e})") from None
    k = int(round(bits))
    if k != bits or k not in (1, 2, 3, 4, 8):
        raise NotRun(f"HQQ runs at 1, 2, 3, 4 or 8 bits, not {bits:g}")
    rec, total = {}, 0
    for n, a in wl.large.items():
        W = torch.from_numpy(np.ascontiguousarray(a, np.float32).reshape(a.shape[0], -1))
        if W.numel() % 64:
            raise NotRun(f"{n} has {W.numel()} values, not a multiple of the group of 64")
        Wq, meta = Quantizer.quantize(W, nbits=k, group_size=64, optimize=True, axis=1, device="cpu",
                                      compute_dtype=torch.float32)
        groups = meta["scale"].numel()
        total += 8 * Wq.numel() * Wq.element_size() + 2 * 16 * groups  # packed data + fp16 scale and zero
        rec[n] = Quantizer.dequantize(Wq, meta).reshape(a.shape).float().numpy()
    return rec, total, {"nbits": k, "group": 64, "optimize": True}


def _quanto(wl: Workload, bits: float):
    try:
        import torch
        from optimum.quanto import freeze, qint2, qint4, qint8, quantize
    except ImportError as e:
        raise NotRun(f"optimum-quanto not installed ({e})") from None
    qt = {2: qint2, 4: qint4, 8: qint8}.get(int(bits) if bits == int(bits) else -1)
    if qt is None:
        raise NotRun(f"quanto runs at 2, 4 or 8 bits (qint2/qint4/qint8), not {bits:g}")
    rec, total = {}, 0
    for n, a in wl.large.items():
        w = np.ascontiguousarray(a, np.float32).reshape(a.shape[0], -1)
        lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
        lin.weight.data.copy_(torch.from_numpy(w))
        m = torch.nn.Sequential(lin)
        quantize(m, weights=qt)
        freeze(m)
        qw = m[0].weight
        data = qw._data
        packed = getattr(data, "_data", data)
        total += 8 * packed.numel() * packed.element_size()
        for meta in ("_scale", "_shift"):
            if getattr(qw, meta, None) is not None:
                total += 16 * getattr(qw, meta).numel()
        rec[n] = qw.dequantize().float().reshape(a.shape).detach().numpy()
    return rec, total, {"weights": qt.name}


_RUN: dict[str, Callable] = {
    **{c: _ours(c) for c in OURS},
    "rtn-g32": _rtn(32), "rtn-g64": _rtn(64), "rtn-g128": _rtn(128),
    **{m: _fixed_rate(m) for m in ROTATED + GPTQ_FIXED},
    **{g: _gguf(g) for g in _GGUF_BITS},
    "hqq-g64": _hqq, "quanto": _quanto,
}


def _points(method: str, bits: Sequence[float]) -> list[float]:
    if method in _GGUF_BITS:
        return [float(_GGUF_BITS[method])] if _GGUF_BITS[method] in bits else []
    if method == "hqq-g64":
        return [b for b in bits if b in (1, 2, 3, 4, 8)]
    if method == "quanto":
        return [b for b in bits if b in (2, 4, 8)]
    return list(bits)


def compare(wl: Workload, bits: Sequence[float], methods: Sequence[str] = METHODS,
            progress: Callable[[str], None] | None = None, seeds: Sequence[int] = (0,),
            on_row: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Runs every method at every applicable bit count (the seeded ones once per seed); returns rows + what did not run.

    ``on_row`` is called with each row as soon as it is measured (long runs keep what they measured).
    """
    from .evaluate import compare_models, with_weights

    for m in methods:
        if m not in _RUN:
            raise ValueError(f"unknown method {m!r}; expected some of {', '.join(METHODS)}")
    small = _lossless_bits(wl)
    rows, not_run = [], []
    if not seeds:
        raise ValueError("give at least one seed")
    runs = [(m, b, sd) for m in methods for b in _points(m, bits) for sd in (seeds if m in SEEDED else (None,))]
    for m, b, seed in runs:
        t0 = time.perf_counter()
        try:
            rec, large_bits, info = _RUN[m](wl, b) if seed is None else _RUN[m](wl, b, seed)
        except NotRun as e:
            not_run.append({"method": m, "bits": b, "reason": str(e)} | ({} if seed is None else {"seed": seed}))
            continue
        t_enc = time.perf_counter() - t0
        total_bits = large_bits + sum(small.values())
        num = sum(float(np.sum((np.asarray(wl.tensors[n], np.float64) - rec[n]) ** 2)) for n in rec)
        den = sum(float(np.sum(np.asarray(wl.tensors[n], np.float64) ** 2)) for n in rec)
        fid = compare_models(wl.model, with_weights(wl.model, rec), wl.tokenizer, wl.text,
                             max_tokens=wl.max_tokens, sentences=wl.sentences, cache=wl._reference)
        row = {
            "method": m, "requested_bits": b, **({} if seed is None else {"seed": seed}),
            "bpw": total_bits / wl.weights, "file_bytes": math.ceil(total_bits / 8),
            "weight_snr_db": 10 * math.log10(den / num) if num > 0 else math.inf,
            "median_tensor_snr_db": float(np.median([snr_db(np.asarray(wl.tensors[n], np.float32), rec[n]) for n in rec])),
            "encode_seconds": t_enc, **{k: v for k, v in fid.items() if k != "kind"}, "info": info,
        }
        rows.append(row)
        if on_row:
            on_row(row)
        if progress:
            progress(format_row(row))
    kind = "causal-lm" if type(wl.model).__name__.endswith(("ForCausalLM", "LMHeadModel")) else "encoder"
    return {
        "source": wl.source, "kind": kind, "weights": wl.weights, "text": wl.text_name,
        "calibration": wl.calibration_name if any(m == "auto" or m.startswith("gptq-") for m in methods) else None,
        "seeds": list(seeds) if any(m in SEEDED for m in methods) else None,
        "bits_counting": "8 * all bytes a decoder needs (small tensors lossless for every method; peer scales/zeros at fp16)",
        "model_id": wl.model_id, "rows": rows, "not_run": not_run,
    }


def losses(res: dict, method: str = "auto", lo: float = 3.0, hi: float = 8.0) -> list[dict]:
    """Where ``method`` loses (issue 5's target): at each bit count, a peer run at the same bit
    count that spends the same or more bits (its scales on top) and does better.

    Better = higher mean cosine (encoders) or lower mean KL (causal LMs).
    """
    enc = res["kind"] == "encoder"
    score = (lambda r: r["mean_cosine"]) if enc else (lambda r: -r["mean_kl_nats"])
    ours = [r for r in res["rows"] if r["method"] == method and lo <= r["requested_bits"] <= hi]
    out = []
    for a in ours:
        for p in res["rows"]:
            same = p["requested_bits"] == a["requested_bits"] and p["bpw"] >= a["bpw"] - 1e-9
            if p["method"] in PEERS and same and score(p) > score(a):
                out.append({"ours": method, "ours_bpw": a["bpw"], "peer": p["method"], "peer_bpw": p["bpw"],
                            "metric": "mean_cosine" if enc else "mean_kl_nats",
                            "ours_value": score(a) if enc else -score(a), "peer_value": score(p) if enc else -score(p)})
    return out


def _label(r: dict) -> str:
    return r["method"] + (f" s{r['seed']}" if "seed" in r else "")


def _family(method: str) -> tuple[str, bool, int] | None:
    """(transform, gptq, group) of a fixed-rate method, None for others."""
    if method.startswith("rtn-g"):
        return "fixed", False, int(method[5:])
    if method in ROTATED or method in GPTQ_FIXED:
        gptq = method.startswith("gptq-")
        base, g = method.removeprefix("gptq-").rsplit("-g", 1)
        return base, gptq, int(g)
    return None


def fixed_rate_summary(res: dict) -> list[dict]:
    """Fixed-rate methods grouped over seeds: per (transform, gptq, group, bits) the mean, spread and range."""
    enc = res["kind"] == "encoder"
    keys = ("mean_cosine", "min_cosine") if enc else ("perplexity_change_pct", "mean_kl_nats", "top1_agreement")
    groups: dict[tuple, list[dict]] = {}
    for r in res["rows"]:
        f = _family(r["method"])
        if f is not None:
            groups.setdefault((*f, r["requested_bits"]), []).append(r)
    out = []
    for (t, gptq, g, b), rs in sorted(groups.items(), key=lambda kv: (kv[0][3], kv[0][2], kv[0][1], kv[0][0])):
        row = {"transform": t, "gptq": gptq, "group": g, "bits": b, "seeds": len(rs),
               "bpw": float(np.mean([r["bpw"] for r in rs])), "weight_snr_db": float(np.mean([r["weight_snr_db"] for r in rs]))}
        for k in keys:
            v = np.array([r[k] for r in rs], np.float64)
            row[k] = float(v.mean())
            row[k + "_std"] = float(v.std(ddof=1)) if v.size > 1 else 0.0
            row[k + "_range"] = [float(v.min()), float(v.max())]
        out.append(row)
    return out


def fixed_rate_verdicts(res: dict) -> list[dict]:
    """Issue 14's comparisons at each (gptq, group, bits): rft-fixed against fixed (RTN or GPTQ, same grid, same
    bpw up to header bytes), against the randomised Hadamard and against the plain DFT, on the main metric
    (mean cosine for encoders, mean KL for causal LMs), with the spread over seeds."""
    enc = res["kind"] == "encoder"
    key = "mean_cosine" if enc else "mean_kl_nats"
    summ = {(r["transform"], r["gptq"], r["group"], r["bits"]): r for r in fixed_rate_summary(res)}
    out = []
    for (t, gptq, g, b), r in summ.items():
        if t != "rft-fixed":
            continue
        v = {"gptq": gptq, "group": g, "bits": b, "metric": key, "rft": r[key], "rft_std": r[key + "_std"],
             "rft_seeds": r["seeds"], "rft_bpw": r["bpw"]}
        for other in ("fixed", "wht-fixed", "dft-fixed"):
            o = summ.get((other, gptq, g, b))
            if o is not None:
                v[other] = o[key]
                v[other + "_std"] = o[key + "_std"]
                v[other + "_seeds"] = o["seeds"]
                v[other + "_bpw"] = o["bpw"]
                # positive: rft-fixed is better (higher cosine, lower KL); its standard error from the two spreads
                v["rft_gain_vs_" + other] = (r[key] - o[key]) if enc else (o[key] - r[key])
                v["rft_gain_se_vs_" + other] = math.sqrt(r[key + "_std"] ** 2 / r["seeds"] + o[key + "_std"] ** 2 / o["seeds"])
        out.append(v)
    return out


def _pm(mean: float, std: float, n: int, fmt: str) -> str:
    return f"{mean:{fmt}} ± {std:{fmt}}" if n > 1 else f"{mean:{fmt}}"


def fixed_rate_tables(res: dict) -> str:
    summ = fixed_rate_summary(res)
    if not summ:
        return ""
    enc = res["kind"] == "encoder"
    lines = ["\nFixed-rate methods, over seeds (mean ± sample standard deviation; one value when unseeded):", ""]
    if enc:
        lines += ["| bits | group | GPTQ | transform | seeds | bpw | weight SNR dB | mean cos | min cos |", "|---|---|---|---|---|---|---|---|---|"]
    else:
        lines += ["| bits | group | GPTQ | transform | seeds | bpw | weight SNR dB | ppl change % | KL nats | top-1 |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summ:
        head = f"| {r['bits']:g} | {r['group']} | {'yes' if r['gptq'] else 'no'} | {r['transform']} | {r['seeds']} | {r['bpw']:.3f} | {r['weight_snr_db']:.2f} |"
        if enc:
            lines.append(head + f" {_pm(r['mean_cosine'], r['mean_cosine_std'], r['seeds'], '.5f')} | "
                         f"{_pm(r['min_cosine'], r['min_cosine_std'], r['seeds'], '.4f')} |")
        else:
            lines.append(head + f" {_pm(r['perplexity_change_pct'], r['perplexity_change_pct_std'], r['seeds'], '+.2f')} | "
                         f"{_pm(r['mean_kl_nats'], r['mean_kl_nats_std'], r['seeds'], '.4f')} | "
                         f"{_pm(100 * r['top1_agreement'], 100 * r['top1_agreement_std'], r['seeds'], '.1f')}% |")
    ver = fixed_rate_verdicts(res)
    if ver:
        m = "mean cosine" if enc else "mean KL (nats)"
        lines += ["", f"rft-fixed against the same grid without rotation, with the randomised Hadamard and with the plain DFT "
                  f"({m}; gain > 0: rft-fixed better; ± the standard error of the difference of the means over seeds, "
                  f"from the two sample spreads; * where |gain| > 2 standard errors):", "",
                  "| bits | group | GPTQ | rft-fixed | gain vs fixed | gain vs wht-fixed | gain vs dft-fixed |", "|---|---|---|---|---|---|---|"]
        for v in ver:
            cells = []
            for o in ("fixed", "wht-fixed", "dft-fixed"):
                if "rft_gain_vs_" + o in v:
                    g, se = v["rft_gain_vs_" + o], v["rft_gain_se_vs_" + o]
                    star = "*" if se > 0 and abs(g) > 2 * se else ""
                    cells.append(f"{g:+.5f} ± {se:.5f}{star}" if se > 0 else f"{g:+.5f}")
                else:
                    cells.append("-")
            lines.append(f"| {v['bits']:g} | {v['group']} | {'yes' if v['gptq'] else 'no'} | "
                         f"{_pm(v['rft'], v['rft_std'], v['rft_seeds'], '.5f')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_row(r: dict) -> str:
    if "mean_cosine" in r:
        fid = f"cos mean {r['mean_cosine']:.4f} min {r['min_cosine']:.4f}"
    else:
        fid = f"ppl {r['perplexity_compressed']:.2f} ({r['perplexity_change_pct']:+.2f}%) KL {r['mean_kl_nats']:.4f} top1 {100 * r['top1_agreement']:.1f}%"
    return (f"{_label(r):<22} {r['bpw']:6.3f} bpw {r['file_bytes'] / 2**20:8.2f} MiB  SNR {r['weight_snr_db']:6.2f} dB  "
            f"{fid}  {r['encode_seconds']:6.1f} s")


def table(res: dict) -> str:
    enc = res["kind"] == "encoder"
    head = ("| method | bits asked | bpw | file MiB | weight SNR dB | "
            + ("mean cos | min cos |" if enc else "ppl | ppl change | KL nats | top-1 |") + " encode s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in sorted(res["rows"], key=lambda r: (r["requested_bits"], r["bpw"])):
        fid = (f"{r['mean_cosine']:.4f} | {r['min_cosine']:.4f}" if enc else
               f"{r['perplexity_compressed']:.2f} | {r['perplexity_change_pct']:+.2f}% | {r['mean_kl_nats']:.4f} | {100 * r['top1_agreement']:.1f}%")
        lines.append(f"| {_label(r)} | {r['requested_bits']:g} | {r['bpw']:.3f} | {r['file_bytes'] / 2**20:.2f} | "
                     f"{r['weight_snr_db']:.2f} | {fid} | {r['encode_seconds']:.1f} |")
    for n in res["not_run"]:
        lines.append(f"\nnot run: {n['method']} at {n['bits']:g} bits: {n['reason']}")
    extra = fixed_rate_tables(res)
    if extra:
        lines.append(extra)
    if any(r["method"] == "auto" for r in res["rows"]):
        lost = losses(res)
        lines.append("\nauto vs each peer run at the same bit count (spending the same or more bits), 3-8 bits: "
                     + ("auto is at least as good everywhere." if not lost else "auto loses to:"))
        for x in lost:
            lines.append(f"- {x['peer']} at {x['peer_bpw']:.3f} bpw: {x['metric']} {x['peer_value']:.5f} vs auto's "
                         f"{x['ours_value']:.5f} at {x['ours_bpw']:.3f} bpw")
    return "\n".join(lines)


def write_chart(res: dict, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    enc = res["kind"] == "encoder"
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for m in dict.fromkeys(r["method"] for r in res["rows"]):
        per_bits: dict[float, list] = {}  # seeded methods: the mean over seeds
        for r in res["rows"]:
            if r["method"] == m:
                per_bits.setdefault(r["requested_bits"], []).append((r["bpw"], (1 - r["mean_cosine"]) if enc else r["mean_kl_nats"]))
        pts = sorted((float(np.mean([p[0] for p in v])), float(np.mean([p[1] for p in v]))) for v in per_bits.values())
        style = "-o" if m in OURS else "--s"
        ax.plot([p[0] for p in pts], [max(p[1], 1e-7) for p in pts], style, label=m, ms=4)
    ax.set_yscale("log")
    ax.set_xlabel("bits per weight (whole model, everything counted)")
    ax.set_ylabel("1 - mean cosine (lower is better)" if enc else "mean KL(original || compressed), nats")
    ax.set_title(f"{res.get('model_id') or Path(res['source']).name}: rate-distortion, ours (solid) vs peers (dashed)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with outputs.AtomicFile(path) as f:
        fig.savefig(f.file, format="png")
    plt.close(fig)


def write_json(res: dict, path: str | Path) -> None:
    outputs.write_text(path, json.dumps(res, indent=1, default=float))


#: The files ``compare -o DIR`` writes into DIR.
OUTPUT_FILES = ("compare.md", "compare.json", "compare_rd.png", "compare.partial.jsonl")


def check_outputs(outdir: str | Path, inputs: list[str | Path]) -> None:
    """Checks the output folder and the files to be written there before the (long) comparison."""
    d = Path(outdir)
    if d.exists() and not d.is_dir():
        raise outputs.OutputError(f"{d}: exists and is not a folder")
    for name in OUTPUT_FILES:
        outputs.check_file(d / name, inputs=inputs)
