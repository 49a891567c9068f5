"""Issue 14's verdict tables from the `quantonium compare` runs of the fixed-rate methods.

Reads each run's ``compare.json`` (or, for a run still going or stopped, its ``compare.partial.jsonl``: the
rows measured so far, said so in the output), merges the runs of one model, and writes the summary over
seeds (``compare.fixed_rate_summary``) and the comparisons of ``rft-fixed`` with ``fixed`` (RTN or GPTQ on
the same grid), the randomised Hadamard (``wht-fixed``) and the plain DFT (``dft-fixed``).

    .venv/bin/python bench/rft_fixed_report.py --json bench/results/rft_fixed_summary.json \\
        --md bench/results/rft_fixed_summary.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from quantonium import compare as cmp

#: the runs of each model, in order; a (method, bits, seed) measured by two runs counts once (the first)
RUNS = {
    "minilm": ["bench/results/rft_fixed_minilm", "bench/results/rft_fixed_minilm_gptq_wht",
               "bench/results/rft_fixed_minilm_gptq_dft_g128", "bench/results/rft_fixed_minilm_gptq_wht_2bit"],
    "smollm2": ["bench/results/rft_fixed_smollm2_rtn", "bench/results/rft_fixed_smollm2_gptq",
                "bench/results/rft_fixed_smollm2_gptq_g32", "bench/results/rft_fixed_smollm2_gptq_g64",
                "bench/results/rft_fixed_smollm2_gptq_g64_3bit", "bench/results/rft_fixed_smollm2_2bit"],
}


def _key(row: dict) -> tuple:
    return row["method"], row["requested_bits"], (row.get("info") or {}).get("seed")


def load_runs(dirs: list[str]) -> tuple[dict | None, list[str]]:
    res, notes = None, []
    for d in dirs:
        p = Path(d)
        if (p / "compare.json").is_file():
            r = json.loads((p / "compare.json").read_text())
            notes.append(f"{d}: complete ({len(r['rows'])} rows, {len(r['not_run'])} not run)")
        elif (p / "compare.partial.jsonl").is_file():
            rows = [json.loads(x) for x in (p / "compare.partial.jsonl").read_text().splitlines() if x.strip()]
            kind = "encoder" if rows and "mean_cosine" in rows[0] else "causal-lm"
            r = {"kind": kind, "rows": rows, "not_run": []}
            notes.append(f"{d}: INCOMPLETE, {len(rows)} rows measured so far (compare.partial.jsonl)")
        else:
            notes.append(f"{d}: not run")
            continue
        if res is None:
            res = {"kind": r["kind"], "rows": [], "not_run": []}
        seen = {_key(x) for x in res["rows"]}
        fresh = [x for x in r["rows"] if _key(x) not in seen]
        if len(fresh) < len(r["rows"]):
            notes[-1] += f"; {len(r['rows']) - len(fresh)} row(s) already measured by an earlier run (not counted again)"
        res["rows"] += fresh
        res["not_run"] += r.get("not_run", [])
    return res, notes


def side_by_side(summary: list[dict], encoder: bool) -> list[str]:
    """One row per (bits, group, GPTQ): the four transforms side by side (the README's table)."""
    by = {(r["bits"], r["group"], r["gptq"], r["transform"]): r for r in summary}
    head = "mean cosine" if encoder else "mean KL nats (perplexity change)"
    out = [f"Side by side ({head}; mean ± sample standard deviation over seeds, n = seeds; fixed has no seed):", "",
           "| bits | group | GPTQ | bpw | fixed | rft-fixed | wht-fixed | dft-fixed |", "|---|---|---|---|---|---|---|---|"]
    for b, g, q in sorted({k[:3] for k in by}):
        cells, bpw = [], None
        for t in ("fixed", "rft-fixed", "wht-fixed", "dft-fixed"):
            r = by.get((b, g, q, t))
            if r is None:
                cells.append("not run")
                continue
            bpw = r["bpw"] if t == "fixed" or bpw is None else bpw
            if encoder:
                c = f"{r['mean_cosine']:.4f}" + (f" ± {r['mean_cosine_std']:.4f}" if r["seeds"] > 1 else "")
            else:
                c = (f"{r['mean_kl_nats']:.3f}" + (f" ± {r['mean_kl_nats_std']:.3f}" if r["seeds"] > 1 else "")
                     + f" ({r['perplexity_change_pct']:+.0f}%)")
            cells.append(c + (f" n={r['seeds']}" if t != "fixed" else ""))
        out.append(f"| {b:g} | {g} | {'yes' if q else 'no'} | {bpw:.3f} | " + " | ".join(cells) + " |")
    return out


def tallies(verdicts: list[dict]) -> list[dict]:
    out = []
    for other in ("fixed", "wht-fixed", "dft-fixed"):
        for gptq in (False, True):
            for bits in (3.0, 4.0):
                g = [(v["rft_gain_vs_" + other], v["rft_gain_se_vs_" + other]) for v in verdicts
                     if v["bits"] == bits and v["gptq"] == gptq and "rft_gain_vs_" + other in v]
                if g:
                    out.append({"against": other, "gptq": gptq, "bits": bits, "n": len(g),
                                "better": sum(x > 0 for x, _ in g),
                                "sig_better": sum(x > 2 * se > 0 for x, se in g),
                                "sig_worse": sum(-x > 2 * se > 0 for x, se in g),
                                "mean_gain": float(np.mean([x for x, _ in g]))})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--md", required=True)
    args = ap.parse_args(argv)
    out, md = {}, []
    for model, dirs in RUNS.items():
        res, notes = load_runs(dirs)
        out[model] = {"runs": notes}
        md += [f"## {model}", ""] + [f"- {n}" for n in notes] + [""]
        if res is None:
            continue
        out[model]["summary"] = cmp.fixed_rate_summary(res)
        out[model]["verdicts"] = cmp.fixed_rate_verdicts(res)
        not_run = sorted({(n["method"], n["bits"], n["reason"]) for n in res["not_run"]})
        out[model]["not_run"] = [{"method": m, "bits": b, "reason": r} for m, b, r in not_run]
        md += side_by_side(out[model]["summary"], res["kind"] == "encoder") + [""]
        md.append(cmp.fixed_rate_tables(res).strip())
        tally = tallies(out[model]["verdicts"])
        out[model]["tallies"] = tally
        md += ["", "Tally over the group sizes measured, at 3 and 4 bits: gain > 0 means rft-fixed better; "
               "'significant' = |gain| > 2 standard errors.", "",
               "| against | GPTQ | bits | groups | rft-fixed better | significantly better | significantly worse | mean gain |",
               "|---|---|---|---|---|---|---|---|"]
        for t in tally:
            md.append(f"| {t['against']} | {'yes' if t['gptq'] else 'no'} | {t['bits']:g} | {t['n']} | {t['better']} | "
                      f"{t['sig_better']} | {t['sig_worse']} | {t['mean_gain']:+.5f} |")
        if not_run:
            md += ["", "Not run:"] + [f"- {m} at {b:g} bits: {r}" for m, b, r in not_run]
        md.append("")
    Path(args.json).write_text(json.dumps(out, indent=1))
    Path(args.md).write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
