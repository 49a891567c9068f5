#!/usr/bin/env python3
"""Compress throughput on a Dask cluster (issue 13): 1 and 2 workers against the local thread executor.

    .venv/bin/python bench/dask_bench.py --json bench/results/dask.json --md bench/results/dask.md
    .venv/bin/python bench/dask_bench.py --model DIR --rounds 3     # another model, fewer rounds

The model is a GPT-2-124M-shaped folder (``bench/shaped_models.py gpt2-124m``,
497.8 MB of fp32 safetensors, made in a temporary folder unless ``--model``),
coded per tensor with ``--codec direct --bits 4``. Everything runs on this
machine: three clusters on 127.0.0.1 are started once (a scheduler each;
workers with one thread each, no nanny): one worker; two workers; two workers
in their own mount namespace where the model's folder is hidden by an empty
tmpfs (so the client sends every tensor's bytes: the path a cluster without a
shared file system takes; skipped without root and ``unshare``). Each run is
``quantonium compress ... --json`` in a fresh process; its own timer (from
the call to the closed file, without the interpreter's start) and its peak
anonymous memory (the client's) are read from the JSON. The configurations
are interleaved round by round (the order rotates every round) and medians
are reported; every run's file must be byte-identical to the others.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _warm() -> None:
    import quantonium.compress.jobs  # noqa: F401  (the codecs, the native module)


class Cluster:
    """A scheduler and ``n`` one-thread workers on loopback (``hide``: a folder the workers cannot see)."""

    def __init__(self, d: Path, n: int, hide: Path | None = None) -> None:
        d.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen] = []
        sf = d / "scheduler.json"
        self.procs.append(subprocess.Popen([PY, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                            "--port", "0", "--no-dashboard", "--scheduler-file", str(sf)], cwd=d,
                                           env=_env(), stdout=subprocess.DEVNULL, stderr=open(d / "scheduler.log", "wb")))
        t0 = time.monotonic()
        while not sf.is_file() or not sf.read_text().strip().endswith("}"):
            if time.monotonic() - t0 > 60:
                self.close()
                raise RuntimeError(f"scheduler did not start: {(d / 'scheduler.log').read_text()[-500:]}")
            time.sleep(0.1)
        self.address = json.loads(sf.read_text())["address"]
        for i in range(n):
            cmd = [PY, "-m", "distributed.cli.dask_worker", self.address, "--nthreads", "1", "--no-nanny",
                   "--no-dashboard", "--host", "127.0.0.1", "--local-directory", str(d)]
            if hide is not None:
                cmd = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs none "$0" && exec "$@"', str(hide), *cmd]
            self.procs.append(subprocess.Popen(cmd, cwd=d, env=_env(), stdout=subprocess.DEVNULL,
                                               stderr=open(d / f"worker{i}.log", "wb")))
        from distributed import Client

        try:
            with Client(self.address, set_as_default=False) as c:
                c.wait_for_workers(n, timeout=120)
                c.run(_warm)  # imports done before the first timed run, as in a long-lived cluster
        except BaseException:
            self.close()
            raise

    @property
    def spec(self) -> str:
        return "dask://" + self.address.removeprefix("tcp://")

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def run_once(model: Path, out: Path, executor: str | None, threads: int, args) -> dict:
    cmd = [PY, "-m", "quantonium", "compress", str(model), "-o", str(out), "--codec", args.codec, "--bits",
           str(args.bits), "--threads", str(threads), "--quiet", "--json"]
    if executor:
        cmd += ["--executor", executor]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()[-500:]}")
    res = json.loads(r.stdout)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    out.unlink()
    enc = next((s for s in res["stages"] if s["stage"] == "encode"), {})
    return {"seconds": res["seconds"], "encode_seconds": enc.get("seconds"), "peak_anon_mib": res["peak_anon_mib"],
            "source_bytes": res["source_bytes"], "file_bytes": res["file_bytes"], "sha256": digest,
            "tensor_data": res["executor"].get("tensor_data")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="an HF folder (default: a GPT-2-124M-shaped one, made here)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--codec", default="direct")
    ap.add_argument("--bits", type=float, default=4.0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--md", type=Path)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="qn-dask-bench-"))
    clusters: list[Cluster] = []
    try:
        model = args.model
        if model is None:
            model = tmp / "gpt2-124m"
            subprocess.run([PY, str(HERE / "shaped_models.py"), "gpt2-124m", str(model)], check=True, env=_env(),
                           stdout=subprocess.DEVNULL)
        model = model.resolve()
        configs: list[tuple[str, str | None, int]] = [("local threads=1", None, 1), ("local threads=2", None, 2)]
        clusters.append(c1 := Cluster(tmp / "c1", 1))  # registered at once: stopped whatever happens next
        clusters.append(c2 := Cluster(tmp / "c2", 2))
        configs += [("dask 1 worker x 1 thread", c1.spec, 2), ("dask 2 workers x 1 thread", c2.spec, 2)]
        can_hide = (shutil.which("unshare") is not None and os.geteuid() == 0
                    and subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0)
        if can_hide:
            clusters.append(c3 := Cluster(tmp / "c3", 2, hide=model))
            configs.append(("dask 2 workers x 1 thread, bytes sent by the client", c3.spec, 2))
        runs: dict[str, list[dict]] = {name: [] for name, _, _ in configs}
        load = [os.getloadavg()[0]]
        for r in range(args.rounds):
            order = configs[r % len(configs):] + configs[:r % len(configs)]
            for name, spec, threads in order:
                runs[name].append(run_once(model, tmp / "out.qnt", spec, threads, args))
                print(f"round {r + 1}/{args.rounds} {name}: {runs[name][-1]['seconds']:.2f} s", file=sys.stderr)
            load.append(os.getloadavg()[0])
        digests = {x["sha256"] for v in runs.values() for x in v}
        if len(digests) != 1:
            raise RuntimeError(f"the runs wrote {len(digests)} different files: the executors disagree")
        base = statistics.median(x["seconds"] for x in runs["local threads=2"])
        rows = []
        for name, spec, threads in configs:
            v = runs[name]
            med = statistics.median(x["seconds"] for x in v)
            rows.append({"config": name, "executor": spec and "dask", "client_threads": threads,
                         "tensor_data": v[0]["tensor_data"], "median_seconds": med,
                         "min_seconds": min(x["seconds"] for x in v), "max_seconds": max(x["seconds"] for x in v),
                         "median_encode_seconds": statistics.median(x["encode_seconds"] for x in v),
                         "source_mb_per_s": v[0]["source_bytes"] / med / 1e6,
                         "speed_vs_local_threads_2": base / med,
                         "median_client_peak_anon_mib": statistics.median(x["peak_anon_mib"] for x in v),
                         "seconds": [x["seconds"] for x in v]})
        report = {
            "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                        "note": "2 cores shared with other engineers' jobs; load average (1 min) sampled per round",
                        "load_average_1min": load},
            "model": (f"the folder {model}" if args.model
                      else "a GPT-2-124M-shaped fp32 folder (`bench/shaped_models.py gpt2-124m`)"),
            "source_bytes": runs["local threads=2"][0]["source_bytes"],
            "file_bytes": runs["local threads=2"][0]["file_bytes"],
            "codec": args.codec, "bits": args.bits, "rounds": args.rounds, "identical_output": True,
            "sha256": digests.pop(), "results": rows,
            "distributed": __import__("distributed").__version__,
        }
        md = [f"Compress, {report['model']}, {report['source_bytes']:,} bytes, `--codec {args.codec} --bits {args.bits:g}`; "
              f"{args.rounds} interleaved rounds, medians; every run wrote the same file "
              f"({report['file_bytes']:,} bytes). Machine: {os.cpu_count()} shared x86-64 cores, "
              f"load average {min(load):.1f}-{max(load):.1f} during the runs.", "",
              "| executor | tensors reach workers | median s (min-max) | source MB/s | vs local threads=2 | client peak anon MiB |",
              "|---|---|---|---|---|---|"]
        for x in rows:
            md.append(f"| {x['config']} | {x['tensor_data'] if x['executor'] else 'n/a (in process)'} | "
                      f"{x['median_seconds']:.2f} ({x['min_seconds']:.2f}-{x['max_seconds']:.2f}) | "
                      f"{x['source_mb_per_s']:.1f} | {x['speed_vs_local_threads_2']:.2f}x | "
                      f"{x['median_client_peak_anon_mib']:.0f} |")
        text = "\n".join(md) + "\n"
        print(text)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        if args.md:
            args.md.write_text(text)
        return 0
    finally:
        for c in clusters:
            c.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
