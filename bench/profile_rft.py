#!/usr/bin/env python3
"""Where the Phi-RFT's time goes: a sampling profile, FFTW's plans, and the binding's cost.

Three views of one case (default: complex64 rows, n = 1024, 4M points, one
thread, out= given, the README's headline case):

1. `perf record -e cpu-clock` of a loop of calls (Debian's linux-perf; a
   software clock, so it works on a VM without hardware counters), summed into
   parts: FFTW itself, the phase multiply, the streaming write-out, the gather
   copies, the engine's loops, the kernel (page clearing of fresh output
   memory), Python. The same for pyFFTW's raw plan, for comparison.
2. The FFTW plans for the problem (fftw_sprint_plan from Debian's library):
   the RFT's chunk, in place and out of place, and one plan over the batch as
   pyFFTW makes it. FFTW plans with FFTW_MEASURE, so plans can differ between
   processes on a noisy machine.
3. The Python binding's fixed cost per call (tiny input, with and without
   out=) and the cost of allocating the output (no out=) on the big case, from
   interleaved rounds.

    python bench/profile_rft.py                       # prints a markdown report
    python bench/profile_rft.py --md bench/results/profile_rft.md --json bench/results/profile_rft.json
    python bench/profile_rft.py --n 256 --precision f64

`--worker` is the loop perf runs (internal).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

POINTS = 1 << 22
DTYPES = {"f32": np.complex64, "f64": np.complex128}

# perf's symbol (or, for stripped libraries, shared object) -> part of the work.
PARTS = [
    ("FFTW (Debian's libfftw3)", lambda dso, sym: re.match(r"libfftw3f?(_threads)?\.so", dso)),
    ("FFTW (pyFFTW's bundled libfftw3)", lambda dso, sym: re.match(r"libfftw3f?(_omp)?-", dso)),
    ("phase multiply (cmul kernels)", lambda dso, sym: "cmul" in sym),
    ("streaming write-out (stream kernels)", lambda dso, sym: "stream_" in sym),
    ("gather copies (memcpy)", lambda dso, sym: "memmove" in sym or "memcpy" in sym),
    ("engine loops (run_rows, gather_row, scatter_row)", lambda dso, sym: dso.startswith("_core")),
    ("kernel (page faults: clearing fresh memory, ...)", lambda dso, sym: dso.startswith("[kernel")),
    ("Python, numpy and the rest", lambda dso, sym: True),
]


def make_case(n: int, prec: str):
    import pyfftw

    rows = POINTS // n
    x = pyfftw.empty_aligned((rows, n), dtype=DTYPES[prec])
    y = pyfftw.empty_aligned((rows, n), dtype=DTYPES[prec])
    return x, y


def worker(method: str, n: int, prec: str, reps: int) -> None:
    """The loop that perf samples: setup, then `reps` calls."""
    import pyfftw

    import quantonium_native as qn

    x, y = make_case(n, prec)
    if method == "pyfftw":
        f = pyfftw.FFTW(x, y, axes=(-1,), flags=("FFTW_MEASURE",), threads=1).execute
    elif method == "rft":
        f = lambda: qn.rft_forward(x, out=y)  # noqa: E731
    elif method == "rft-alloc":
        f = lambda: qn.rft_forward(x)  # noqa: E731
    else:
        raise SystemExit(f"unknown method {method}")
    x[:] = np.random.default_rng(0).standard_normal(x.shape)
    f()
    for _ in range(reps):
        f()


def perf_profile(method: str, n: int, prec: str, reps: int) -> dict:
    if shutil.which("perf") is None:
        raise SystemExit("profile_rft: needs perf (apt-get install linux-perf)")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        cmd = [sys.executable, __file__, "--worker", method, "--n", str(n), "--precision", prec,
               "--reps", str(reps)]
        # Samples of the setup (array filling, planning) are few next to the loop's.
        subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000", "-o", data, "--",
                        *cmd], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "-n", "--sort", "dso,sym",
                              "--percent-limit", "0"], check=True, capture_output=True,
                             text=True).stdout
        subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000", "-o",
                        data + ".0", "--", *cmd[:-1], "0"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rep0 = subprocess.run(["perf", "report", "-i", data + ".0", "--stdio", "-n", "--sort", "dso,sym",
                               "--percent-limit", "0"], check=True, capture_output=True,
                              text=True).stdout
    return subtract(parse_report(rep), parse_report(rep0))


def parse_report(text: str) -> dict[str, float]:
    """Samples per part from `perf report --stdio -n --sort dso,sym`."""
    parts = {name: 0.0 for name, _ in PARTS}
    for line in text.splitlines():
        m = re.match(r"\s+[\d.]+%\s+(\d+)\s+(\S+)\s+\[[.k]\]\s+(.*)", line)
        if not m:
            continue
        count, dso, sym = int(m.group(1)), m.group(2), m.group(3)
        for name, pred in PARTS:
            if pred(dso, sym):
                parts[name] += count
                break
    return parts


def subtract(a: dict[str, float], b: dict[str, float]) -> dict:
    """Samples of the loop alone (run with reps minus run with 0 reps), as shares."""
    d = {k: max(0.0, a[k] - b.get(k, 0.0)) for k in a}
    tot = sum(d.values())
    return {"samples": round(tot), "share": {k: (v / tot if tot else 0.0) for k, v in d.items()}}


class DebianPlans:
    """fftw_sprint_plan of Debian's library for the problems our code and pyFFTW plan."""

    def __init__(self, prec: str):
        self.p = "fftwf" if prec == "f32" else "fftw"
        self.lib = ctypes.CDLL("libfftw3f.so.3" if prec == "f32" else "libfftw3.so.3")
        f = getattr(self.lib, f"{self.p}_plan_many_dft")
        f.restype = ctypes.c_void_p
        f.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.c_void_p,
                      ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                      ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_uint]
        self.plan_many = f
        s = getattr(self.lib, f"{self.p}_sprint_plan")
        s.restype, s.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
        self.sprint = s
        self.destroy = getattr(self.lib, f"{self.p}_destroy_plan")
        self.destroy.argtypes = [ctypes.c_void_p]
        self.free = ctypes.CDLL(None).free
        self.free.argtypes = [ctypes.c_void_p]

    def plan(self, n: int, howmany: int, inplace: bool, dtype) -> str:
        import pyfftw

        a = pyfftw.empty_aligned(n * howmany, dtype=dtype)
        b = a if inplace else pyfftw.empty_aligned(n * howmany, dtype=dtype)
        nn = (ctypes.c_int * 1)(n)
        flags = 0 if inplace else 1 << 4  # FFTW_MEASURE (| FFTW_PRESERVE_INPUT)
        p = self.plan_many(1, nn, howmany, a.ctypes.data, None, 1, n, b.ctypes.data, None, 1, n,
                           -1, flags)
        raw = self.sprint(p)
        text = ctypes.string_at(raw).decode()
        self.free(raw)
        self.destroy(p)
        return " ".join(text.split())


def binding_costs(n: int, prec: str, rounds: int) -> dict:
    """Interleaved rounds: fixed cost per call, and the cost of allocating the output."""
    import pyfftw

    import quantonium_native as qn

    dt = DTYPES[prec]
    tiny = np.ones((1, 16), dt)
    tiny_out = np.empty_like(tiny)
    ta, tb = pyfftw.empty_aligned((1, 16), dtype=dt), pyfftw.empty_aligned((1, 16), dtype=dt)
    tiny_fftw = pyfftw.FFTW(ta, tb, axes=(-1,), flags=("FFTW_MEASURE",), threads=1).execute
    x, y = make_case(n, prec)
    x[:] = 1.0
    methods = {
        "rft, 1 x 16, out= (per call)": lambda: [qn.rft_forward(tiny, out=tiny_out) for _ in range(1000)],
        "rft, 1 x 16, no out= (per call)": lambda: [qn.rft_forward(tiny) for _ in range(1000)],
        "pyFFTW execute, 1 x 16 (per call)": lambda: [tiny_fftw() for _ in range(1000)],
        f"rft, {POINTS // n} x {n}, out=": lambda: qn.rft_forward(x, out=y),
        f"rft, {POINTS // n} x {n}, no out=": lambda: qn.rft_forward(x),
        f"numpy.empty of the output, {POINTS // n} x {n}, first touch": lambda: np.empty_like(x).fill(0),
    }
    for f in methods.values():
        f()
    t: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(rounds):
        for k, f in methods.items():
            t0 = time.process_time()
            f()
            t[k].append(time.process_time() - t0)
    med = {k: statistics.median(v) for k, v in t.items()}
    return {k: (v / 1000 if "per call" in k else v) for k, v in med.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--precision", default="f32", choices=sorted(DTYPES))
    ap.add_argument("--reps", type=int, default=300, help="calls in the profiled loop")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--md", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.n, args.precision, args.reps)
        return 0

    import quantonium_native as qn

    n, prec = args.n, args.precision
    info = qn.build_info()
    row_bytes = n * np.dtype(DTYPES[prec]).itemsize
    chunk = max(1, min(128 * 1024 // row_bytes, POINTS // n))
    plans = DebianPlans(prec)
    doc = {
        "case": {"n": n, "precision": prec, "rows": POINTS // n, "threads": 1, "chunk_rows": chunk},
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared)",
        "build": {k: info[k] for k in ("fftw_version", "simd_selected", "compiler")},
        "profile": {m: perf_profile(m, n, prec, args.reps) for m in ("rft", "rft-alloc", "pyfftw")},
        "plans": {
            f"RFT chunk, {chunk} rows, out of place (what the engine runs)":
                plans.plan(n, chunk, False, DTYPES[prec]),
            f"RFT chunk, {chunk} rows, in place (what the engine ran before)":
                plans.plan(n, chunk, True, DTYPES[prec]),
            f"one plan over {POINTS // n} rows, out of place (pyFFTW's problem)":
                plans.plan(n, POINTS // n, False, DTYPES[prec]),
        },
        "cpu_seconds": binding_costs(n, prec, args.rounds),
    }
    parts = [name for name, _ in PARTS]
    lines = [
        f"Profile of the Phi-RFT, {prec}, n = {n}, {POINTS // n} rows, 1 thread "
        f"({doc['build']['fftw_version']}, SIMD {doc['build']['simd_selected']}); "
        f"`perf record -e cpu-clock` over {args.reps} calls, setup subtracted:",
        "",
        "| part | rft_forward(x, out=y) | rft_forward(x) | pyFFTW execute() |",
        "|---|---|---|---|",
    ]
    for p in parts:
        cells = [f"{doc['profile'][m]['share'][p] * 100:.1f}%" for m in ("rft", "rft-alloc", "pyfftw")]
        if any(c != "0.0%" for c in cells):
            lines.append(f"| {p} | " + " | ".join(cells) + " |")
    lines += ["", "FFTW plans (Debian's library, FFTW_MEASURE, planned in this run):", ""]
    lines += [f"- {k}: `{v}`" for k, v in doc["plans"].items()]
    lines += ["", f"CPU time, medians of {args.rounds} interleaved rounds:", ""]
    lines += [f"- {k}: {v * 1e6:.2f} us" if "per call" in k else f"- {k}: {v * 1e3:.2f} ms"
              for k, v in doc["cpu_seconds"].items()]
    text = "\n".join(lines)
    print(text)
    if args.md:
        args.md.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
