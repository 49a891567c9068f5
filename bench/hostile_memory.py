"""Memory amplification by hostile .qnt files (issue 11, item 3): peak memory and time of a reader.

Each case is a small, well-formed file crafted the way an attacker would (valid
CRCs, a constant rANS stream that claims many symbols, an index that claims a
huge tensor, or a very large but real index), and each reader operation runs
in a child process of its own. For every case and every source tree given
(``--tree``: a ``python`` folder whose ``quantonium`` package is used; for
example main's and this branch's), the rounds are interleaved (tree A, tree B,
A, B, ...) and the medians reported.

Measured per run: seconds of the operation, peak RSS of the child (``VmHWM``: ``ru_maxrss``
would include the parent's at fork), peak
anonymous resident memory (``RssAnon`` of /proc/PID/status, sampled every
5 ms by the parent), and the outcome (the first line of the error, or "ok").

    PYTHONPATH=python .venv/bin/python bench/hostile_memory.py \\
        --tree before=/work/main/python --tree after=python --rounds 3 \\
        --json bench/results/hostile_memory.json

The files are written to a temporary folder (``--workdir`` to keep them) and
removed afterwards; the big-index case writes about 0.7 GB.
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from quantonium.codecs.base import pack_payload  # noqa: E402
from quantonium.container import QntWriter  # noqa: E402
from quantonium.codecs import Encoded, encode_tensor  # noqa: E402


def varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def constant_stream(count: int, value: int = 0) -> bytes:
    """An order-0 rANS stream of ``count`` copies of one symbol: a few bytes whatever the count."""
    return varint(count) + varint((value << 1) ^ (value >> 63)) + varint(1) + varint(1 << 16)


REUSE = False  # --reuse: keep files already in --workdir


def write_one(path: Path, name: str, codec: str, version: int, payload: bytes, shape: tuple[int, ...], dtype: str) -> Path:
    if REUSE and path.exists():
        return path
    numel = int(np.prod(shape, dtype=np.int64))
    enc = Encoded(codec, version, payload, numel, float("nan"), {})
    with QntWriter(path, model={"id": "hostile"}) as w:
        w.add_tensor(name, enc, shape, dtype)
    return path


def make_cases(d: Path) -> dict[str, tuple]:
    """case name -> (file, operation[, extra environment])."""
    cases: dict[str, tuple] = {}
    shape = (16384, 16384)  # 2^28 values: 1 GiB of float32
    n = shape[0] * shape[1]
    p = pack_payload("lossless", 1, {"dtype": "float32", "modes": ["rans"] * 4}, [constant_stream(n, 7)] * 4)
    cases["lossless-constant-2^28-f32"] = (write_one(d / "lossless.qnt", "w", "lossless", 1, p, shape, "float32"), "read")
    p = pack_payload("direct", 2, {"step": 0.5, "symbols": "int8"}, [constant_stream(n, 3)])
    cases["direct-constant-2^28-f32"] = (write_one(d / "direct.qnt", "w", "direct", 2, p, shape, "float32"), "read")
    sshape = (4096, 4096)  # 2^24 values, every coefficient kept, one value
    size = sshape[0] * (sshape[1] // 2 + 1)
    params = {"axis": 1, "beta": 1.0, "sigma": 1.0, "transform": "phi-rft", "kept": size, "step": 0.01,
              "symbols": "int8", "values": "re-im", "value_margin_db": 10.0}
    bitmap_bytes = (size + 7) // 8  # all ones (size is a multiple of 8 here)
    assert size % 8 == 0
    p = pack_payload("rft-spectral", 1, params, [constant_stream(bitmap_bytes, 255), constant_stream(2 * size, 1)])
    cases["rft-spectral-constant-2^24-f32"] = (write_one(d / "spectral.qnt", "w", "rft-spectral", 1, p, sshape, "float32"), "read")
    lshape = (1, 1 << 24)  # one long row: FFTW plans a 2^24-point transform
    lsize = lshape[1] // 2 + 1
    lparams = {**params, "kept": lsize}
    p = pack_payload("rft-spectral", 1, lparams, [constant_stream((lsize + 7) // 8, 255), constant_stream(2 * lsize, 1)])
    cases["rft-spectral-constant-1x2^24-f32"] = (write_one(d / "spectral_row.qnt", "w", "rft-spectral", 1, p, lshape, "float32"), "read")
    p = pack_payload("direct", 2, {"step": 0.5, "symbols": "int8"}, [constant_stream(100, 3)])
    cases["direct-claims-2^35-f16-stream-100"] = (write_one(d / "claim.qnt", "w", "direct", 2, p, (1 << 35,), "float16"), "read")
    # a real index of about 250 MB: one auto-coded 64x64 tensor (report included) under many names
    w = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    enc = encode_tensor(w, "auto", bpw=4)
    big = d / "big_index.qnt"
    with (nullcontext() if REUSE and big.exists() else QntWriter(big, model={"id": "big-index"})) as out:
        for i in (range(0) if out is None else range(int(os.environ.get("QN_BIG_INDEX_TENSORS", "220000")))):
            out.add_tensor(f"model.layers.{i // 9}.block.{i % 9}.weight", enc, w.shape, "float32", source_dtype="float32")
    mid = d / "index_53MB.qnt"  # below the new default index limit: what opening such a file costs
    with (nullcontext() if REUSE and mid.exists() else QntWriter(mid, model={"id": "index-53MB"})) as out:
        for i in (range(0) if out is None else range(55000)):
            out.add_tensor(f"model.layers.{i // 9}.block.{i % 9}.weight", enc, w.shape, "float32", source_dtype="float32")
    cases["inspect-index-53MB"] = (mid, "inspect")
    cases["inspect-index-250MB"] = (big, "inspect")
    cases["open-index-250MB"] = (big, "open")
    cases["open-index-250MB-max-index-256M"] = (big, "open", {"QUANTONIUM_MAX_INDEX": "256M"})
    for name in ("lossless-constant-2^28-f32", "direct-constant-2^28-f32", "rft-spectral-constant-1x2^24-f32"):
        cases[name + "-max-memory-512M"] = (*cases[name][:2], {"QUANTONIUM_MAX_MEMORY": "512M"})
    return cases


CHILD = r"""
import sys, time
op, path = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
outcome = "ok"
try:
    if op == "read":
        from quantonium.container import QntFile
        with QntFile(path) as f:
            for name in f:
                f.read(name)
    elif op == "open":
        from quantonium.container import QntFile
        QntFile(path).close()
    elif op == "inspect":
        import contextlib, io, os
        from quantonium.cli import main
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(io.StringIO()) as err:
            rc = main(["inspect", path])
        outcome = "ok" if rc == 0 else "exit %d: %s" % (rc, err.getvalue().strip().splitlines()[0][:160])
except BaseException as e:
    outcome = "%s: %s" % (type(e).__name__, (str(e).splitlines() or [""])[0][:160])
hwm = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:")]
print(repr((time.perf_counter() - t0, hwm[0], outcome)))
"""


def run_child(pythonpath: str, op: str, path: Path, extra_env: dict | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": pythonpath, **(extra_env or {})}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, op, str(path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_anon = 0
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("RssAnon:"):
                    peak_anon = max(peak_anon, int(line.split()[1]) * 1024)
        except OSError:
            pass
        time.sleep(0.005)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    try:
        secs, maxrss, outcome = eval(out.strip().splitlines()[-1])  # noqa: S307 - our own child's repr
    except Exception:
        secs, maxrss, outcome = wall, 0, f"child died (exit {proc.returncode}): {(err.strip().splitlines() or [''])[-1][:160]}"
    return {"seconds": secs, "peak_rss_bytes": maxrss, "peak_anon_bytes": peak_anon, "outcome": outcome}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tree", action="append", required=True, help="LABEL=PYTHONPATH (repeat: interleaved)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--case", action="append", help="run only these cases")
    ap.add_argument("--workdir", help="keep the crafted files here")
    ap.add_argument("--reuse", action="store_true", help="with --workdir: use the files already there")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    global REUSE
    REUSE = args.reuse
    trees = [t.split("=", 1) for t in args.tree]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(args.workdir or tmp)
        d.mkdir(parents=True, exist_ok=True)
        cases = make_cases(d)
        results = []
        for case, (path, op, *env) in cases.items():
            if args.case and case not in args.case:
                continue
            runs: dict[str, list[dict]] = {label: [] for label, _ in trees}
            for _ in range(args.rounds):
                for label, pp in trees:
                    runs[label].append(run_child(str(Path(pp).resolve()), op, path, env[0] if env else None))
            for label, rs in runs.items():
                row = {
                    "case": case, "tree": label, "op": op, "file_bytes": path.stat().st_size, "rounds": len(rs),
                    "seconds": statistics.median(r["seconds"] for r in rs),
                    "peak_rss_mib": statistics.median(r["peak_rss_bytes"] for r in rs) / 2**20,
                    "peak_anon_mib": statistics.median(r["peak_anon_bytes"] for r in rs) / 2**20,
                    "outcome": rs[-1]["outcome"],
                }
                results.append(row)
                print(f"{case:<36} {label:<8} {row['file_bytes']:>12,} B  {row['seconds']:8.2f} s  "
                      f"RSS {row['peak_rss_mib']:9.1f} MiB  anon {row['peak_anon_mib']:9.1f} MiB  {row['outcome'][:110]}", flush=True)
    if args.json:
        meta = {"machine": "2 shared cores, x86-64, 23 GiB RAM, no swap", "python": sys.version.split()[0],
                "command": " ".join(sys.argv)}
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
