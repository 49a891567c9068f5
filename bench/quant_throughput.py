#!/usr/bin/env python3
"""Quantiser and entropy-stage throughput: native vs the numpy reference, one run.

    .venv/bin/python bench/quant_throughput.py [--mib 128] [--json bench/results/quant_throughput.json]

Quantise + dequantise throughput is in GB/s of float32 source (both passes
timed, one thread unless --threads); the entropy stage in MB/s of symbols.
Targets (issue 3, this machine): native >= 1 GB/s per core and >= 5x the
reference. The rANS coder's size is compared with the empirical order-0
entropy of the symbols, and with zstd (level 3 and 19) on the same symbols.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import quantonium_native as qn
from quantonium import quant_reference as R


def median_time(f, rounds: int) -> float:
    f()
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=128, help="float32 source size in MiB")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    n = args.mib * (1 << 20) // 4
    x = (rng.standard_normal(n) * 0.03).astype(np.float32)
    gb = x.nbytes / 1e9
    rows = []

    # uniform quantisation, one step per row of 1024
    g = 1024
    steps = np.full(n // g, 0.01, np.float32)
    q = qn.quantize_uniform(x, steps, group_size=g)
    nat = median_time(lambda: qn.quantize_uniform(x, steps, group_size=g, nthreads=args.threads), args.rounds) + median_time(
        lambda: qn.dequantize_uniform(q, steps, group_size=g, nthreads=args.threads), args.rounds)
    ref = median_time(lambda: R.quantize_uniform(x, steps, g), 2) + median_time(lambda: R.dequantize_uniform(q, steps, g), 2)
    rows.append({"stage": "uniform q+dq (int8, g=1024)", "native_GBps": gb / nat, "reference_GBps": gb / ref, "speedup": ref / nat})

    # fixed-rate RTN int4, g128, packed
    p, s, m = qn.quantize_fixed(x, 4, group_size=128)
    nat = median_time(lambda: qn.quantize_fixed(x, 4, group_size=128, nthreads=args.threads), args.rounds) + median_time(
        lambda: qn.dequantize_fixed(p, s, m, bits=4, group_size=128, count=n, nthreads=args.threads), args.rounds)
    ref = median_time(lambda: R.quantize_fixed(x, 4, 128), 1) + median_time(lambda: R.dequantize_fixed(p, s, m, 4, 128, n), 1)
    rows.append({"stage": "fixed int4 g128 q+dq (packed)", "native_GBps": gb / nat, "reference_GBps": gb / ref, "speedup": ref / nat})

    # entropy stage on the uniform symbols
    sym = q[: min(n, 16 << 20)]
    enc = qn.rans_encode(sym)
    te = median_time(lambda: qn.rans_encode(sym), args.rounds)
    td = median_time(lambda: qn.rans_decode(enc, sym.size, "int8"), args.rounds)
    h = R.entropy_order0(sym)
    ent = {
        "symbols": int(sym.size),
        "order0_entropy_bits": h,
        "rans_bits": 8 * len(enc) / sym.size,
        "rans_overhead_pct": 100 * (8 * len(enc) / sym.size / h - 1),
        "rans_encode_MBps": sym.size / te / 1e6,
        "rans_decode_MBps": sym.size / td / 1e6,
    }
    try:
        import zstandard

        for level in (3, 19):
            c = zstandard.ZstdCompressor(level=level).compress(sym.tobytes())
            ent[f"zstd{level}_bits"] = 8 * len(c) / sym.size
    except ImportError:
        print("# zstandard is not installed: zstd columns skipped", file=sys.stderr)

    print(f"# {n} float32 values ({args.mib} MiB), {args.threads} thread(s)")
    print("| stage | native (GB/s) | numpy reference (GB/s) | native / reference |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['stage']} | {r['native_GBps']:.2f} | {r['reference_GBps']:.3f} | {r['speedup']:.1f}x |")
    print()
    print("| entropy stage | bits/symbol | vs order-0 entropy | MB/s |")
    print("|---|---|---|---|")
    print(f"| order-0 entropy (bound) | {h:.4f} | | |")
    print(f"| rANS encode / decode | {ent['rans_bits']:.4f} | +{ent['rans_overhead_pct']:.3f}% | {ent['rans_encode_MBps']:.0f} / {ent['rans_decode_MBps']:.0f} |")
    for level in (3, 19):
        if f"zstd{level}_bits" in ent:
            b = ent[f"zstd{level}_bits"]
            print(f"| zstd level {level} | {b:.4f} | +{100 * (b / h - 1):.2f}% | |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"threads": args.threads, "values": n, "throughput": rows, "entropy": ent}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
