"""Payloads written by Quantonium before rANS format 2 (main at e377c62); decoded by tests/test_entropy.py."""
import base64, hashlib, json, sys
import numpy as np, ml_dtypes
from quantonium.codecs import encode_tensor, decode_tensor
rng = np.random.default_rng(2024)
w = (rng.standard_normal((48, 64)) * 0.02).astype(np.float32)
w[3, 5] = 0.9  # an outlier: int16 symbols at high rate
pos = (rng.standard_normal((32, 40)) * 0.1).astype(np.float32)
cases = {
    "direct_int8": (w, "direct", dict(bpw=3.0), None),
    "direct_int16": (w, "direct", dict(snr_db=60.0), None),
    "rft_dense": (w, "rft-dense", dict(bpw=4.0), None),
    "direct_scaled": (w, "direct", dict(bpw=4.0), dict(row_scale=np.linspace(0.5, 2, 48), col_scale=np.linspace(1, 3, 64))),
    "lossless_f32": (w, "lossless", {}, None),
    "lossless_f16": (w.astype(np.float16), "lossless", {}, None),
    "lossless_bf16": (w.astype(ml_dtypes.bfloat16), "lossless", {}, None),
    "rft_spectral": (pos, "rft-spectral", dict(keep=0.3), dict(axis=0)),
}
out = {}
for name, (a, codec, tgt, opts) in cases.items():
    enc = encode_tensor(a, codec, options=opts, **tgt)
    dt = {np.dtype(np.float32): "float32", np.dtype(np.float16): "float16"}.get(a.dtype, "bfloat16")
    dec = decode_tensor(enc.payload, codec, a.shape, dt)
    out[name] = {"codec": codec, "version": enc.version, "shape": list(a.shape), "dtype": dt,
                 "payload": base64.b64encode(enc.payload).decode(),
                 "decoded_sha256": hashlib.sha256(np.ascontiguousarray(dec).tobytes()).hexdigest()}
    if codec.startswith("rft-"):
        # the transform codecs' output is defined to float rounding only (FFTW's
        # codelets and FMA differ between machines): the tensor itself, compared
        # with a tolerance (added after e377c62, from the same decoder's output)
        out[name]["decoded"] = base64.b64encode(np.ascontiguousarray(dec).tobytes()).decode()
json.dump(out, open(sys.argv[1], "w"), indent=1)
print({k: (v["codec"], v["version"], len(v["payload"])) for k, v in out.items()})
