#!/usr/bin/env python3
"""How compression scales with model size (issue 9): time and memory at 124M, 350M and 1.3B.

    .venv/bin/python bench/scale_bench.py [--models gpt2-124m,gpt2-350m,gpt-neo-1.3b] [--dir /work/models]
        [--steps direct,auto,decompress,load,lossless] [--json bench/results/scale.json] [--md bench/results/scale.md]

The models are random-init HF folders at the real shapes (``bench/shaped_models.py``
writes them on first use; 5.26 GB for GPT-Neo 1.3B): their fidelity numbers
mean nothing and are not reported. Each step runs in a fresh process and is
measured by ``bench/procmem.py``: wall time, peak anonymous memory of the
process tree (RssAnon, sampled every 50 ms; the memory-mapped source pages
are excluded because the kernel can drop them) and peak RSS.

Steps:
- ``direct``: ``compress --codec direct --bits 4`` (per tensor), MB/s of fp32 source;
- ``auto``: ``compress --codec auto --bits 4 --calibration builtin`` (sensitivities,
  curves, allocation, GPTQ), with the stage timings from its progress log;
- ``decompress``: the direct file back to a safetensors folder (the ``quantonium decompress``
  command, its process's wall time: Python's start and imports included), MB/s of fp32 output;
- ``load``: ``quantonium.load`` of the direct file into a transformers model, MB/s of fp32;
- ``lossless``: our lossless codec against ZipNN (``zipnn`` on PyPI, its byte mode for
  float32, the same thread count) on every tensor of the model, in one process,
  interleaved rounds: bytes, compress and decompress MB/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from procmem import measure_cmd  # noqa: E402

ROOT = HERE.parent
PY = sys.executable
ENV = dict(os.environ, PYTHONPATH=str(ROOT / "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
Q = [PY, "-m", "quantonium"]


def ensure_model(kind: str, d: Path) -> Path:
    folder = d / kind
    if not (folder / "model.safetensors").is_file():
        subprocess.run([PY, str(HERE / "shaped_models.py"), kind, str(folder)], check=True, env=ENV)
    return folder


def source_bytes(folder: Path) -> int:
    return (folder / "model.safetensors").stat().st_size


def run_step(name: str, cmd: list[str], log: Path, **kw) -> dict:
    r = measure_cmd(cmd, env=ENV, log=log)
    if r["returncode"] != 0:
        raise RuntimeError(f"{name} failed ({r['returncode']}): see {log}")
    return {**r, **kw}


def lossless_vs_zipnn(folder: Path, threads: int, rounds: int) -> dict:
    """Ours (codecs.lossless) and ZipNN on every tensor, interleaved rounds, medians."""
    import importlib.util

    if importlib.util.find_spec("zipnn") is None:  # not in the set-up: an sdist that compiles, used only here
        raise SystemExit("the lossless step compares with ZipNN: .venv/bin/python -m pip install zipnn==0.5.4 "
                         "(measured with 0.5.4), or leave the step out (--steps direct,auto,decompress,load)")
    code = f"""
import json, statistics, time, sys
sys.path.insert(0, {str(ROOT / 'python')!r})
import numpy as np
from zipnn import ZipNN
from quantonium.codecs import lossless
from quantonium.models.safetensors_view import SafetensorsView
v = SafetensorsView({str(folder / 'model.safetensors')!r})
arrs = [np.ascontiguousarray(v.array(n)) for n in v.names()]
nbytes = sum(a.nbytes for a in arrs)
z = ZipNN(input_format="byte", bytearray_dtype="float32", threads={threads})
res = {{"ours": [], "zipnn": []}}
for r in range({rounds}):
    for who in ("ours", "zipnn"):
        t0 = time.perf_counter()
        if who == "ours":
            enc = [lossless.encode(a, nthreads={threads}) for a in arrs]
            size = sum(len(e.payload) for e in enc)
            t1 = time.perf_counter()
            back = [lossless.decode(e.payload, a.shape, "float32", nthreads={threads}) for e, a in zip(enc, arrs)]
        else:
            enc = [z.compress(a.tobytes()) for a in arrs]
            size = sum(len(e) for e in enc)
            t1 = time.perf_counter()
            back = [np.frombuffer(z.decompress(e), np.float32).reshape(a.shape) for e, a in zip(enc, arrs)]
        t2 = time.perf_counter()
        assert all(np.array_equal(b.view(np.uint32), a.view(np.uint32)) for b, a in zip(back, arrs)), who
        res[who].append((size, t1 - t0, t2 - t1))
        del enc, back
out = {{}}
for who, rs in res.items():
    out[who] = {{"bytes": rs[0][0], "ratio": nbytes / rs[0][0],
                 "compress_mb_s": nbytes / 1e6 / statistics.median(r[1] for r in rs),
                 "decompress_mb_s": nbytes / 1e6 / statistics.median(r[2] for r in rs)}}
print(json.dumps({{"source_bytes": nbytes, "rounds": {rounds}, "threads": {threads}, **out}}))
"""
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=ENV, check=False)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def stage_times(log: Path) -> dict[str, float]:
    """Seconds per stage, read from the progress bars' final states in a compress log."""
    import re

    text = log.read_text(errors="replace").replace("\r", "\n")
    out: dict[str, float] = {}
    for m in re.finditer(r"^(\w+)\s*:\s*100%.*?\[(\d+):(\d+)(?::(\d+))?<", text, re.M):
        a, b, c = m.group(2), m.group(3), m.group(4)
        sec = int(a) * 60 + int(b) if c is None else int(a) * 3600 + int(b) * 60 + int(c)
        out[m.group(1)] = float(sec)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="gpt2-124m,gpt2-350m,gpt-neo-1.3b")
    ap.add_argument("--dir", default=str(ROOT / "bench" / "models"), help="where the shaped models live")
    ap.add_argument("--steps", default="direct,auto,decompress,load,lossless")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the lossless comparison")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "scale.json"))
    ap.add_argument("--md", default=str(ROOT / "bench" / "results" / "scale.md"))
    ap.add_argument("--calibration-tokens", type=int, default=None,
                    help="passed to the auto step (the README's runs: 4096)")
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows and steps of the existing --json file that this run does not measure")
    a = ap.parse_args(argv)
    d = Path(a.dir)
    d.mkdir(parents=True, exist_ok=True)
    steps = a.steps.split(",")
    results = []
    for kind in a.models.split(","):
        folder = ensure_model(kind, d)
        sb = source_bytes(folder)
        row: dict = {"model": kind, "source_bytes": sb}
        out = d / f"{kind}-direct4.qnt"
        t = str(a.threads)
        if "direct" in steps or not out.exists():
            r = run_step("direct", [*Q, "compress", str(folder), "-o", str(out), "--codec", "direct", "--bits", "4",
                                    "--threads", t, "--json"], d / f"{kind}-direct.log")
            row["direct"] = {**r, "mb_s": sb / 1e6 / r["seconds"], "file_bytes": out.stat().st_size}
            print(kind, "direct", f"{r['seconds']:.1f} s", f"{row['direct']['mb_s']:.0f} MB/s",
                  f"anon {r['peak_anon_mib']:.0f} MiB", flush=True)
        if "auto" in steps:
            log = d / f"{kind}-auto.log"
            r = run_step("auto", [*Q, "compress", str(folder), "-o", str(d / f"{kind}-auto4.qnt"), "--codec", "auto",
                                  "--bits", "4", "--calibration", "builtin", "--threads", t, "--json",
                                  *(["--calibration-tokens", str(a.calibration_tokens)] if a.calibration_tokens else [])],
                         log)
            out_json = json.loads(r["stdout"])
            row["auto"] = {**r, "calibration_tokens": a.calibration_tokens or "default", "stages": {s["stage"]: s for s in out_json.get("stages", [])} or stage_times(log),
                           "file_bytes": out_json["file_bytes"], "tensor_bpw": out_json["tensor_bpw"]}
            print(kind, "auto", f"{r['seconds']:.1f} s", f"anon {r['peak_anon_mib']:.0f} MiB", row["auto"]["stages"],
                  flush=True)
        if "decompress" in steps:
            dest = d / f"{kind}-hf"
            subprocess.run(["rm", "-rf", str(dest)], check=True)
            r = run_step("decompress", [*Q, "decompress", str(out), "-o", str(dest), "--threads", t],
                         d / f"{kind}-decompress.log")
            row["decompress"] = {**r, "mb_s": sb / 1e6 / r["seconds"]}
            subprocess.run(["rm", "-rf", str(dest)], check=True)
            print(kind, "decompress", f"{r['seconds']:.1f} s", f"{row['decompress']['mb_s']:.0f} MB/s",
                  f"anon {r['peak_anon_mib']:.0f} MiB", flush=True)
        if "load" in steps:
            code = (f"import time, quantonium; t=time.perf_counter(); m,_=quantonium.load({str(out)!r}, threads={a.threads}); "
                    "print(time.perf_counter()-t)")
            r = run_step("load", [PY, "-c", code], d / f"{kind}-load.log")
            sec = float(r["stdout"].strip().splitlines()[-1])
            row["load"] = {**r, "load_seconds": sec, "mb_s": sb / 1e6 / sec}
            print(kind, "load", f"{sec:.1f} s (process {r['seconds']:.1f} s)", f"{row['load']['mb_s']:.0f} MB/s", flush=True)
        if "lossless" in steps:
            row["lossless"] = lossless_vs_zipnn(folder, a.threads, a.rounds)
            print(kind, "lossless", json.dumps(row["lossless"]), flush=True)
        results.append(row)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    for row in results:  # each step says when and at which commit it was measured
        for k in ("direct", "auto", "decompress", "load", "lossless"):
            if k in row:
                row[k].update(commit=commit, when=time.strftime("%Y-%m-%d %H:%M"), load_avg_1m=os.getloadavg()[0])
    if a.merge and Path(a.json).is_file():
        old = {r["model"]: r for r in json.loads(Path(a.json).read_text())["models"]}
        for row in results:
            old[row["model"]] = {**old.get(row["model"], {}), **row}
        order = [m for m in ("gpt2-124m", "gpt2-350m", "gpt-neo-1.3b") if m in old]
        results = [old[m] for m in order] + [old[m] for m in old if m not in order]
    doc = {"machine": os.uname().machine, "cpus": os.cpu_count(), "threads": a.threads, "when": time.strftime("%Y-%m-%d %H:%M"),
           "models": results}
    Path(a.json).write_text(json.dumps(doc, indent=1))
    Path(a.md).write_text(table(doc) + "\n")
    print(table(doc))
    return 0


def _cell(r: dict, key: str, fmt) -> str:
    return fmt(r[key]) if key in r else "not run"


def _direct(x: dict) -> str:
    return f"{x['seconds']:.0f} s ({x['mb_s']:.0f}), {x['peak_anon_mib']:.0f}"


def _auto(x: dict) -> str:
    return f"{x['seconds']:.0f} s, {x['peak_anon_mib']:.0f}"


def _rate(x: dict) -> str:
    return f"{x['mb_s']:.0f}"


def _rate_anon(x: dict) -> str:
    return f"{x['mb_s']:.0f}, {x['peak_anon_mib']:.0f}"


def table(doc: dict) -> str:
    lines = ["| model | fp32 source | direct 4 bpw: s (MB/s), peak anon MiB | auto+calibration 4 bpw: s, peak anon MiB | "
             "decompress: MB/s, peak anon MiB | load MB/s |", "|---|---|---|---|---|---|"]
    for r in doc["models"]:
        lines.append(f"| {r['model']} | {r['source_bytes'] / 1e9:.2f} GB | {_cell(r, 'direct', _direct)} | "
                     f"{_cell(r, 'auto', _auto)} | {_cell(r, 'decompress', _rate_anon)} | {_cell(r, 'load', _rate)} |")
    if any("lossless" in r for r in doc["models"]):
        lines += ["", "| model | ours: ratio, compress / decompress MB/s | ZipNN: ratio, compress / decompress MB/s |",
                  "|---|---|---|"]
        for r in doc["models"]:
            if "lossless" in r:
                o, z = r["lossless"]["ours"], r["lossless"]["zipnn"]
                lines.append(f"| {r['model']} | {o['ratio']:.3f}, {o['compress_mb_s']:.0f} / {o['decompress_mb_s']:.0f} | "
                             f"{z['ratio']:.3f}, {z['compress_mb_s']:.0f} / {z['decompress_mb_s']:.0f} |")
    lines += ["", "Measured (commit, time, 1-minute load average at the end of the step):"]
    for r in doc["models"]:
        for k in ("direct", "auto", "decompress", "load", "lossless"):
            if k in r and "commit" in r[k]:
                lines.append(f"- {r['model']} {k}: {r[k]['commit']}, {r[k]['when']}, load {r[k]['load_avg_1m']:.1f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
