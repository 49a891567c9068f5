"""Atheris (libFuzzer) harness over the reader: ``quantonium.open`` + every read, and every codec's decoder.

One input is either a whole ``.qnt`` file or one codec payload:

- first byte 0 mod 4: the rest is a file; it is opened with ``QntFile`` (as
  ``quantonium.open`` does), every tensor read, every embedded file and the
  config read. Only ``QntFormatError`` (with ``QntLimitError``) may come out.
- first byte 2 mod 4: the same, after the harness has re-forged the file's
  CRCs (index, and every payload the index points at), as an attacker would:
  without it, nearly every mutation stops at a checksum.
- first byte odd: byte 0 picks the codec, bytes 1-3 the shape (1..64 x 1..64)
  and dtype, the rest is the payload given to ``decode_tensor``. Only
  ``CodecError`` may come out, and a result must have the claimed shape and dtype.

Anything else (another exception, a crash, a hang, a read using more than the
memory limit of :data:`MAX_MEMORY`) is a finding: libFuzzer stops and writes
the input to ``-artifact_prefix``; each finding becomes a test in
``tests/test_fuzz.py`` (``REGRESSIONS``).

    python tests/fuzz/fuzz_qnt.py --make-seeds DIR      # seeds made by the real writer and encoders
    python tests/fuzz/fuzz_qnt.py [libFuzzer flags] CORPUS [SEEDS]

``bash scripts/fuzz_python.sh [SECONDS]`` does both; the test suite runs a
short pass (``tests/test_fuzz.py``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

MAX_MEMORY = 64 << 20
CODEC_ORDER = ("lossless", "direct", "rft-dense", "fixed", "rft-spectral", "rft-fixed", "wht-fixed")  # append only
DTYPE_ORDER = ("float32", "float16", "bfloat16")


def _imports():
    import numpy as np

    from quantonium.codecs import CODECS, CodecError, decode_tensor
    from quantonium.container import QntFile, QntFormatError

    missing = set(CODECS) - set(CODEC_ORDER)
    if missing:  # a codec added on main must be fuzzed too: add it to CODEC_ORDER
        raise SystemExit(f"fuzz_qnt: codecs not covered by the harness: {sorted(missing)}")
    return np, QntFile, QntFormatError, CodecError, decode_tensor


_SCRATCH = Path(tempfile.gettempdir() if not os.path.isdir("/dev/shm") else "/dev/shm") / f"fuzz_qnt.{os.getpid()}.qnt"


def payload_input(codec: str, shape: tuple[int, int], dtype: str, payload: bytes) -> bytes:
    """The input that makes the harness decode ``payload`` (the inverse of the odd-byte layout)."""
    return bytes([2 * CODEC_ORDER.index(codec) + 1, shape[0] - 1, shape[1] - 1, DTYPE_ORDER.index(dtype)]) + payload


def one_input(data: bytes) -> None:
    """Runs one input; raises only for a finding."""
    np, QntFile, QntFormatError, CodecError, decode_tensor = _IMPORTS
    if not data:
        return
    if data[0] % 2 == 0:
        _SCRATCH.write_bytes(reforge(data[1:]) if data[0] % 4 == 2 else data[1:])
        try:
            with QntFile(_SCRATCH, max_memory=MAX_MEMORY) as f:
                for name in f:
                    a = f.read(name)
                    info = f.info(name)
                    assert a.shape == tuple(info["shape"]) and a.dtype.name == info["dtype"], name
                for name in f.file_names:
                    f.file(name)
                f.config()
                f.verify()
        except QntFormatError as e:
            assert "\n" not in str(e) and str(e).startswith(str(_SCRATCH)), str(e)
        return
    if len(data) < 4:
        return
    codec = CODEC_ORDER[(data[0] >> 1) % len(CODEC_ORDER)]
    shape = (1 + data[1] % 64, 1 + data[2] % 64)
    dtype = DTYPE_ORDER[data[3] % 3]
    try:
        a = decode_tensor(data[4:], codec, shape, dtype, max_memory=MAX_MEMORY)
    except CodecError as e:
        assert "\n" not in str(e), str(e)
        return
    assert a.shape == shape and a.dtype.name == dtype, (a.shape, a.dtype)


def reforge(raw: bytes) -> bytes:
    """``raw`` with valid CRCs: the index's, and each span's the index lists (when it parses)."""
    import json
    import zlib

    from quantonium.container import ALIGN, FOOTER

    if len(raw) < 2 * ALIGN:
        return raw
    magic, ioff, ilen, _, major, minor, end = FOOTER.unpack_from(raw, len(raw) - ALIGN)
    if ioff + ilen > len(raw) - ALIGN:
        return raw
    body = raw[ioff : ioff + ilen]
    try:
        index = json.loads(body)
        entries = list(index.get("tensors", [])) + list(index.get("files", {}).values())
        for e in entries:
            o, n = e.get("offset"), e.get("length")
            if isinstance(o, int) and isinstance(n, int) and 0 <= o <= o + n <= len(raw):
                e["crc32"] = zlib.crc32(raw[o : o + n])
        body = json.dumps(index).encode()
    except Exception:  # not a JSON object of the expected shape: only the index CRC is fixed
        pass
    footer = FOOTER.pack(magic, ioff, len(body), zlib.crc32(body), major, minor, end)
    return raw[:ioff] + body + b"\0" * ((-len(body)) % ALIGN) + footer


def make_seeds(folder: Path) -> list[Path]:
    """Small real inputs: files written by the real writer (every codec, every dtype) and payloads."""
    import ml_dtypes
    import numpy as np

    from quantonium.codecs import encode_tensor
    from quantonium.container import QntWriter

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    runs = [("lossless", {}), ("direct", {"snr_db": 20}), ("rft-dense", {"snr_db": 20}), ("fixed", {"snr_db": 15}),
            ("rft-spectral", {"keep": 0.5}), ("rft-spectral", {"keep": 0.3, "options": {"axis": 0}}),
            ("rft-fixed", {"snr_db": 15}), ("wht-fixed", {"snr_db": 15})]
    for dt in DTYPE_ORDER:
        w = (rng.standard_normal((8, 24)) * 0.1).astype(ml_dtypes.bfloat16 if dt == "bfloat16" else dt)
        path = folder / f"file-{dt}.qnt"
        with QntWriter(path, model={"id": "seed", "tied": {"alias": "lossless"}}) as qw:
            for codec, kw in runs:
                enc = encode_tensor(w, codec, **kw)
                name = codec if codec != "rft-spectral" or "options" not in kw else "rft-spectral-ax0"
                qw.add_tensor(name, enc, w.shape, dt)
                seed = folder / f"payload-{name}-{dt}"
                seed.write_bytes(payload_input(codec, w.shape, dt, enc.payload))
                out.append(seed)
            qw.add_file("config.json", b'{"model_type": "none", "architectures": ["X"]}')
        for mode, tag in ((0, "file"), (2, "reforged")):
            seed = folder / f"input-{tag}-{dt}"
            seed.write_bytes(bytes([mode]) + path.read_bytes())
            out.append(seed)
        path.unlink()
    return out


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--make-seeds":
        seeds = make_seeds(Path(sys.argv[2]))
        print(f"fuzz_qnt: {len(seeds)} seeds in {sys.argv[2]}")
        return
    import atheris

    global _IMPORTS
    with atheris.instrument_imports(include=["quantonium"]):
        _IMPORTS = _imports()
    try:
        atheris.Setup(sys.argv, one_input)
        atheris.Fuzz()
    finally:
        _SCRATCH.unlink(missing_ok=True)


_IMPORTS = None
if __name__ == "__main__":
    main()
else:  # imported by the tests: no instrumentation
    _IMPORTS = _imports()
