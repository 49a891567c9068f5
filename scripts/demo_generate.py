#!/usr/bin/env python3
"""Short greedy generation from a .qnt model, next to the uncompressed source (the main job's demo).

    python scripts/demo_generate.py MODEL.qnt SOURCE [--prompt TEXT] [--tokens N]

SOURCE is what the .qnt was made from (a folder, or a .gguf file); both
models answer the same chat prompt greedily, and the share of identical
next-token choices along the compressed model's answer is printed.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

import quantonium
from quantonium.models import load_source


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("qnt")
    ap.add_argument("source")
    ap.add_argument("--prompt", default="What is the capital of France? Answer in one sentence.")
    ap.add_argument("--tokens", type=int, default=32)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    model, tok = quantonium.load(args.qnt)
    print(f"loaded {args.qnt} as {type(model).__name__} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    orig, _ = load_source(args.source)
    msgs = [{"role": "user", "content": args.prompt}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        out_c = model.generate(ids, max_new_tokens=args.tokens, do_sample=False)
        out_o = orig.generate(ids, max_new_tokens=args.tokens, do_sample=False)
        # teacher-forced agreement along the compressed model's answer
        lc = model(out_c).logits[0, ids.shape[1] - 1 : -1].argmax(-1)
        lo = orig(out_c).logits[0, ids.shape[1] - 1 : -1].argmax(-1)
    agree = (lc == lo).float().mean().item()
    print(f"prompt:       {args.prompt}")
    print(f"original:     {tok.decode(out_o[0, ids.shape[1]:], skip_special_tokens=True).strip()}")
    print(f"compressed:   {tok.decode(out_c[0, ids.shape[1]:], skip_special_tokens=True).strip()}")
    print(f"next-token agreement along the compressed answer: {agree:.1%} of {lc.numel()} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
