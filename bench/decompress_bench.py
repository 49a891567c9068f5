"""decompress: streamed safetensors vs holding the model (issue 9), old and new in one run, interleaved.

    .venv/bin/python bench/decompress_bench.py --qnt /work/models/gpt-neo-1.3b-direct4.qnt [--rounds 5]
        [--variants hold,stream,stream-buffered] [--threads 2] [--json J] [--md M]

Variants, each round one fresh process per variant, in turn:

- ``hold``: what ``decompress`` did before streaming, kept here as the reference: every tensor
  decoded into memory (``QntFile.read_all``), torch tensors over them, one
  ``safetensors.torch.save_file`` (the library at its best: it writes from the tensors' memory),
  then the folder's commit (fsync, rename);
- ``stream``: ``quantonium.pipeline.decompress`` as it is (header from the index, each tensor written
  as it is decoded, direct I/O where the filesystem allows it);
- ``stream-buffered``: the same through the page cache (``outputs.DIRECT_IO = False``: buffered
  writes, writeback started after each buffer);
- ``imports``: the same imports (torch included, in every variant), no work: the baseline of the
  anonymous memory (the streamed ``quantonium decompress`` command itself no longer imports torch).

Per run: wall seconds inside the process (imports excluded), of which the final fsyncs (the
``StreamFile``'s own and the folder commit's), MB/s of fp32 output (bytes of ``model.safetensors``)
with and without those fsyncs, and peak anonymous memory of the process (``bench/procmem.py``:
RssAnon sampled every 50 ms) and peak RSS. The output of every variant is checked to be the same
tensors (the ``stream`` file's SHA-256 against the ``hold`` file's, header metadata order aside:
see ``quantonium.safetensors_stream``). Between runs the output is removed and ``sync`` is run
(untimed), so that a run does not pay for the previous one's writeback.
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
ENV = dict(os.environ, PYTHONPATH=str(ROOT / "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))

CHILD = r"""
import hashlib, json, os, struct, sys, time
from pathlib import Path
variant, qnt, out, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
import numpy as np, torch, safetensors.torch  # imports outside the timing
from quantonium import outputs, pipeline, __version__
from quantonium.container import QntFile

sync = [0.0]
commit = outputs.AtomicFolder.commit
def timed_commit(self):
    t = time.perf_counter()
    try:
        return commit(self)
    finally:
        sync[0] += time.perf_counter() - t
outputs.AtomicFolder.commit = timed_commit
close = outputs.StreamFile.close
def timed_close(self):
    r = close(self)
    sync[0] += self.sync_seconds
    return r
outputs.StreamFile.close = timed_close

def hold(qnt, outdir, threads):  # the decompress of commit 7ffadb2, tensors only
    with QntFile(qnt) as f, outputs.AtomicFolder(outdir, inputs=[qnt]) as o:
        tie = bool(f.config().get("tie_word_embeddings", True)) if "config.json" in f.file_names else False
        copies = {} if tie else dict(f.model.get("tied") or {})
        arrays = f.read_all(nthreads=threads, reserve=f.decoded_bytes(list(copies.values())))
        tensors = {n: (torch.from_numpy(a.view(np.int16)).view(torch.bfloat16) if a.dtype.name == "bfloat16" else torch.from_numpy(a))
                   for n, a in arrays.items()}
        for alias, canon in copies.items():
            tensors[alias] = tensors[canon].clone()
        safetensors.torch.save_file(tensors, str(o.path / "model.safetensors"), metadata={"format": "pt", "quantonium": __version__})

if variant == "stream-buffered":
    outputs.DIRECT_IO = False
t0 = time.perf_counter()
if variant == "imports":
    print(json.dumps({"wall": 0.0, "sync": 0.0, "bytes": 0, "digest": None}))
    sys.exit(0)
if variant == "hold":
    hold(qnt, out, threads)
else:
    pipeline.decompress(qnt, out, threads=threads)
wall = time.perf_counter() - t0
p = Path(out) / "model.safetensors"
digest = None
if os.environ.get("QN_BENCH_HASH"):  # after the timing, through a memory map (file pages, not anonymous memory)
    import mmap
    with open(p, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as raw:
        n = struct.unpack("<Q", raw[:8])[0]
        head = json.loads(raw[8:8 + n]); head.pop("__metadata__", None)
        h = hashlib.sha256(json.dumps(head).encode())
        h.update(memoryview(raw)[8 + n:])
        digest = h.hexdigest()
print(json.dumps({"wall": wall, "sync": sync[0], "bytes": p.stat().st_size, "digest": digest}))
"""


def run(variant: str, qnt: Path, out: Path, threads: int, check: bool) -> dict:
    subprocess.run(["rm", "-rf", str(out)], check=True)
    subprocess.run(["sync"], check=True)
    env = dict(ENV, **({"QN_BENCH_HASH": "1"} if check else {}))
    r = measure_cmd([sys.executable, "-c", CHILD, variant, str(qnt), str(out), str(threads)], env=env)
    subprocess.run(["rm", "-rf", str(out)], check=True)
    if r["returncode"] != 0:
        raise RuntimeError(f"{variant} failed: {r['stdout']}")
    res = json.loads(r["stdout"].strip().splitlines()[-1])
    return {"variant": variant, **res, "process_seconds": r["seconds"], "peak_anon_mib": r["peak_anon_mib"],
            "load_avg_1m": os.getloadavg()[0]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--qnt", required=True, help="a .qnt file (e.g. the scale benchmark's *-direct4.qnt)")
    ap.add_argument("--out", default=None, help="where the output folder goes (default: beside the .qnt)")
    ap.add_argument("--variants", default="imports,hold,stream,stream-buffered")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--md", default=None)
    a = ap.parse_args(argv)
    qnt = Path(a.qnt)
    out = Path(a.out) if a.out else qnt.with_name(qnt.stem + "-bench-hf")
    variants = a.variants.split(",")
    runs: list[dict] = []
    digests = {}
    for r in range(a.rounds):
        for v in variants:
            x = run(v, qnt, out, a.threads, check=r == 0)
            if x["digest"]:
                digests[v] = x["digest"]
            x["round"] = r
            runs.append(x)
            rate = f"{x['bytes'] / 1e6 / x['wall']:.0f} MB/s" if x["wall"] else "-"
            print(f"round {r} {v}: {x['wall']:.1f} s (fsync {x['sync']:.1f} s), {rate}, "
                  f"anon {x['peak_anon_mib']:.0f} MiB, load {x['load_avg_1m']:.1f}", flush=True)
    if len(set(digests.values())) > 1:
        raise SystemExit(f"the variants wrote different tensors: {digests}")
    summary = {}
    for v in variants:
        rs = [x for x in runs if x["variant"] == v]
        nbytes = rs[0]["bytes"]
        wall = statistics.median(x["wall"] for x in rs)
        nosync = statistics.median(x["wall"] - x["sync"] for x in rs)
        summary[v] = {"bytes": nbytes, "wall_s": wall, "sync_s": statistics.median(x["sync"] for x in rs),
                      "mb_s": nbytes / 1e6 / wall if wall else None,
                      "mb_s_without_final_fsync": nbytes / 1e6 / nosync if nosync else None,
                      "process_s": statistics.median(x["process_seconds"] for x in rs),
                      "peak_anon_mib": statistics.median(x["peak_anon_mib"] for x in rs),
                      "peak_anon_mib_max": max(x["peak_anon_mib"] for x in rs)}
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    doc = {"qnt": str(qnt), "out": str(out), "threads": a.threads, "rounds": a.rounds, "commit": commit,
           "when": time.strftime("%Y-%m-%d %H:%M"), "machine": os.uname().machine, "cpus": os.cpu_count(),
           "load_avg_1m": [x["load_avg_1m"] for x in runs], "same_tensors": len(set(digests.values())) <= 1,
           "summary": summary, "runs": runs}
    nbytes = max(s["bytes"] for s in summary.values())
    lines = [f"decompress of `{qnt.name}` ({nbytes / 1e9:.2f} GB of output), {a.threads} threads, "
             f"{a.rounds} interleaved rounds, medians; commit {commit}, {doc['when']}, load average "
             f"{min(doc['load_avg_1m']):.1f}-{max(doc['load_avg_1m']):.1f} (2 shared cores, x86-64)", "",
             "| variant | wall s | of which final fsync s | MB/s | MB/s without the final fsync | peak anon MiB (max) |",
             "|---|---|---|---|---|---|"]
    for v, s in summary.items():
        rates = f"{s['mb_s']:.0f} | {s['mb_s_without_final_fsync']:.0f}" if s["mb_s"] else "- | -"
        lines.append(f"| {v} | {s['wall_s']:.1f} | {s['sync_s']:.1f} | {rates} | {s['peak_anon_mib']:.0f} ({s['peak_anon_mib_max']:.0f}) |")
    md = "\n".join(lines)
    print(md)
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=1))
    if a.md:
        Path(a.md).write_text(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
