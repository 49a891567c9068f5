"""Decode speed of the fixed-rate formats (issue 14: "decode is one dequantise plus one transform per row").

``fixed``, ``rft-fixed`` and ``wht-fixed`` payloads (4 bits, groups of 64) of float32 tensors at SmolLM2's
shapes, decoded by ``decode_tensor`` in 15 interleaved rounds (fixed, rft-fixed, wht-fixed, fixed, ...);
medians, GB/s of float32 output, one thread and two.

    .venv/bin/python bench/fixed_rate_decode.py --json bench/results/fixed_rate_decode.json --md bench/results/fixed_rate_decode.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

import quantonium_native as qn
from quantonium.codecs import decode_tensor, encode_tensor

SHAPES = [(1536, 576), (576, 1536), (49152, 576)]
CODECS = ("fixed", "rft-fixed", "wht-fixed")


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--json", required=True)
    p.add_argument("--md")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    for shape in SHAPES:
        a = (rng.standard_normal(shape) * 0.02).astype(np.float32)
        pay = {c: encode_tensor(a, c, bpw=4.3, options={"group_size": 64}).payload for c in CODECS}
        for threads in (1, 2):
            times = {c: [] for c in CODECS}
            for _ in range(args.rounds):
                for c in CODECS:
                    t = time.perf_counter()
                    decode_tensor(pay[c], c, shape, "float32", nthreads=threads)
                    times[c].append(time.perf_counter() - t)
            med = {c: statistics.median(v) for c, v in times.items()}
            row = {"shape": list(shape), "threads": threads,
                   **{f"{c}_gbps": a.nbytes / med[c] / 1e9 for c in CODECS},
                   **{f"{c}_vs_fixed": med[c] / med["fixed"] for c in CODECS if c != "fixed"}}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    info = dict(qn.build_info())
    out = {"command": " ".join(sys.argv), "machine": platform.machine(), "cpus": os.cpu_count(),
           "load_average": os.getloadavg(), "simd": info.get("simd_selected"), "rounds": args.rounds, "rows": rows}
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    lines = ["| shape | threads | fixed GB/s | rft-fixed GB/s | wht-fixed GB/s | rft-fixed time / fixed | wht-fixed time / fixed |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['shape'][0]}x{r['shape'][1]} | {r['threads']} | {r['fixed_gbps']:.2f} | {r['rft-fixed_gbps']:.2f} | "
                     f"{r['wht-fixed_gbps']:.2f} | {r['rft-fixed_vs_fixed']:.2f}x | {r['wht-fixed_vs_fixed']:.2f}x |")
    md = "\n".join(lines)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
