#!/usr/bin/env python3
"""Native Phi-RFT vs the numpy reference vs raw FFTW, measured in one run.

For each precision (complex64 "f32", complex128 "f64"), length n and thread
count, a batch of complex rows holding >= 4M points is transformed by:

  native-fwd   quantonium_native.rft_forward (out= preallocated)
  native-inv   quantonium_native.rft_inverse
  fftw         raw FFTW c2c, one out-of-place plan over the whole batch
  fftw-blocked raw FFTW c2c in the same cache-sized chunks as the RFT
  numpy-ref    quantonium.reference.rft_forward (numpy, single thread)

Methods are timed in interleaved rounds (so drifts in machine load hit all of
them alike) and each is summarised by its median. Ratios are taken between
medians of the same run. Throughput is in points/s; GFLOP/s uses the usual
5 n log2(n) per complex transform.

    python bench/compare_numpy.py                  # the full table
    python bench/compare_numpy.py --quick          # n=1024 only, fewer rounds
    python bench/compare_numpy.py --json out.json  # also write JSON

Targets (issue 2, this machine, 1 thread, f32, n=1024): native >= 0.85x the
throughput of raw FFTW c2c (the faster of the two floors), >= 5x the numpy
reference. --check exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import quantonium_native as qn
from quantonium import reference as ref
from quantonium_native import _core

POINTS = 1 << 22
DTYPES = {"f32": np.complex64, "f64": np.complex128}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(n: int, prec: str, nthreads: int, rounds: int, rng: np.random.Generator) -> dict:
    rows = max(1, POINTS // n)
    dt = DTYPES[prec]
    x = (rng.standard_normal((rows, n)) + 1j * rng.standard_normal((rows, n))).astype(dt)
    out = np.empty_like(x)
    methods = {
        "native-fwd": lambda: qn.rft_forward(x, out=out, nthreads=nthreads),
        "native-inv": lambda: qn.rft_inverse(x, out=out, nthreads=nthreads),
        "fftw": lambda: _core._fftw_c2c(x, out=out, nthreads=nthreads),
        "fftw-blocked": lambda: _core._fftw_c2c(x, out=out, nthreads=nthreads, blocked=True),
        "numpy-ref": lambda: ref.rft_forward(x),
    }
    for f in methods.values():  # plan, allocate, warm caches
        f()
    times: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(rounds):
        for name, f in methods.items():
            if name == "numpy-ref" and len(times[name]) >= max(3, rounds // 3):
                continue  # the reference is slow and steady: fewer rounds
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    flops = 5.0 * n * math.log2(n) * rows if n > 1 else 0.0
    res = {
        "n": n,
        "precision": prec,
        "nthreads": nthreads,
        "rows": rows,
        "points": rows * n,
        "median_s": med,
        "rounds": {k: len(v) for k, v in times.items()},
        "points_per_s": {k: rows * n / t for k, t in med.items()},
        "gflops": {k: flops / t / 1e9 for k, t in med.items()},
    }
    floor = min(med["fftw"], med["fftw-blocked"])
    res["ratio_vs_fftw"] = floor / med["native-fwd"]
    res["ratio_inv_vs_fftw"] = floor / med["native-inv"]
    res["ratio_vs_fftw_one_plan"] = med["fftw"] / med["native-fwd"]
    res["speedup_vs_numpy"] = med["numpy-ref"] / med["native-fwd"]
    return res


def table(results: list[dict]) -> str:
    head = (
        "| prec | n | threads | native fwd (Mpt/s) | native inv (Mpt/s) | FFTW one plan (Mpt/s) | "
        "FFTW blocked (Mpt/s) | numpy ref (Mpt/s) | fwd / best FFTW | inv / best FFTW | fwd / numpy |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in results:
        p = r["points_per_s"]
        lines.append(
            f"| {r['precision']} | {r['n']} | {r['nthreads']} | {p['native-fwd'] / 1e6:.0f} | "
            f"{p['native-inv'] / 1e6:.0f} | {p['fftw'] / 1e6:.0f} | {p['fftw-blocked'] / 1e6:.0f} | "
            f"{p['numpy-ref'] / 1e6:.0f} | {r['ratio_vs_fftw']:.2f}x | {r['ratio_inv_vs_fftw']:.2f}x | "
            f"{r['speedup_vs_numpy']:.1f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="256,1024,4096,8192", help="comma-separated lengths")
    ap.add_argument("--precisions", default="f32,f64", help="f32 and/or f64")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--rounds", type=int, default=15, help="timing rounds per method (median)")
    ap.add_argument("--quick", action="store_true", help="n=1024, both precisions, 1 thread, 7 rounds")
    ap.add_argument("--json", type=Path, help="write the results as JSON here")
    ap.add_argument("--check", action="store_true", help="exit 1 if the issue's targets are missed")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.threads, args.rounds = "1024", "1", 7

    info = qn.build_info()
    env = {
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, {platform.machine()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        **{k: info[k] for k in ("version", "fftw_version", "simd_selected", "compiler", "planner_effort")},
    }
    print("# " + ", ".join(f"{k}={v}" for k, v in env.items()), file=sys.stderr)
    rng = np.random.default_rng(0)
    results = []
    for prec in args.precisions.split(","):
        for n in (int(s) for s in args.sizes.split(",")):
            for nt in (int(s) for s in args.threads.split(",")):
                print(f"# measuring {prec} n={n} threads={nt}", file=sys.stderr)
                results.append(measure(n, prec, nt, args.rounds, rng))
    print(table(results))

    ok = True
    target = [r for r in results if r["precision"] == "f32" and r["n"] == 1024 and r["nthreads"] == 1]
    for r in target:
        t1 = r["ratio_vs_fftw"] >= 0.85
        t2 = r["speedup_vs_numpy"] >= 5.0
        ok &= t1 and t2
        print(
            f"\ntarget f32 n=1024 1 thread: native / best raw FFTW = {r['ratio_vs_fftw']:.2f}x "
            f"(>= 0.85x: {'met' if t1 else 'MISSED'}); native / numpy reference = "
            f"{r['speedup_vs_numpy']:.1f}x (>= 5x: {'met' if t2 else 'MISSED'})"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps({"environment": env, "results": results}, indent=2) + "\n")
        tmp.replace(args.json)
        print(f"# wrote {args.json}", file=sys.stderr)
    return 0 if (ok or not args.check) else 1


if __name__ == "__main__":
    sys.exit(main())
