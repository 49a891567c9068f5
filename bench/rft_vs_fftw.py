#!/usr/bin/env python3
"""Native Phi-RFT vs raw FFTW (pyFFTW and Debian's) vs the numpy reference, in one run.

For each precision (complex64 "f32", complex128 "f64"), length n and thread
count, a batch of C-contiguous complex rows holding 4M points (rows = 2^22 / n)
is transformed along its last axis by:

  rft-fwd        quantonium_native.rft_forward(x, out=y)        (out preallocated)
  rft-inv        quantonium_native.rft_inverse(x, out=y)
  rft-fwd-alloc  quantonium_native.rft_forward(x)               (allocates its output)
  rft-inv-alloc  quantonium_native.rft_inverse(x)
  pyfftw-fwd     pyFFTW's FFTW object, forward, .execute()      (the independent floor)
  pyfftw-inv     the same, FFTW_BACKWARD (unnormalised)
  debian-fwd     Debian's libfftw3(f) through ctypes, planned exactly as pyFFTW plans
  debian-inv     the same, backward
  qn-c2c         quantonium_native._fftw_c2c(x, out=y): our own raw FFTW call
  numpy-ref      quantonium.reference.rft_forward(x) (numpy.fft, one thread, fewer rounds)

Every floor is planned the way pyFFTW's FFTW object plans by default: arrays
from pyfftw.empty_aligned, out of place, FFTW_MEASURE (+ FFTW_PRESERVE_INPUT,
which pyFFTW adds), one plan over the whole batch (howmany = rows), `threads`
threads. Every method reads the same input array and writes the same output
array. pyFFTW's wheels ship their own FFTW build; ours links Debian's: the
library each side loaded (path and fftw_version string) is recorded, and the
debian-* rows time Debian's library planned as pyFFTW plans, so that the
library and our code can be told apart.

Methods are timed in interleaved rounds (so drifts in machine load hit all of
them alike; 15 rounds, medians); ratios are taken between medians of the same
run. Throughput is in points/s; GFLOP/s uses 5 n log2(n) per complex
transform. Every output is checked against numpy.fft before timing. Process
CPU time is recorded next to wall time: at 1 thread its ratio is a cross-check
that other tenants of a shared machine disturb less.

    python bench/rft_vs_fftw.py                          # the full table
    python bench/rft_vs_fftw.py --quick                  # f32, n=1024, 1 thread
    python bench/rft_vs_fftw.py --json bench/results/rft_vs_fftw.json --md bench/results/rft_vs_fftw.md

Targets (issue 9, this machine, f32, n=1024, 1 thread, out= given): the
Phi-RFT forward >= 0.9x the throughput of pyFFTW's raw plan; (issue 2) >= 5x
the numpy reference. --check exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

try:
    import pyfftw
except ImportError:  # a clear message, never a silent skip of the floor
    sys.exit("rft_vs_fftw: needs pyFFTW (pip install pyfftw==0.15.1, in the 'bench' extra)")

import quantonium_native as qn
from quantonium import reference as ref
from quantonium_native import _core

POINTS = 1 << 22
DTYPES = {"f32": np.complex64, "f64": np.complex128}
FFTW_FORWARD, FFTW_BACKWARD = -1, 1
FFTW_MEASURE, FFTW_PRESERVE_INPUT = 0, 1 << 4
TARGET_VS_PYFFTW = 0.9
TARGET_VS_NUMPY = 5.0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loaded_libraries(stem: str) -> list[str]:
    """Paths of the mapped shared objects whose file name starts with `stem`."""
    paths = set()
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 6 and os.path.basename(parts[5]).startswith(stem):
            paths.add(parts[5])
    return sorted(paths)


def fftw_version_of(path: str, prefix: str) -> str:
    """The `<prefix>_version` string of an FFTW library file (e.g. 'fftw-3.3.10-sse2-avx')."""
    lib = ctypes.CDLL(path)
    return (ctypes.c_char * 128).in_dll(lib, f"{prefix}_version").value.decode()  # a char array


class DebianFftw:
    """Debian's libfftw3 / libfftw3f (the library quantonium_native links) through ctypes.

    Independent of our code: the plan is made with the same call pyFFTW makes
    (guru interface, one dimension of length n, howmany = rows, FFTW_MEASURE |
    FFTW_PRESERVE_INPUT) on the same aligned arrays, and executed with
    fftw_execute (ctypes releases the GIL around the call).
    """

    class IoDim(ctypes.Structure):
        _fields_ = [("n", ctypes.c_int), ("is", ctypes.c_int), ("os", ctypes.c_int)]

    def __init__(self, prec: str):
        self.prefix = "fftwf" if prec == "f32" else "fftw"
        base = "libfftw3f" if prec == "f32" else "libfftw3"
        self.lib = ctypes.CDLL(f"{base}.so.3")
        self.threads = ctypes.CDLL(f"{base}_threads.so.3")
        self._fn("init_threads", ctypes.c_int, [], self.threads)()
        self.plan_with_nthreads = self._fn("plan_with_nthreads", None, [ctypes.c_int], self.threads)
        self.plan_guru = self._fn(
            "plan_guru_dft", ctypes.c_void_p,
            [ctypes.c_int, ctypes.POINTER(self.IoDim), ctypes.c_int, ctypes.POINTER(self.IoDim),
             ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint], self.lib)
        self.execute = self._fn("execute", None, [ctypes.c_void_p], self.lib)
        self.destroy = self._fn("destroy_plan", None, [ctypes.c_void_p], self.lib)
        self.version = (ctypes.c_char * 128).in_dll(self.lib, f"{self.prefix}_version").value.decode()

    def _fn(self, name, restype, argtypes, lib):
        f = getattr(lib, f"{self.prefix}_{name}")
        f.restype, f.argtypes = restype, argtypes
        return f

    def plan(self, x: np.ndarray, y: np.ndarray, sign: int, nthreads: int) -> int:
        rows, n = x.shape
        self.plan_with_nthreads(nthreads)
        dims = self.IoDim(n, 1, 1)
        many = self.IoDim(rows, n, n)
        p = self.plan_guru(1, ctypes.byref(dims), 1, ctypes.byref(many), x.ctypes.data,
                           y.ctypes.data, sign, FFTW_MEASURE | FFTW_PRESERVE_INPUT)
        # Leave FFTW's global thread count as quantonium_native expects to find it.
        self.plan_with_nthreads(1)
        if not p:
            raise RuntimeError(f"{self.prefix}_plan_guru_dft failed for {rows} x {n}")
        return p


def check(name: str, got: np.ndarray, want: np.ndarray, tol: float) -> None:
    err = float(np.linalg.norm(got - want) / np.linalg.norm(want))
    if not err < tol:
        raise SystemExit(f"rft_vs_fftw: {name} is wrong (relative error {err:.2e} > {tol:.0e})")


def measure(n: int, prec: str, nthreads: int, rounds: int, rng: np.random.Generator,
            debian: DebianFftw) -> dict:
    rows = max(1, POINTS // n)
    dt = DTYPES[prec]
    x = pyfftw.empty_aligned((rows, n), dtype=dt)
    y = pyfftw.empty_aligned((rows, n), dtype=dt)
    # Planning with FFTW_MEASURE overwrites the arrays: plan first, then fill.
    flags = ("FFTW_MEASURE",)
    pf = pyfftw.FFTW(x, y, axes=(-1,), direction="FFTW_FORWARD", flags=flags, threads=nthreads)
    pb = pyfftw.FFTW(x, y, axes=(-1,), direction="FFTW_BACKWARD", flags=flags, threads=nthreads,
                     normalise_idft=False)
    df = debian.plan(x, y, FFTW_FORWARD, nthreads)
    db = debian.plan(x, y, FFTW_BACKWARD, nthreads)
    x[:] = rng.standard_normal((rows, n)) + 1j * rng.standard_normal((rows, n))
    x0 = x.copy()
    methods = {
        "rft-fwd": lambda: qn.rft_forward(x, out=y, nthreads=nthreads),
        "rft-inv": lambda: qn.rft_inverse(x, out=y, nthreads=nthreads),
        "rft-fwd-alloc": lambda: qn.rft_forward(x, nthreads=nthreads),
        "rft-inv-alloc": lambda: qn.rft_inverse(x, nthreads=nthreads),
        "pyfftw-fwd": pf.execute,
        "pyfftw-inv": pb.execute,
        "debian-fwd": lambda: debian.execute(df),
        "debian-inv": lambda: debian.execute(db),
        "qn-c2c": lambda: _core._fftw_c2c(x, out=y, nthreads=nthreads),
        "numpy-ref": lambda: ref.rft_forward(x),
    }
    try:
        # Correctness first (and plans, allocations, warm caches): on a few rows.
        tol = 1e-4 if prec == "f32" else 1e-11
        k = min(rows, 8)
        fft = np.fft.fft(x0[:k].astype(np.complex128), axis=-1)
        ifft = np.fft.ifft(x0[:k].astype(np.complex128), axis=-1) * n
        expect_rft = ref.rft_forward(x0[:k])
        expect_irft = ref.rft_inverse(x0[:k])
        wants = {
            "rft-fwd": expect_rft, "rft-inv": expect_irft, "pyfftw-fwd": fft, "pyfftw-inv": ifft,
            "debian-fwd": fft, "debian-inv": ifft, "qn-c2c": fft,
        }
        for name, f in methods.items():
            res = f()
            got = y if res is None or name.startswith(("pyfftw", "debian")) else res
            if name in wants:
                check(name, got[:k], wants[name], tol)
            elif name.endswith("-alloc"):
                check(name, got[:k], expect_rft if "fwd" in name else expect_irft, tol)
            if not np.array_equal(x, x0):
                raise SystemExit(f"rft_vs_fftw: {name} changed its input")

        times: dict[str, list[float]] = {k: [] for k in methods}
        cpu: dict[str, list[float]] = {k: [] for k in methods}
        for _ in range(rounds):
            for name, f in methods.items():
                if name == "numpy-ref" and len(times[name]) >= max(3, rounds // 3):
                    continue  # the reference is slow and steady: fewer rounds
                c0, t0 = time.process_time(), time.perf_counter()
                f()
                t1, c1 = time.perf_counter(), time.process_time()
                times[name].append(t1 - t0)
                cpu[name].append(c1 - c0)
    finally:
        debian.destroy(df)
        debian.destroy(db)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    flops = 5.0 * n * math.log2(n) * rows if n > 1 else 0.0
    res = {
        "n": n,
        "precision": prec,
        "nthreads": nthreads,
        "rows": rows,
        "points": rows * n,
        "median_s": med,
        "median_cpu_s": med_cpu,
        "rounds": {k: len(v) for k, v in times.items()},
        "points_per_s": {k: rows * n / t for k, t in med.items()},
        "gflops": {k: flops / t / 1e9 for k, t in med.items()},
        "ratios": {
            "fwd_vs_pyfftw": med["pyfftw-fwd"] / med["rft-fwd"],
            "inv_vs_pyfftw": med["pyfftw-inv"] / med["rft-inv"],
            "fwd_alloc_vs_pyfftw": med["pyfftw-fwd"] / med["rft-fwd-alloc"],
            "inv_alloc_vs_pyfftw": med["pyfftw-inv"] / med["rft-inv-alloc"],
            "fwd_vs_debian": med["debian-fwd"] / med["rft-fwd"],
            "inv_vs_debian": med["debian-inv"] / med["rft-inv"],
            "debian_vs_pyfftw": med["pyfftw-fwd"] / med["debian-fwd"],
            "qn_c2c_vs_debian": med["debian-fwd"] / med["qn-c2c"],
            "fwd_vs_numpy": med["numpy-ref"] / med["rft-fwd"],
            # Process CPU time instead of wall time: less sensitive to the
            # other tenants of a shared machine; comparable to the wall-time
            # ratio at 1 thread (at 2 threads it sums both threads' time).
            "fwd_vs_pyfftw_cpu": med_cpu["pyfftw-fwd"] / med_cpu["rft-fwd"],
        },
    }
    return res


def table(results: list[dict]) -> str:
    cols = ["rft-fwd", "rft-inv", "rft-fwd-alloc", "pyfftw-fwd", "pyfftw-inv", "debian-fwd",
            "qn-c2c", "numpy-ref"]
    head = (
        "| prec | n | threads | Phi-RFT fwd | Phi-RFT inv | fwd, no out= | pyFFTW fwd | pyFFTW inv | "
        "Debian FFTW fwd | our raw c2c | numpy ref | **fwd / pyFFTW** | inv / pyFFTW | "
        "fwd no out= / pyFFTW | fwd / Debian | inv / Debian | fwd / numpy | fwd / pyFFTW, CPU time |"
    )
    lines = [head, "|" + "---|" * 18]
    for r in results:
        p, q = r["points_per_s"], r["ratios"]
        mpts = " | ".join(f"{p[c] / 1e6:.0f}" for c in cols)
        lines.append(
            f"| {r['precision']} | {r['n']} | {r['nthreads']} | {mpts} | "
            f"**{q['fwd_vs_pyfftw']:.2f}x** | {q['inv_vs_pyfftw']:.2f}x | "
            f"{q['fwd_alloc_vs_pyfftw']:.2f}x | {q['fwd_vs_debian']:.2f}x | "
            f"{q['inv_vs_debian']:.2f}x | {q['fwd_vs_numpy']:.1f}x | {q['fwd_vs_pyfftw_cpu']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="256,1024,4096,8192", help="comma-separated lengths")
    ap.add_argument("--precisions", default="f32,f64", help="f32 and/or f64")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--rounds", type=int, default=15, help="timing rounds per method (median)")
    ap.add_argument("--quick", action="store_true", help="f32, n=1024, 1 thread")
    ap.add_argument("--json", type=Path, help="write the results as JSON here")
    ap.add_argument("--md", type=Path, help="write the markdown table here")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.threads, args.precisions = "1024", "1", "f32"

    precisions = args.precisions.split(",")
    debian = {p: DebianFftw(p) for p in precisions}
    info = qn.build_info()
    libs = {
        "quantonium_native": {
            "fftw_version": info["fftw_version"],
            "libraries": loaded_libraries("libfftw3"),  # Debian's, loaded by _core (and ctypes)
        },
        "pyfftw": {
            "version": pyfftw.__version__,
            "libraries": [p for p in loaded_libraries("libfftw3") if "pyfftw" in p],
        },
    }
    libs["quantonium_native"]["libraries"] = [
        p for p in libs["quantonium_native"]["libraries"] if "pyfftw" not in p]
    libs["pyfftw"]["fftw_version"] = sorted({
        fftw_version_of(p, "fftwf" if "libfftw3f" in p else "fftw")
        for p in libs["pyfftw"]["libraries"]
        if os.path.basename(p).startswith(("libfftw3-", "libfftw3f-"))})
    env = {
        "machine": f"{cpu_model()}, {os.cpu_count()} cores (shared), {platform.machine()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyfftw": pyfftw.__version__,
        "pyfftw_fftw": ", ".join(libs["pyfftw"]["fftw_version"]),
        "debian_fftw": ", ".join(sorted({d.version for d in debian.values()})),
        **{k: info[k] for k in ("version", "fftw_version", "simd_selected", "compiler",
                                "planner_effort")},
    }
    print("# " + ", ".join(f"{k}={v}" for k, v in env.items()), file=sys.stderr)
    rng = np.random.default_rng(0)
    results = []
    for prec in precisions:
        for n in (int(s) for s in args.sizes.split(",")):
            for nt in (int(s) for s in args.threads.split(",")):
                print(f"# measuring {prec} n={n} threads={nt}", file=sys.stderr)
                results.append(measure(n, prec, nt, args.rounds, rng, debian[prec]))
    text = [
        f"Mpt/s (medians of {args.rounds} interleaved rounds; numpy ref: fewer), rows x n = "
        f"{POINTS} points, complex input, C-contiguous, 64-byte aligned.",
        "",
        table(results),
    ]

    ok = True
    target = [r for r in results if r["precision"] == "f32" and r["n"] == 1024 and r["nthreads"] == 1]
    for r in target:
        q = r["ratios"]
        t1 = q["fwd_vs_pyfftw"] >= TARGET_VS_PYFFTW
        t2 = q["fwd_vs_numpy"] >= TARGET_VS_NUMPY
        ok &= t1 and t2
        text += [
            "",
            f"target f32 n=1024 1 thread, out= given: Phi-RFT / pyFFTW raw plan = "
            f"{q['fwd_vs_pyfftw']:.2f}x (>= {TARGET_VS_PYFFTW}x: {'met' if t1 else 'MISSED'}); "
            f"Phi-RFT / numpy reference = {q['fwd_vs_numpy']:.1f}x "
            f"(>= {TARGET_VS_NUMPY:.0f}x: {'met' if t2 else 'MISSED'})",
        ]
    print("\n".join(text))
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        header = ["Machine: " + env["machine"] + "; " + ", ".join(
            f"{k}={env[k]}" for k in ("pyfftw", "pyfftw_fftw", "debian_fftw", "simd_selected",
                                      "compiler", "numpy")), ""]
        args.md.write_text("\n".join(header + text) + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        doc = {"environment": env, "fftw_libraries": libs, "results": results}
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(args.json)
        print(f"# wrote {args.json}", file=sys.stderr)
    return 0 if (ok or not args.check) else 1


if __name__ == "__main__":
    sys.exit(main())
