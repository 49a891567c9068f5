#!/usr/bin/env python3
"""GPTQ error compensation: the torch implementation vs the old numpy one, measured in one run.

For each shape (out x in) of GPT-Neo 1.3B's matrices (q/k/v/out_proj
2048x2048, c_fc 8192x2048, c_proj 2048x8192) and each thread count, both
implementations compensate the same matrix on the same grid:

  old   the float64 numpy implementation GPTQ started with (explicit H^-1, its
        Cholesky factor, column loops; ``reference_compensate`` in
        tests/test_gptq.py), numpy's OpenBLAS limited to the thread count
  new   ``quantonium.codecs.gptq.compensate`` (torch / MKL, float32, one
        Cholesky of the reversed damped H, lazy-batch updates), timed as its
        two parts: ``factorise`` (Cholesky) and ``quantise`` (the updates)

in interleaved rounds (old, new, then new, old, ...), medians per method. Each
thread count runs in its own process (OpenBLAS reads its thread count at
start). The Gram matrix is the population Gram of correlated inputs
x = A z + s * e (in/4 latent factors, per-channel scales log-normal with
sigma 1, so a few channels carry most of the energy), float32 as calibration
now gives it; the weights are N(0, 0.02^2); the row / column scales are what
calibration gives (column: sqrt of the input energy; row: log-normal), made
the codec's float16 normalised scales; the step is 1/4 of the RMS of the
scaled weights (about 4 bits per weight once entropy coded).

Accuracy is measured once per shape: output error tr((W-Q) H (W-Q)^T) of
each against round-to-nearest on the same grid, the share of symbols the two
choose alike, and the error with the factorisation in float64 instead of
float32. The projection for GPT-Neo 1.3B is 24 layers x (4 x 2048x2048 +
8192x2048 + 2048x8192), one compensation per matrix. A separate process
measures the peak anonymous memory (RssAnon) of one new call at the largest
input size, above the inputs it was given.

    python bench/gptq_bench.py                       # full run (about 75 minutes here: the old code is slow)
    python bench/gptq_bench.py --quick               # small shapes, 3 rounds
    python bench/gptq_bench.py --json bench/results/gptq.json --md bench/results/gptq.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GPT_NEO_LAYERS = 24
GPT_NEO_PER_LAYER = {"2048x2048": 4, "8192x2048": 1, "2048x8192": 1}  # q, k, v, out_proj; c_fc; c_proj


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def rss_anon_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


def make_case(out_dim: int, in_dim: int, seed: int):
    """(w, h as a float32 torch tensor, codec row / column scales as float64, raw scales, step)."""
    import torch

    from quantonium.codecs.scalar import Direct

    gen = torch.Generator().manual_seed(seed)
    k = max(1, in_dim // 4)
    energy = torch.exp(torch.randn(in_dim, generator=gen, dtype=torch.float64)).float()
    load = torch.randn(in_dim, k, generator=gen) * (energy[:, None] / k**0.5)
    h = load @ load.T
    h.diagonal().add_((0.5 * energy) ** 2)
    rng = np.random.default_rng(seed)
    w = (0.02 * rng.standard_normal((out_dim, in_dim))).astype(np.float32)
    row_raw = np.exp(0.5 * rng.standard_normal(out_dim))
    col_raw = np.sqrt(np.diagonal(h.numpy()).astype(np.float64))
    a, b = Direct(row_scale=row_raw, col_scale=col_raw)._scales(w.shape)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ws = w.astype(np.float64) * a64[:, None] * b64[None, :]
    step = 0.25 * float(np.sqrt(np.mean(ws**2)))
    return w, h, a64, b64, row_raw, col_raw, step


def output_error(v: np.ndarray, w: np.ndarray, h) -> float:
    import torch

    e = torch.from_numpy(np.asarray(v, np.float32) - w)
    return float(((e @ h) * e).sum(dtype=torch.float64))


def child(args) -> dict:
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from test_gptq import reference_compensate  # the old implementation, kept as the test oracle

    from quantonium.codecs.gptq import factorise, quantise

    nt = args.nthreads
    torch.set_num_threads(nt)
    res = {"nthreads": nt, "shapes": []}
    for shape in args.shapes.split(","):
        out_dim, in_dim = (int(v) for v in shape.split("x"))
        w, h, a, b, _, _, step = make_case(out_dim, in_dim, seed=out_dim * 7 + in_dim)
        hn = h.numpy()

        def run_new():
            t0 = time.perf_counter()
            f = factorise(h, b, nthreads=nt)
            t1 = time.perf_counter()
            q = quantise(w, f, step, a, nthreads=nt)
            t2 = time.perf_counter()
            return q, t1 - t0, t2 - t1

        def run_old():
            t0 = time.perf_counter()
            q = reference_compensate(w, hn, step, a, b)
            return q, time.perf_counter() - t0

        # accuracy (and warm-up), once
        q_new, f_s, q_s = run_new()
        t0 = time.perf_counter()
        q_old, old_s = run_old()
        m = a[:, None] * b[None, :]
        rtn = (np.rint(w * m / step) * step / m).astype(np.float32)
        err = {k: output_error(v, w, h) for k, v in (("rtn", rtn), ("old", q_old), ("new", q_new))}
        q64 = quantise(w, factorise(h, b, nthreads=nt, factor_dtype="float64"), step, a, nthreads=nt)
        err["new_float64_factor"] = output_error(q64, w, h)
        agree = float(np.mean(np.rint(q_new * m / step) == np.rint(q_old * m / step)))
        # where the old time goes: its inverse + Cholesky alone, once
        hs = hn.astype(np.float64) / b[:, None] / b[None, :]
        hs[np.diag_indices(in_dim)] += 0.01 * float(np.mean(np.diag(hs)))
        t0 = time.perf_counter()
        np.linalg.cholesky(np.linalg.inv(hs))
        old_factor_s = time.perf_counter() - t0
        del hs
        # rounds: as many as fit the budget (from the warm-up times), 3 at least
        per_round = old_s + f_s + q_s
        rounds = max(3, min(args.rounds, int(args.budget_s / max(per_round, 1e-9))))
        times = {"old": [], "new": [], "new_factorise": [], "new_quantise": []}
        for r in range(rounds):
            for which in (("old", "new") if r % 2 == 0 else ("new", "old")):
                if which == "old":
                    times["old"].append(run_old()[1])
                else:
                    _, fs, qs = run_new()
                    times["new"].append(fs + qs)
                    times["new_factorise"].append(fs)
                    times["new_quantise"].append(qs)
        med = {k: statistics.median(v) for k, v in times.items()}
        res["shapes"].append({
            "shape": shape, "out": out_dim, "in": in_dim, "step": step, "rounds": rounds,
            "median_s": med, "times_s": times, "old_inverse_cholesky_s_once": old_factor_s,
            "speedup": med["old"] / med["new"],
            "output_error": err,
            "output_error_vs_rtn": {k: err[k] / err["rtn"] for k in ("old", "new", "new_float64_factor")},
            "new_vs_old_error": err["new"] / err["old"] - 1.0,
            "float32_vs_float64_factor_error": err["new"] / err["new_float64_factor"] - 1.0,
            "symbols_agree": agree,
        })
        print(f"[{nt} thread(s)] {shape}: old {med['old']:.2f} s, new {med['new']:.2f} s "
              f"(factorise {med['new_factorise']:.2f} + quantise {med['new_quantise']:.2f}), {rounds} rounds",
              file=sys.stderr, flush=True)
    return res


def memory_child(args) -> dict:
    """Peak RssAnon of one new call above what was allocated before it (the inputs)."""
    import torch

    from quantonium.codecs.gptq import compensate

    out_dim, in_dim = (int(v) for v in args.shapes.split(","))
    w, h, a, b, _, _, step = make_case(out_dim, in_dim, seed=1)
    torch.set_num_threads(1)
    base = rss_anon_kb()
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_anon_kb())
            time.sleep(0.002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    compensate(w, h, step, a, b, nthreads=1)
    stop.set()
    th.join()
    peak[0] = max(peak[0], rss_anon_kb())
    return {"shape": f"{out_dim}x{in_dim}", "baseline_rss_anon_mb": base / 1024,
            "peak_extra_rss_anon_mb": (peak[0] - base) / 1024,
            "h_mb": h.numel() * 4 / 2**20, "w_mb": w.nbytes / 2**20}


def spawn(extra: list[str], nthreads: int) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(nthreads), OMP_NUM_THREADS=str(nthreads),
               MKL_NUM_THREADS=str(nthreads))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "python"), env.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, __file__, *extra], env=env, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout)


def projection(by_shape: dict[str, dict], key: str) -> float | None:
    if not all(s in by_shape for s in GPT_NEO_PER_LAYER):
        return None
    return GPT_NEO_LAYERS * sum(n * by_shape[s]["median_s"][key] for s, n in GPT_NEO_PER_LAYER.items())


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# GPTQ error compensation: torch (new) vs numpy (old)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores shared with other work (load average "
        f"{m['load_before']} before, {m['load_after']} after), torch {m['torch']} (MKL), numpy {m['numpy']} "
        f"(OpenBLAS). Command: `{report['command']}`.",
        "",
        "Seconds per matrix, medians of interleaved rounds; the new time is its two parts, factorise "
        "(one Cholesky of the damped Gram matrix) + quantise (the blocked updates). Output error is "
        "tr((W-Q) H (W-Q)^T) relative to round-to-nearest on the same grid.",
        "",
        "| out x in | threads | rounds | old s | new s | speed-up | new: factorise s | new: quantise s "
        "| old: inv + Cholesky s (once) | error / RTN old | error / RTN new | new vs old error | "
        "float32 vs float64 factor | symbols alike |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        for s in run["shapes"]:
            md, e = s["median_s"], s["output_error_vs_rtn"]
            lines.append(
                f"| {s['shape']} | {run['nthreads']} | {s['rounds']} | {md['old']:.2f} | {md['new']:.2f} | "
                f"{s['speedup']:.1f}x | {md['new_factorise']:.2f} | {md['new_quantise']:.2f} | "
                f"{s['old_inverse_cholesky_s_once']:.2f} | {e['old']:.4f} | {e['new']:.4f} | "
                f"{100 * s['new_vs_old_error']:+.3f}% | {100 * s['float32_vs_float64_factor_error']:+.3f}% | "
                f"{100 * s['symbols_agree']:.2f}% |")
    proj = report.get("projection_gpt_neo_1_3b_s", {})
    if proj:
        lines += ["", "GPT-Neo 1.3B, all 144 matrices (24 layers x (4 x 2048x2048 + 8192x2048 + 2048x8192)), "
                  "one compensation each:", "",
                  "| threads | old | new | new: factorise | new: quantise |", "|---|---|---|---|---|"]
        for nt, p in proj.items():
            lines.append(f"| {nt} | {p['old'] / 60:.1f} min | {p['new'] / 60:.1f} min | "
                         f"{p['new_factorise'] / 60:.1f} min | {p['new_quantise'] / 60:.1f} min |")
    mem = report.get("memory")
    if mem:
        lines += ["", f"Memory: one new call on {mem['shape']} (1 thread) peaks at "
                  f"{mem['peak_extra_rss_anon_mb']:.0f} MB of anonymous memory (RssAnon, sampled every 2 ms) "
                  f"above its inputs (H {mem['h_mb']:.0f} MB float32, W {mem['w_mb']:.0f} MB)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", default="2048x2048,8192x2048,2048x8192", help="out x in, comma separated")
    p.add_argument("--threads", default="1,2", help="thread counts, comma separated")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--budget-s", type=float, default=420.0,
                   help="fewer rounds (3 at least) where a shape's rounds would take longer than this")
    p.add_argument("--quick", action="store_true", help="shapes 256x512,512x1024, 3 rounds")
    p.add_argument("--json", type=Path)
    p.add_argument("--md", type=Path)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--nthreads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    if args.memory_child:
        print(json.dumps(memory_child(args)))
        return
    if args.quick:
        args.shapes, args.rounds = "256x512,512x1024", 3
    import numpy
    import torch

    load_before = os.getloadavg()
    runs = []
    for nt in (int(v) for v in args.threads.split(",")):
        runs.append(spawn(["--child", "--nthreads", str(nt), "--shapes", args.shapes, "--rounds", str(args.rounds),
                           "--budget-s", str(args.budget_s)], nt))
    biggest = max(args.shapes.split(","), key=lambda s: int(s.split("x")[1]) * 10**6 + int(s.split("x")[0]))
    memory = spawn(["--memory-child", "--shapes", biggest.replace("x", ",")], 1)
    proj = {}
    for run in runs:
        by = {s["shape"]: s for s in run["shapes"]}
        vals = {k: projection(by, k) for k in ("old", "new", "new_factorise", "new_quantise")}
        if all(v is not None for v in vals.values()):
            proj[str(run["nthreads"])] = vals
    report = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__, "numpy": numpy.__version__,
                    "load_before": [round(v, 1) for v in load_before],
                    "load_after": [round(v, 1) for v in os.getloadavg()]},
        "command": "python bench/gptq_bench.py " + " ".join(sys.argv[1:]),
        "runs": runs, "projection_gpt_neo_1_3b_s": proj, "memory": memory,
    }
    text = markdown(report)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.md:
        args.md.write_text(text)


if __name__ == "__main__":
    main()
