"""Hostile .qnt files (issue 11): a file from a stranger is safe to open, read and decompress."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from quantonium.codecs import encode_tensor
from quantonium.container import ALIGN, FOOTER, QntFile, QntFormatError, QntWriter
from quantonium.filenames import UnsafeFileName, check_file_name, is_allowed, target_path


def reindex(src: Path, dst: Path, mutate) -> Path:
    """A copy of ``src`` whose JSON index was changed by ``mutate``, with valid CRCs (as an attacker would)."""
    raw = src.read_bytes()
    magic, ioff, ilen, _, major, minor, end = FOOTER.unpack_from(raw, len(raw) - ALIGN)
    index = json.loads(raw[ioff : ioff + ilen])
    mutate(index)
    body = json.dumps(index).encode()
    footer = FOOTER.pack(magic, ioff, len(body), zlib.crc32(body), major, minor, end)
    dst.write_bytes(raw[:ioff] + body + b"\0" * ((-len(body)) % ALIGN) + footer)
    return dst


def small_file(path: Path) -> Path:
    w = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    with QntWriter(path, model={"id": "t"}) as out:
        out.add_tensor("w", encode_tensor(w, "direct", snr_db=30), w.shape, "float32")
        out.add_file("config.json", b"{}")
        out.add_file("tokenizer.json", b"{}")
    return path


BAD_NAMES = ["../x.txt", "/tmp/abs.txt", "a/../../x", "..", ".", "", "sub/config.json", "config.json/..",
             "1_Pooling/../../x", "1_Pooling/evil.sh", "C:\\x", "config.json\0", "x" * 200, "~/.bashrc",
             "1_Pooling//config.json", "./config.json"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_unsafe_names_are_refused_by_the_rule(name):
    assert not is_allowed(name)
    with pytest.raises(UnsafeFileName):
        check_file_name(name)


def test_known_names_are_accepted(tmp_path):
    for name in ("config.json", "tokenizer.json", "generation_config.json", "1_Pooling/config.json", "modules.json"):
        assert check_file_name(name) == name
        assert tmp_path.resolve() in target_path(tmp_path, name).parents


def test_writer_refuses_unsafe_names(tmp_path):
    with QntWriter(tmp_path / "m.qnt") as out:
        for name in ("../x.txt", "/tmp/abs.txt", "script.sh"):
            with pytest.raises(UnsafeFileName):
                out.add_file(name, b"owned")
    assert not (tmp_path.parent / "x.txt").exists()


@pytest.mark.parametrize("evil", ["../x.txt", "/ABS/owned.txt", "../../owned.txt", "sub/../../owned.txt"])
def test_reader_refuses_traversal_in_a_forged_index(tmp_path, evil):
    good = small_file(tmp_path / "good.qnt")
    abs_target = tmp_path / "abs" / "owned.txt"
    evil = evil.replace("/ABS", str(tmp_path / "abs"))

    def mutate(index):
        index["files"][evil] = index["files"].pop("tokenizer.json")

    bad = reindex(good, tmp_path / "bad.qnt", mutate)
    with pytest.raises(QntFormatError, match="not allowed"):
        QntFile(bad)
    # the high-level entry points refuse it too, and write nothing anywhere
    from quantonium.cli import main

    (tmp_path / "abs").mkdir()
    out = tmp_path / "deep" / "out"
    assert main(["decompress", str(bad), "-o", str(out)]) == 1
    assert not out.exists()
    assert not (tmp_path / "deep" / "x.txt").exists() and not (tmp_path / "x.txt").exists()
    assert not abs_target.exists() and not (tmp_path / "owned.txt").exists()
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix not in (".qnt",)]
    assert leftovers == []


# =====================================================================================
# Helpers shared by the corpus below
# =====================================================================================
import errno  # noqa: E402
import os  # noqa: E402
import stat  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tracemalloc  # noqa: E402

from quantonium import limits  # noqa: E402
from quantonium.codecs import Encoded, decode_tensor  # noqa: E402
from quantonium.codecs.base import MemoryLimitError, pack_payload  # noqa: E402
from quantonium.container import QntLimitError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def constant_stream(count: int, value: int = 0) -> bytes:
    """An rANS stream of ``count`` copies of one symbol: a few bytes whatever the count (legal)."""
    return varint(count) + varint((value << 1) ^ (value >> 63)) + varint(1) + varint(1 << 16)


def forged(path: Path, payload: bytes, shape, dtype: str, codec: str, version: int, *, model=None) -> Path:
    """A well-formed file (valid CRCs) holding one hand-made payload."""
    numel = int(np.prod(shape, dtype=np.int64))
    with QntWriter(path, model=model or {"id": "forged"}) as w:
        w.add_tensor("w", Encoded(codec, version, payload, numel, float("nan"), {}), tuple(shape), dtype)
    return path


def cli(args: list[str]) -> tuple[int, str, str]:
    """Runs the CLI in a child process: (exit status, stdout, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run([sys.executable, "-m", "quantonium", *args], capture_output=True, text=True, env=env, timeout=600)
    return p.returncode, p.stdout, p.stderr


def one_line_error(rc: int, err: str, name: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("[transformers]")]
    assert rc == 1, err
    assert len(lines) == 1 and lines[0].startswith("quantonium: error: "), err
    assert "Traceback" not in err
    assert name in lines[0], lines[0]


def peak_bytes(fn) -> int:
    """Peak bytes traced (numpy reports its buffers to tracemalloc) while ``fn`` runs, exceptions included."""
    tracemalloc.start()
    try:
        fn()
    except (QntFormatError, ValueError):
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def multi_file(path: Path) -> Path:
    """Every codec once, small, with config and tokenizer files: the corpus's base file."""
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((64, 96)) * 0.05).astype(np.float32)
    with QntWriter(path, model={"id": "multi", "architecture": "none", "tied": {"alias.weight": "direct"}}) as out:
        for codec, kw in (("lossless", {}), ("direct", {"snr_db": 25}), ("rft-dense", {"snr_db": 25}),
                          ("fixed", {"snr_db": 20}), ("rft-spectral", {"keep": 0.5})):
            out.add_tensor(codec, encode_tensor(w, codec, **kw), w.shape, "float32")
        out.add_file("config.json", b'{"model_type": "none"}')
        out.add_file("tokenizer.json", b"{}")
    return path


# =====================================================================================
# Item 3: memory amplification. Streams are checked against the claim before anything is
# allocated; working memory counts against max_memory; a constant stream is legal at any
# count and bounded by the limit (limits.py, codecs/base.py).
# =====================================================================================
BIG = (16384, 16384)  # 2^28 values claimed by a payload of a few bytes
N_BIG = BIG[0] * BIG[1]


def _lossless_constant(n):
    return pack_payload("lossless", 1, {"dtype": "float32", "modes": ["rans"] * 4}, [constant_stream(n, 7)] * 4), "lossless", 1


def _direct_constant(n):
    return pack_payload("direct", 2, {"step": 0.5, "symbols": "int8"}, [constant_stream(n, 3)]), "direct", 2


def _spectral_constant(shape):
    size = shape[0] * (shape[1] // 2 + 1)
    params = {"axis": 1, "beta": 1.0, "sigma": 1.0, "transform": "phi-rft", "kept": size, "step": 0.01,
              "symbols": "int8", "values": "re-im", "value_margin_db": 10.0}
    streams = [constant_stream((size + 7) // 8, 255), constant_stream(2 * size, 1)]
    return pack_payload("rft-spectral", 1, params, streams), "rft-spectral", 1


@pytest.mark.parametrize("kind", ["lossless", "direct", "rft-spectral"])
def test_constant_stream_claiming_a_huge_tensor_is_refused_before_allocating(tmp_path, kind):
    payload, codec, ver = {"lossless": _lossless_constant(N_BIG), "direct": _direct_constant(N_BIG),
                           "rft-spectral": _spectral_constant((1, 1 << 24))}[kind]
    shape = (1, 1 << 24) if kind == "rft-spectral" else BIG
    p = forged(tmp_path / f"{kind}.qnt", payload, shape, "float32", codec, ver)
    assert p.stat().st_size < 2048  # about 1.5 KB, as in the issue
    with QntFile(p, max_memory="256M") as f:
        def read():
            with pytest.raises(QntLimitError, match=rf"{p.name}.*memory limit of 256.00 MiB"):
                f.read("w")
        assert peak_bytes(read) < 1 << 20  # refused before any output array exists


@pytest.mark.parametrize("kind", ["lossless", "direct", "rft-spectral"])
def test_constant_stream_within_the_limit_decodes(tmp_path, kind):
    """The rule: a constant tensor is legal whatever its size; the limit bounds it, not the payload size."""
    shape = (256, 512)
    payload, codec, ver = {"lossless": _lossless_constant(shape[0] * shape[1]), "direct": _direct_constant(shape[0] * shape[1]),
                           "rft-spectral": _spectral_constant(shape)}[kind]
    p = forged(tmp_path / f"{kind}.qnt", payload, shape, "float32", codec, ver)
    with QntFile(p, max_memory="64M") as f:
        a = f.read("w")
    assert a.shape == shape and a.dtype == np.float32 and np.all(np.isfinite(a))
    assert np.all(a == (a[:1] if kind == "rft-spectral" else a.flat[0]))  # spectral: every row the same spectrum


def test_stream_count_is_checked_before_the_claimed_size_is_allocated(tmp_path):
    """An index claiming 2^35 float16 values with a 100-symbol stream: refused on the count, nothing allocated
    (before: a 32 GiB allocation, then the count check)."""
    payload, codec, ver = _direct_constant(100)
    p = forged(tmp_path / "claim.qnt", payload, (1 << 35,), "float16", codec, ver)
    with QntFile(p, max_memory=1 << 50) as f:  # a limit that does not stop it: the count must
        def read():
            with pytest.raises(QntFormatError, match=r"claim\.qnt.*holds 100 symbols, the shape needs 34359738368"):
                f.read("w")
        assert peak_bytes(read) < 1 << 20
    with QntFile(p) as f, pytest.raises(QntLimitError, match="64.00 GiB"):  # the default limit stops it first
        f.read("w")


@pytest.mark.parametrize("case", ["lossless-raw-short", "lossless-rans-count", "fixed-packed-short", "fixed-scales",
                                  "spectral-bitmap-count", "spectral-values-count", "spectral-kept-vs-bitmap",
                                  "rft-dense-count", "direct-scale-stream"])
def test_streams_that_cannot_match_the_shape_are_refused_before_allocating(tmp_path, case):
    n = 1 << 26  # claimed; every stream below is tiny
    shape = (1 << 13, 1 << 13)
    payloads = {
        "lossless-raw-short": pack_payload("lossless", 1, {"dtype": "float32", "modes": ["raw"] * 4}, [b"\0" * 10] * 4),
        "lossless-rans-count": pack_payload("lossless", 1, {"dtype": "float32", "modes": ["rans"] * 4}, [constant_stream(n - 1)] * 4),
        "fixed-packed-short": pack_payload("fixed", 1, {"bits": 4, "group_size": 1 << 26, "asymmetric": False}, [b"\0" * 10, b"\0\0"]),
        "fixed-scales": pack_payload("fixed", 1, {"bits": 4, "group_size": 64, "asymmetric": False}, [b"\0" * (n // 2), b"\0\0"]),
        "spectral-bitmap-count": pack_payload("rft-spectral", 1, {"axis": 1, "beta": 1.0, "sigma": 1.0, "transform": "phi-rft", "kept": 1,
                                              "step": 0.1, "symbols": "int8", "values": "re-im"}, [constant_stream(5, 1), constant_stream(2, 1)]),
        "spectral-values-count": pack_payload("rft-spectral", 1, {"axis": 1, "beta": 1.0, "sigma": 1.0, "transform": "phi-rft", "kept": 1,
                                              "step": 0.1, "symbols": "int8", "values": "re-im"},
                                              [constant_stream(((1 << 13) * 4097 + 7) // 8, 0), constant_stream(3, 1)]),
        "spectral-kept-vs-bitmap": pack_payload("rft-spectral", 1, {"axis": 1, "beta": 1.0, "sigma": 1.0, "transform": "phi-rft", "kept": 2,
                                                "step": 0.1, "symbols": "int8", "values": "re-im"},
                                                [constant_stream(((1 << 13) * 4097 + 7) // 8, 0), constant_stream(4, 1)]),
        "rft-dense-count": pack_payload("rft-dense", 2, {"step": 0.5, "symbols": "int8", "transform": "real-orthogonal-phi-rft", "axis": -1,
                                                         "beta": 1.0, "sigma": 1.0}, [constant_stream(n + 1)]),
        "direct-scale-stream": pack_payload("direct", 2, {"step": 0.5, "symbols": "int8", "scales": "row"}, [constant_stream(n), b"\0\x3c"]),
    }
    codec = {"lossless": "lossless", "fixed": "fixed", "spectral": "rft-spectral", "rft": "rft-dense", "direct": "direct"}[case.split("-")[0]]
    ver = {"lossless": 1, "fixed": 1, "rft-spectral": 1, "rft-dense": 2, "direct": 2}[codec]
    p = forged(tmp_path / "s.qnt", payloads[case], shape, "float32", codec, ver)
    with QntFile(p, max_memory="64G") as f:
        def read():
            with pytest.raises(QntFormatError, match=r"s\.qnt: tensor 'w'"):
                f.read("w")
        # the position bitmap (4 MiB here, 1/16 of the output) is decoded to count its positions; nothing else is
        assert peak_bytes(read) < (12 << 20 if case == "spectral-kept-vs-bitmap" else 1 << 20)


def _min_limit(decode) -> int:
    """The smallest max_memory a decode accepts (bisection)."""
    lo, hi = 1, 1 << 30
    while lo < hi:
        mid = (lo + hi) // 2
        try:
            decode(mid)
            hi = mid
        except MemoryLimitError:
            lo = mid + 1
    return lo


M = (640, 1031)  # 660k values: the arrays (MBs) dominate the bookkeeping allowance (64 KiB)


@pytest.mark.parametrize("codec,kw,dtype,shape", [
    ("lossless", {}, "float32", M), ("lossless", {}, "float16", M), ("lossless", {}, "bfloat16", M),
    ("direct", {"snr_db": 25}, "float32", M), ("direct", {"snr_db": 60}, "float16", M),
    ("rft-dense", {"snr_db": 25}, "float32", M), ("fixed", {"snr_db": 20}, "bfloat16", M),
    ("rft-spectral", {"keep": 0.3}, "float32", M), ("rft-spectral", {"keep": 0.3, "options": {"axis": 0}}, "float16", M),
    ("rft-spectral", {"keep": 0.5}, "float32", (8, 1 << 16)),
])
def test_the_working_memory_counted_covers_what_a_decode_really_uses(codec, kw, dtype, shape):
    import ml_dtypes

    w = (np.random.default_rng(2).standard_normal(shape) * 0.05).astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)
    enc = encode_tensor(w, codec, **kw)
    limit = _min_limit(lambda m: decode_tensor(enc.payload, codec, shape, dtype, max_memory=m))
    assert limit >= w.nbytes
    tracemalloc.start()
    out = decode_tensor(enc.payload, codec, shape, dtype, max_memory=limit)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert out.shape == shape and out.flags.c_contiguous
    assert peak <= limit, f"{codec} used {peak} bytes, counted {limit}"


def test_spectral_blocks_give_the_same_values_as_one_block(monkeypatch):
    from quantonium.codecs import spectral

    w = np.random.default_rng(3).standard_normal((37, 500)).astype(np.float32)
    for axis in (0, 1):
        enc = encode_tensor(w, "rft-spectral", keep=0.4, options={"axis": axis})
        whole = decode_tensor(enc.payload, "rft-spectral", w.shape, "float32")
        monkeypatch.setattr(spectral, "BLOCK_BYTES", 1)  # one row per block
        rows = decode_tensor(enc.payload, "rft-spectral", w.shape, "float32")
        monkeypatch.undo()
        np.testing.assert_array_equal(whole, rows)


def test_whole_model_operations_count_what_they_hold(tmp_path, monkeypatch):
    p = multi_file(tmp_path / "m.qnt")
    with QntFile(p) as f:
        total = f.decoded_bytes()
        assert total == 5 * 64 * 96 * 4
    with QntFile(p, max_memory=total - 1) as f:
        with pytest.raises(QntLimitError, match=r"m\.qnt: decoding 5 tensors needs"):
            f.read_all()
        f.read("direct")  # one tensor alone fits
    from quantonium.pipeline import decompress

    monkeypatch.setenv(limits.ENV_MAX_MEMORY, str(total - 1))
    with pytest.raises(QntLimitError, match=r"m\.qnt: decoding 5 tensors"):
        decompress(p, tmp_path / "out")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.qnt"]  # no folder, no temporary


def test_index_size_limit_is_lower_by_default_and_can_be_raised(tmp_path):
    p = multi_file(tmp_path / "m.qnt")
    with pytest.raises(QntLimitError, match=r"m\.qnt: index of .* exceeds the limit of 1000 bytes"):
        QntFile(p, max_index_bytes=1000)
    with QntFile(p, max_index_bytes="1M"):
        pass
    assert limits.max_index_bytes() == min(limits.DEFAULT_MAX_INDEX_BYTES, limits.max_memory() // limits.INDEX_MEMORY_FACTOR)
    assert limits.max_index_bytes("1G") == limits.HARD_MAX_INDEX_BYTES  # never above the format's limit
    assert limits.max_index_bytes(memory=8 << 20) == 1 << 20  # a small memory limit lowers it


def test_default_memory_limit_follows_the_machine(monkeypatch):
    monkeypatch.delenv(limits.ENV_MAX_MEMORY, raising=False)
    phys = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert limits.machine_memory() <= phys
    assert limits.max_memory() == int(limits.machine_memory() * limits.MEMORY_FRACTION)
    monkeypatch.setenv(limits.ENV_MAX_MEMORY, "3G")
    assert limits.max_memory() == 3 << 30
    assert limits.max_memory(12345) == 12345 and limits.max_memory("1.5K") == 1536
    monkeypatch.setenv(limits.ENV_MAX_MEMORY, "lots")
    with pytest.raises(limits.LimitError, match="QUANTONIUM_MAX_MEMORY='lots'"):
        limits.max_memory()
    for bad in ("0", "-1", "1X", "", "G"):
        with pytest.raises(ValueError):
            limits.parse_size(bad)


def test_cli_limit_flags(tmp_path):
    p = forged(tmp_path / "lossless.qnt", *(_lossless_constant(N_BIG)[0],), BIG, "float32", "lossless", 1)
    rc, _, err = cli(["decompress", str(p), "-o", str(tmp_path / "out"), "--max-memory", "100M"])
    one_line_error(rc, err, "lossless.qnt")
    assert "memory limit of 100.00 MiB" in err and not (tmp_path / "out").exists()
    rc, _, err = cli(["inspect", str(p), "--max-index", "100"])
    one_line_error(rc, err, "lossless.qnt")
    rc, _, err = cli(["inspect", str(p), "--max-memory", "lots"])
    one_line_error(rc, err, "--max-memory")
