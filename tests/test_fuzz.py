"""The fuzzing harness (tests/fuzz/fuzz_qnt.py): a short bounded atheris pass, the seeds, and every finding.

The long run is ``bash scripts/fuzz_python.sh SECONDS``. A finding (an input that
makes the reader raise anything but its one-line error, crash or hang) is added
to ``REGRESSIONS`` below, with what it was, and stays a test.
"""

from __future__ import annotations

import importlib.util
import platform
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("fuzz_qnt", HERE / "fuzz" / "fuzz_qnt.py")
fuzz_qnt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fuzz_qnt)


def _varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    return bytes(out + bytes([v]))


def _payload(codec: str, version: int, params: dict, streams: list[bytes]) -> bytes:
    from quantonium.codecs.base import pack_payload

    return pack_payload(codec, version, params, streams)


#: Inputs that once got past the reader's checks, or that stand for the issue's cases. (name, input)
REGRESSIONS = [
    # issue 11 item 3: constant rANS streams claiming more symbols than the shape holds
    ("direct-count-mismatch", fuzz_qnt.payload_input("direct", (64, 64), "float16",
     _payload("direct", 2, {"step": 0.5, "symbols": "int8"}, [_varint(1 << 35) + b"\x00\x01\x80\x80\x04"]))),
    ("lossless-count-mismatch", fuzz_qnt.payload_input("lossless", (8, 8), "float32",
     _payload("lossless", 1, {"dtype": "float32", "modes": ["rans"] * 4}, [_varint(1 << 28) + b"\x0e\x01\x80\x80\x04"] * 4))),
    # item 5: a deeply nested payload header
    ("deep-header", fuzz_qnt.payload_input("fixed", (8, 8), "float32",
     (lambda h: len(h).to_bytes(4, "little") + h)(b"[" * 100_000 + b"]" * 100_000))),
    # wrong JSON types in payload parameters
    ("param-list", fuzz_qnt.payload_input("rft-spectral", (8, 8), "bfloat16",
     _payload("rft-spectral", 1, {"axis": [1], "beta": 1.0, "sigma": 1.0, "transform": "phi-rft", "values": "re-im"}, [b"", b""]))),
    ("file-major-zero", b"\x00" + b"QNTFILE\x00" + b"\x00" * 56 + b"QNTINDEX" + b"\x00" * 56),
]


@pytest.mark.parametrize("name,data", REGRESSIONS, ids=[r[0] for r in REGRESSIONS])
def test_findings_stay_fixed(name, data):
    fuzz_qnt.one_input(data)


def test_seeds_pass_the_harness(tmp_path):
    seeds = fuzz_qnt.make_seeds(tmp_path / "seeds")
    assert len(seeds) >= 20
    for s in seeds:
        fuzz_qnt.one_input(s.read_bytes())


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                    reason="atheris ships wheels for x86-64 Linux only (pyproject pins it there)")
def test_short_fuzzing_pass(tmp_path):
    """A bounded pass in the suite: 8 seconds of libFuzzer over the seeds (the long run: scripts/fuzz_python.sh)."""
    import atheris  # noqa: F401 - a test dependency on x86-64: a missing install fails here, it does not skip

    seeds = tmp_path / "seeds"
    fuzz_qnt.make_seeds(seeds)
    (tmp_path / "corpus").mkdir()
    r = subprocess.run([sys.executable, str(HERE / "fuzz" / "fuzz_qnt.py"), "-max_total_time=8", "-seed=1", "-rss_limit_mb=3072",
                        "-timeout=30", f"-artifact_prefix={tmp_path}/", str(tmp_path / "corpus"), str(seeds)],
                       capture_output=True, text=True, timeout=300)
    findings = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-", "leak-")))
    assert r.returncode == 0 and not findings, f"fuzzing found {findings}:\n{r.stderr[-3000:]}"
    assert "Done" in r.stderr and "runs in" in r.stderr
