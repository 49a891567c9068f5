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


def cli(args: list[str], *, child: bool = False) -> tuple[int, str, str]:
    """Runs the CLI: (exit status, stdout, stderr). In this process by default (an exception escaping
    ``main`` fails the test, as a traceback would), or in a child process (``child``: the real thing)."""
    if child:
        p = subprocess.run([sys.executable, "-m", "quantonium", *args], capture_output=True, text=True, timeout=600)
        return p.returncode, p.stdout, p.stderr
    import contextlib
    import io

    from quantonium.cli import main

    saved = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(args)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return rc, out.getvalue(), err.getvalue()


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
    ("rft-fixed", {"snr_db": 20}, "float32", M), ("rft-fixed", {"snr_db": 20}, "bfloat16", M),
    ("wht-fixed", {"snr_db": 20}, "float32", (640, 1024)), ("wht-fixed", {"snr_db": 20}, "float16", (640, 1024)),
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

    # decompress streams: it holds the tensors in flight and its write buffers, not the model (a model larger
    # than the limit: tests/test_safetensors_stream.py); the largest tensor beside the buffers must fit
    monkeypatch.setenv(limits.ENV_MAX_MEMORY, str(64 * 96 * 4 + 100))
    with pytest.raises(QntLimitError, match=r"m\.qnt: decoding tensor '.*' with .* held beside it needs"):
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
    rc, _, err = cli(["inspect", str(p), "--max-memory", "lots"])  # a usage error: exit 2 (issue 12)
    assert rc == 2 and err.strip().startswith("quantonium inspect: error: argument --max-memory") and len(err.strip().splitlines()) == 1


# =====================================================================================
# Item 5: one-line errors. Deep JSON, wrong JSON types in the index, a malicious pickle,
# a full disk: one QntFormatError (or one CLI line) naming the file.
# =====================================================================================
def _deep(depth: int):
    v: object = 1
    for _ in range(depth):
        v = [v]
    return v


def reindex_raw(src: Path, dst: Path, body: bytes) -> Path:
    """A copy of ``src`` with ``body`` as its index (valid CRC)."""
    raw = src.read_bytes()
    magic, ioff, ilen, _, major, minor, end = FOOTER.unpack_from(raw, len(raw) - ALIGN)
    footer = FOOTER.pack(magic, ioff, len(body), zlib.crc32(body), major, minor, end)
    dst.write_bytes(raw[:ioff] + body + b"\0" * ((-len(body)) % ALIGN) + footer)
    return dst


@pytest.mark.parametrize("depth", [40, 900, 100_000])
def test_deeply_nested_index_is_one_error(tmp_path, depth):
    good = small_file(tmp_path / "good.qnt")
    index = json.loads(good.read_bytes()[FOOTER.unpack_from(good.read_bytes(), good.stat().st_size - ALIGN)[1]:][:10**6].split(b"\0")[0])
    index["model"]["deep"] = "@@DEEP@@"
    body = json.dumps(index).encode().replace(b'"@@DEEP@@"', b"[" * depth + b"1" + b"]" * depth)
    bad = reindex_raw(good, tmp_path / "bad.qnt", body)
    with pytest.raises(QntFormatError, match=rf"bad\.qnt: index nests {depth + 2} levels deep"):
        QntFile(bad)
    rc, _, err = cli(["inspect", str(bad)], child=depth == 100_000)
    one_line_error(rc, err, "bad.qnt")


def test_depth_scan_ignores_brackets_in_strings(tmp_path):
    name = "w[[[[" * 20 + "\\\"]]]" + "\\\\"  # brackets, an escaped quote and backslash inside a string
    w = np.zeros((4, 4), np.float32)
    p = tmp_path / "b.qnt"
    with QntWriter(p, model={"notes": ["[" * 100, "]" * 100]}) as out:
        out.add_tensor(name, encode_tensor(w, "lossless"), w.shape, "float32")
    with QntFile(p) as f:
        assert f.tensor_names == [name]
    assert limits.json_depth(b'{"a": "[[[", "b": [["]]]]"]]}') == 3


def test_deeply_nested_payload_header_is_one_error(tmp_path):
    payload = pack_payload("direct", 2, {"step": 0.5, "symbols": "int8", "x": "@@"}, [constant_stream(16)])
    hlen = int.from_bytes(payload[:4], "little")
    header = payload[4 : 4 + hlen].replace(b'"@@"', b"[" * 50_000 + b"]" * 50_000)
    payload = len(header).to_bytes(4, "little") + header + payload[4 + hlen :]
    p = forged(tmp_path / "h.qnt", payload, (4, 4), "float32", "direct", 2)
    with QntFile(p) as f, pytest.raises(QntFormatError, match=r"h\.qnt: tensor 'w': payload header nests 50002 levels"):
        f.read("w")


def test_deeply_nested_embedded_config_is_one_error(tmp_path):
    p = tmp_path / "c.qnt"
    w = np.zeros((4, 4), np.float32)
    with QntWriter(p) as out:
        out.add_tensor("w", encode_tensor(w, "lossless"), w.shape, "float32")
        out.add_file("config.json", b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    with QntFile(p) as f, pytest.raises(QntFormatError, match=r"c\.qnt: embedded config.json nests"):
        f.config()
    rc, _, err = cli(["decompress", str(p), "-o", str(tmp_path / "out")])
    one_line_error(rc, err, "c.qnt")
    assert not (tmp_path / "out").exists()
    from quantonium.pipeline import load

    with pytest.raises(QntFormatError, match=r"c\.qnt: embedded config.json nests"):
        load(p)


def _t0(i):
    return i["tensors"][0]


# Wrong JSON types where the index holds a string, a number, a list or an object: each is refused at open.
WRONG_TYPES = {
    "name-list": (lambda i: _t0(i).update(name=["w"]), "malformed"),
    "name-control-chars": (lambda i: _t0(i).update(name="w\x1b[31m"), "control characters"),
    "name-empty": (lambda i: _t0(i).update(name=""), "empty"),
    "shape-entry-list": (lambda i: _t0(i).update(shape=[[64], 64]), "invalid shape"),
    "shape-entry-float": (lambda i: _t0(i).update(shape=[64.0, 64]), "invalid shape"),
    "shape-entry-bool": (lambda i: _t0(i).update(shape=[True, 64]), "invalid shape"),
    "shape-string": (lambda i: _t0(i).update(shape="64x64"), "invalid shape"),
    "dtype-list": (lambda i: _t0(i).update(dtype=["float32"]), "unsupported dtype"),
    "dtype-object": (lambda i: _t0(i).update(dtype={"a": 1}), "unsupported dtype"),
    "codec-list": (lambda i: _t0(i).update(codec=["direct"]), "unknown codec"),
    "codec-object": (lambda i: _t0(i).update(codec={}), "unknown codec"),
    "codec-version-list": (lambda i: _t0(i).update(codec_version=[1]), "not a version"),
    "codec-version-bool": (lambda i: _t0(i).update(codec_version=True), "not a version"),
    "codec-version-zero": (lambda i: _t0(i).update(codec_version=0), "not a version"),
    "offset-list": (lambda i: _t0(i).update(offset=[64]), "offset missing or invalid"),
    "offset-string": (lambda i: _t0(i).update(offset="64"), "offset missing or invalid"),
    "offset-float": (lambda i: _t0(i).update(offset=64.0), "offset missing or invalid"),
    "length-bool": (lambda i: _t0(i).update(length=True), "length missing or invalid"),
    "crc-huge": (lambda i: _t0(i).update(crc32=1 << 40), "crc32 out of range"),
    "crc-null": (lambda i: _t0(i).update(crc32=None), "crc32 missing"),
    "bits-list": (lambda i: _t0(i).update(bits=[8]), "bits"),
    "bits-wrong": (lambda i: _t0(i).update(bits=_t0(i)["bits"] + 8), "not 8 x its payload length"),
    "bpw-string": (lambda i: _t0(i).update(bpw="4"), "field 'bpw'"),
    "snr-list": (lambda i: _t0(i).update(snr_db=[30]), "field 'snr_db'"),
    "stored-values-neg": (lambda i: _t0(i).update(stored_values=-1), "field 'stored_values'"),
    "gap-object": (lambda i: _t0(i).update(shannon_gap_bpw={}), "field 'shannon_gap_bpw'"),
    "source-dtype-list": (lambda i: _t0(i).update(source_dtype=[]), "field 'source_dtype'"),
    "report-list": (lambda i: _t0(i).update(report=[1]), "field 'report'"),
    "rft-list": (lambda i: _t0(i).update(rft=[1.0]), "field 'rft'"),
    "rft-beta-string": (lambda i: _t0(i).update(rft={"beta": "1", "sigma": 1.0}), "field 'rft'"),
    "tensor-entry-list": (lambda i: i["tensors"].__setitem__(0, ["w"]), "malformed"),
    "tensors-object": (lambda i: i.update(tensors={}), "lacks its tensor list"),
    "files-list": (lambda i: i.update(files=[]), "lacks its tensor list or file table"),
    "file-entry-list": (lambda i: i["files"].update({"config.json": [64, 2, 0]}), "malformed"),
    "file-offset-string": (lambda i: i["files"]["config.json"].update(offset="x"), "offset missing"),
    "file-name-int-like": (lambda i: i["files"].update({"1": i["files"].pop("config.json")}), "not allowed"),
    "model-list": (lambda i: i.update(model=[]), "field 'model' must be an object"),
    "model-id-list": (lambda i: i["model"].update(id=["x"]), "model field 'id'"),
    "model-architecture-object": (lambda i: i["model"].update(architecture={}), "model field 'architecture'"),
    "model-license-number": (lambda i: i["model"].update(license=3), "model field 'license'"),
    "model-tied-list": (lambda i: i["model"].update(tied=[["a", "w"]]), "model field 'tied'"),
    "model-tied-value-list": (lambda i: i["model"].update(tied={"a": ["w"]}), "model field 'tied'"),
    "model-tied-unknown": (lambda i: i["model"].update(tied={"lm_head.weight": "missing"}), "not a stored tensor"),
    "model-tied-self": (lambda i: i["model"].update(tied={"w": "w"}), "is also a stored tensor"),
    "model-buffers-string": (lambda i: i["model"].update(buffers="attn.bias"), "model field 'buffers'"),
    "model-notes-object": (lambda i: i["model"].update(notes={}), "model field 'notes'"),
    "model-evaluation-list": (lambda i: i["model"].update(evaluation=[1, 2]), "model field 'evaluation'"),
    "model-parameters-string": (lambda i: i["model"].update(parameters="12"), "model field 'parameters'"),
    "model-source-bytes-float": (lambda i: i["model"].update(source_bytes=1.5), "model field 'source_bytes'"),
    "model-seconds-list": (lambda i: i["model"].update(compress_seconds=[1]), "model field 'compress_seconds'"),
    "model-rss-bool": (lambda i: i["model"].update(peak_rss_mib=True), "model field 'peak_rss_mib'"),
    "model-codec-request-list": (lambda i: i["model"].update(codec_request=[]), "model field 'codec_request'"),
    "created-by-object": (lambda i: i.update(created_by={}), "'created_by'"),
    "version-string": (lambda i: i.update(version="1.0"), "'version'"),
    "format-list": (lambda i: i.update(format=["qnt"]), "not a qnt index"),
    "index-list": (lambda i: i.clear() or i.update(x=1), "not a qnt index"),
}


@pytest.mark.parametrize("case", list(WRONG_TYPES))
def test_wrong_json_types_in_the_index_are_one_error(tmp_path, case):
    mutate, msg = WRONG_TYPES[case]
    bad = reindex(small_file(tmp_path / "good.qnt"), tmp_path / "bad.qnt", mutate)
    with pytest.raises(QntFormatError, match=msg) as e:
        QntFile(bad)
    assert str(e.value).startswith(f"{bad}: ")


@pytest.mark.parametrize("case", ["model-tied-unknown", "model-evaluation-list", "shape-entry-list", "codec-list", "name-list"])
def test_wrong_json_types_through_the_cli(tmp_path, case):
    bad = reindex(small_file(tmp_path / "good.qnt"), tmp_path / "bad.qnt", WRONG_TYPES[case][0])
    for args in (["inspect", str(bad)], ["inspect", str(bad), "--json"], ["decompress", str(bad), "-o", str(tmp_path / "o")]):
        rc, _, err = cli(args)
        one_line_error(rc, err, "bad.qnt")
    rc, out, err = cli(["inventory", str(bad), "-o", str(tmp_path / "r.md"), "--no-forward"])
    assert rc == 1 and "Traceback" not in err and "opens: fail" in err


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")
def test_malicious_pickle_in_eval_is_refused_in_one_line(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    evil = tmp_path / "evil"
    evil.mkdir()
    transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100, n_positions=64).to_json_file(evil / "config.json")
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"transformer.wte.weight": Evil()}, evil / "pytorch_model.bin")
    qnt = small_file(tmp_path / "m.qnt")
    (tmp_path / "t.txt").write_text("the of and " * 200)
    rc, _, err = cli(["eval", str(evil), str(qnt), "--no-record", "--text", str(tmp_path / "t.txt")], child=True)
    one_line_error(rc, err, "evil")
    assert "refused" in err and not marker.exists()
    rc, _, err = cli(["compress", str(evil), "-o", str(tmp_path / "e.qnt"), "--snr", "30"])  # the compress side: same promise
    one_line_error(rc, err, "pytorch_model.bin")
    assert not marker.exists() and not (tmp_path / "e.qnt").exists()


def _tiny_qnt(path: Path, values: int = 1 << 20) -> Path:
    w = np.random.default_rng(0).standard_normal((values // 1024, 1024)).astype(np.float32)
    with QntWriter(path, model={"id": "t"}) as out:
        out.add_tensor("w", encode_tensor(w, "lossless"), w.shape, "float32")
        out.add_file("config.json", b"{}")
    return path


def test_full_disk_on_decompress_is_one_line_tmpfs(tmp_path):
    """A real full disk: a 1 MiB tmpfs (needs mount rights; a container without them skips, and the two tests
    below cover the same path without privileges)."""
    qnt = _tiny_qnt(tmp_path / "m.qnt")  # decodes to 4 MiB
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}); covered by the RLIMIT_FSIZE and ENOSPC tests")
    try:
        rc, _, err = cli(["decompress", str(qnt), "-o", str(mnt / "out")], child=True)
        one_line_error(rc, err, f"{mnt / 'out' / 'model.safetensors'}: write failed")
        assert "no space left" in err
        assert list(mnt.iterdir()) == []  # the temporary folder is gone
        rc, _, err = cli(["compress", str(tmp_path / "nonexistent"), "-o", str(mnt / "x.qnt")])
        assert rc == 1
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_file_size_limit_on_decompress_is_one_line(tmp_path):
    """The kernel refuses the write (RLIMIT_FSIZE, EFBIG): no privileges needed."""
    qnt = _tiny_qnt(tmp_path / "m.qnt")
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20)); "
            "from quantonium.cli import main; sys.exit(main(sys.argv[1:]))")
    env = dict(os.environ)
    p = subprocess.run([sys.executable, "-c", code, "decompress", str(qnt), "-o", str(tmp_path / "out")],
                       capture_output=True, text=True, env=env, timeout=600)
    one_line_error(p.returncode, p.stderr, f"{tmp_path / 'out' / 'model.safetensors'}: write failed")
    assert "file too large" in p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.qnt"]


@pytest.mark.parametrize("direct", [True, False], ids=["direct-io", "buffered"])
def test_enospc_from_the_stream_and_from_the_writer_is_one_error(tmp_path, monkeypatch, direct):
    from quantonium import outputs
    from quantonium.pipeline import decompress

    qnt = _tiny_qnt(tmp_path / "m.qnt", 1 << 14)
    real, calls = os.pwrite, []

    def full_disk(fd, data, offset):  # the disk fills after the first write of model.safetensors
        calls.append(offset)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(outputs, "DIRECT_IO", direct)
    monkeypatch.setattr(os, "pwrite", full_disk)
    with pytest.raises(outputs.OutputError, match=r"out/model\.safetensors: write failed \(no space left on the device\)$"):
        decompress(qnt, tmp_path / "out")
    assert len(calls) == 2
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.qnt"]
    monkeypatch.undo()

    class FullFile:  # the writer's file object on a full disk
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, k):
            return getattr(self.f, k)

    out = tmp_path / "w.qnt"
    with pytest.raises(outputs.OutputError, match=r"w\.qnt: write failed \(no space left on the device\)"):
        with QntWriter(out) as w:
            w._out.file = FullFile(w._out.file)
            w.add_tensor("x", encode_tensor(np.zeros((8, 8), np.float32), "lossless"), (8, 8), "float32")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.qnt"]


# =====================================================================================
# Item 4: outputs (quantonium.outputs): checked before work, never an input, atomic,
# symlinks written through, special files in place, umask, stale temporaries cleaned.
# =====================================================================================
from quantonium import outputs  # noqa: E402


def _st_folder(tmp_path: Path) -> Path:
    """A model folder with a bare safetensors file and a config (no transformers needed)."""
    from safetensors.numpy import save_file

    d = tmp_path / "same"
    d.mkdir()
    save_file({"w": np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)}, str(d / "model.safetensors"))
    (d / "config.json").write_text("{}")
    return d


def test_compress_refuses_to_overwrite_its_source(tmp_path):
    d = _st_folder(tmp_path)
    src = d / "model.safetensors"
    before = src.read_bytes()
    (tmp_path / "link.qnt").symlink_to(src)
    os.link(src, tmp_path / "hard.qnt")
    cases = [(source, out) for source in (src, d) for out in (src, tmp_path / "link.qnt", tmp_path / "hard.qnt")]
    for source, out in cases + [(d, d / "config.json")]:  # the folder's embedded files are inputs too
        if True:
            rc, _, err = cli(["compress", str(source), "-o", str(out), "--codec", "lossless", "--quiet"])
            one_line_error(rc, err, str(out))
            assert "is also an input" in err
    assert src.read_bytes() == before and (tmp_path / "link.qnt").is_symlink()
    from quantonium.pipeline import compress

    with pytest.raises(outputs.OutputError, match="is also an input"):
        compress(str(src), src, codec="lossless", progress=False)
    assert src.read_bytes() == before
    rc, _, err = cli(["compress", str(d), "-o", str(d / "new.qnt"), "--codec", "lossless", "--quiet"])  # a new file there is fine
    assert rc == 0, err


def test_output_onto_a_folder_fails_before_any_work(tmp_path, monkeypatch):
    d = _st_folder(tmp_path)
    (tmp_path / "outdir").mkdir()
    rc, _, err = cli(["compress", str(d), "-o", str(tmp_path / "outdir"), "--codec", "lossless", "--quiet"])
    one_line_error(rc, err, "outdir")
    assert "is a folder" in err and list((tmp_path / "outdir").iterdir()) == []
    from quantonium import pipeline
    from quantonium.compress import run

    called = []
    monkeypatch.setattr(run, "open_source", lambda *a: called.append(a))
    with pytest.raises(outputs.OutputError, match="is a folder"):
        pipeline.compress(str(d), tmp_path / "outdir", codec="lossless", progress=False)
    assert called == []  # the source was not even opened
    qnt = small_file(tmp_path / "m.qnt")
    for bad, msg in ((qnt, "is not a folder"), (d, "not an empty folder")):
        rc, _, err = cli(["decompress", str(qnt), "-o", str(bad)])
        one_line_error(rc, err, str(bad))
        assert msg in err
    (tmp_path / "afile").write_text("x")
    with pytest.raises(outputs.OutputError, match="is not a folder"):
        outputs.check_file(tmp_path / "afile" / "sub" / "x.qnt")
    assert not [p for p in tmp_path.rglob("*quantonium-tmp*")]


def test_symlinks_are_written_through(tmp_path):
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    target = real_dir / "m.qnt"
    target.write_bytes(b"old")
    link = tmp_path / "m.qnt"
    link.symlink_to(target)
    small_file(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    with QntFile(target) as f:
        assert f.tensor_names == ["w"]
    dangling = tmp_path / "d.txt"
    dangling.symlink_to(real_dir / "new.txt")
    outputs.write_text(dangling, "hello")
    assert dangling.is_symlink() and (real_dir / "new.txt").read_text() == "hello"
    from quantonium.container import update_model

    update_model(link, {"evaluation": {"x": 1}})  # eval's record: through the link too
    assert link.is_symlink()
    with QntFile(target) as f:
        assert f.model["evaluation"] == {"x": 1}
    empty = tmp_path / "empty"
    empty.mkdir()
    flink = tmp_path / "flink"
    flink.symlink_to(empty)
    rc, _, err = cli(["decompress", str(target), "-o", str(flink)])
    assert rc == 0, err
    assert flink.is_symlink() and (empty / "model.safetensors").is_file() and (empty / "config.json").is_file()


def test_special_files_are_written_in_place(tmp_path):
    outputs.write_text("/dev/null", "nothing")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    import threading

    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    outputs.write_bytes(fifo, b"through the pipe")
    reader.join(10)
    assert got == [b"through the pipe"] and stat.S_ISFIFO(os.stat(fifo).st_mode)
    # /dev/stdout names the process's own stdout: written where it stands, never renamed over
    out = tmp_path / "stdout.txt"
    code = ("import sys; print('first', flush=True); from quantonium import outputs; "
            "outputs.write_text('/dev/stdout', 'second\\n'); print('third')")
    with open(out, "w") as fh:
        ino = os.fstat(fh.fileno()).st_ino
        subprocess.run([sys.executable, "-c", code], stdout=fh, check=True, env=dict(os.environ))
    assert out.read_text() == "first\nsecond\nthird\n" and out.stat().st_ino == ino
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env=dict(os.environ))
    assert p.stdout == "first\nsecond\nthird\n"
    if os.path.exists("/dev/loop0") and stat.S_ISBLK(os.stat("/dev/loop0").st_mode):
        with pytest.raises(outputs.OutputError, match="block device"):
            outputs.check_file("/dev/loop0")


def test_inventory_json_to_dev_stdout_keeps_the_device(tmp_path):
    qnt = small_file(tmp_path / "m.qnt")
    mode = os.stat("/dev/stdout").st_mode
    rc, out, err = cli(["inventory", str(qnt), "-o", str(tmp_path / "r.md"), "--json", "/dev/stdout", "--no-forward"], child=True)
    assert rc == 0, err
    assert '"totals"' in out and os.stat("/dev/stdout").st_mode == mode
    assert not stat.S_ISREG(os.stat("/dev/null").st_mode)
    rc, _, err = cli(["inventory", str(qnt), "-o", str(qnt), "--no-forward"])  # the report over its input
    one_line_error(rc, err, "m.qnt")
    with QntFile(qnt):
        pass


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_outputs_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        small_file(tmp_path / "m.qnt")
        outputs.write_text(tmp_path / "r.md", "x")
        with outputs.AtomicFolder(tmp_path / "folder") as f:
            (f.path / "a").write_text("a")
    finally:
        os.umask(old)
    for p, full in ((tmp_path / "m.qnt", 0o666), (tmp_path / "r.md", 0o666), (tmp_path / "folder", 0o777)):
        assert stat.S_IMODE(p.stat().st_mode) == full & ~mask, p
    os.chmod(tmp_path / "r.md", 0o640)
    outputs.write_text(tmp_path / "r.md", "y")  # replacing keeps the file's permission bits
    assert stat.S_IMODE((tmp_path / "r.md").stat().st_mode) == 0o640


def test_decompress_folder_follows_the_umask(tmp_path):
    qnt = small_file(tmp_path / "m.qnt")
    old = os.umask(0o022)
    try:
        rc, _, err = cli(["decompress", str(qnt), "-o", str(tmp_path / "out")])
    finally:
        os.umask(old)
    assert rc == 0, err
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "out" / "model.safetensors").stat().st_mode) == 0o644


WRITER = """
import sys, time
from quantonium.outputs import AtomicFile
f = AtomicFile(sys.argv[1])
f.write(b"partial")
f.file.flush()
print(f._tmp, flush=True)
time.sleep(600)
"""


def _start_writer(target: Path) -> tuple[subprocess.Popen, Path]:
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ))
    return p, Path(p.stdout.readline().strip())


def test_stale_temporaries_of_killed_runs_are_cleaned_and_live_ones_kept(tmp_path):
    live, live_tmp = _start_writer(tmp_path / "a.qnt")
    dead, dead_tmp = _start_writer(tmp_path / "b.qnt")
    try:
        dead.kill()
        dead.wait()
        assert outputs.TEMP_SUFFIX in dead_tmp.name and f".{dead.pid}." in dead_tmp.name  # recognisable, pid marked
        old = dead_tmp.stat().st_mtime - 2 * outputs.STALE_AFTER
        for p in (live_tmp, dead_tmp):
            os.utime(p, (old, old))
        young = tmp_path / f".c.qnt.{dead.pid}.0123abcd{outputs.TEMP_SUFFIX}"  # unlocked but just made: kept
        young.write_bytes(b"")
        stale_dir = tmp_path / f".out.{dead.pid}.89abcdef{outputs.TEMP_SUFFIX}"  # a killed decompress
        stale_dir.mkdir()
        (stale_dir / "model.safetensors").write_bytes(b"x")
        os.utime(stale_dir, (old, old))
        other = tmp_path / ".x.qnt.12.0123abcd.tmp"  # not ours: never touched
        other.write_bytes(b"")
        os.utime(other, (old, old))
        outputs.write_text(tmp_path / "new.md", "x")  # any new output in the folder cleans it
        assert live_tmp.exists(), "a live writer's temporary was removed"
        assert not dead_tmp.exists() and not stale_dir.exists()
        assert young.exists() and other.exists()
    finally:
        for proc in (live, dead):
            proc.kill()
            proc.wait()
            proc.stdout.close()


def test_atomic_outputs_fsync_file_and_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    outputs.write_text(tmp_path / "r.md", "x")
    assert any(outputs.TEMP_SUFFIX in s for s in synced) and str(tmp_path) in synced
    synced.clear()
    with outputs.AtomicFolder(tmp_path / "f") as f:
        (f.path / "a").write_text("a")
    assert any(s.endswith("/a") for s in synced) and str(tmp_path) in synced


def test_interrupted_writes_leave_the_old_file(tmp_path):
    p = small_file(tmp_path / "m.qnt")
    before = p.read_bytes()
    with pytest.raises(RuntimeError):
        with QntWriter(p) as w:
            w.add_file("config.json", b"{}")
            raise RuntimeError("interrupted")
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.qnt"]


def test_eval_checks_its_record_target_before_evaluating(tmp_path):
    qnt = small_file(tmp_path / "m.qnt")
    rc, _, err = cli(["eval", str(tmp_path / "nowhere"), str(tmp_path), "--text", str(qnt)])  # the .qnt "file" is a folder
    one_line_error(rc, err, str(tmp_path))
    assert "is a folder" in err


def test_compare_checks_its_outputs_before_running(tmp_path):
    d = _st_folder(tmp_path)
    (tmp_path / "notdir").write_text("x")
    rc, _, err = cli(["compare", str(d), "--bits", "4", "--methods", "direct", "-o", str(tmp_path / "notdir")])
    one_line_error(rc, err, "notdir")


# =====================================================================================
# The corpus of damaged files: truncation at every section boundary, flipped bits in the
# preamble, payloads, index and footer. Each gives exactly one QntFormatError naming the
# file (or reads correctly: a flip inside a stream that a re-forged CRC makes valid may
# decode to other values), and through the CLI exit status 1 with one stderr line.
# =====================================================================================
def _sections(path: Path) -> dict[str, int]:
    """Byte offsets of every section boundary of a .qnt file."""
    raw = path.read_bytes()
    _, ioff, ilen, *_ = FOOTER.unpack_from(raw, len(raw) - ALIGN)
    index = json.loads(raw[ioff : ioff + ilen])
    cuts = {"empty": 0, "preamble-magic": 4, "preamble-mid": 32, "preamble-end": ALIGN}
    for t in index["tensors"]:
        cuts[f"payload-{t['name']}-start"] = t["offset"]
        cuts[f"payload-{t['name']}-header"] = t["offset"] + 6
        cuts[f"payload-{t['name']}-end"] = t["offset"] + t["length"] - 1
    for name, f in index["files"].items():
        cuts[f"file-{name}-start"] = f["offset"]
    cuts.update({"index-start": ioff, "index-mid": ioff + ilen // 2, "index-end": ioff + ilen - 1,
                 "footer-start": len(raw) - ALIGN, "footer-mid": len(raw) - ALIGN // 2, "footer-last-byte": len(raw) - 1})
    return cuts


@pytest.fixture(scope="module")
def base_file(tmp_path_factory) -> Path:
    return multi_file(tmp_path_factory.mktemp("corpus") / "base.qnt")


def _read_everything(p: Path) -> None:
    with QntFile(p) as f:
        for n in f:
            f.read(n)
        for n in f.file_names:
            f.file(n)
        f.config()


def test_truncation_at_every_section_boundary(base_file, tmp_path):
    raw = base_file.read_bytes()
    for where, cut in _sections(base_file).items():
        p = tmp_path / f"cut-{where.replace('/', '_')}.qnt"
        p.write_bytes(raw[:cut])
        with pytest.raises(QntFormatError) as e:
            _read_everything(p)
        assert str(e.value).startswith(f"{p}: ") and "\n" not in str(e.value), (where, e.value)


@pytest.mark.parametrize("where", ["empty", "preamble-mid", "payload-direct-header", "index-mid", "footer-mid"])
def test_truncation_through_the_cli(base_file, tmp_path, where):
    raw = base_file.read_bytes()
    p = tmp_path / "cut.qnt"
    p.write_bytes(raw[: _sections(base_file)[where]])
    for args in (["inspect", str(p)], ["decompress", str(p), "-o", str(tmp_path / "o")]):
        rc, _, err = cli(args, child=where == "index-mid")
        one_line_error(rc, err, "cut.qnt")


def _flip_positions(path: Path) -> list[tuple[str, int]]:
    raw = path.read_bytes()
    _, ioff, ilen, *_ = FOOTER.unpack_from(raw, len(raw) - ALIGN)
    index = json.loads(raw[ioff : ioff + ilen])
    pos = [("preamble", i) for i in range(0, 12)]
    for t in index["tensors"]:
        hlen = int.from_bytes(raw[t["offset"] : t["offset"] + 4], "little")
        pos += [(f"{t['name']}-header", t["offset"] + i) for i in range(0, 4 + hlen, 3)]
        pos += [(f"{t['name']}-streams", t["offset"] + 4 + hlen + i) for i in range(0, t["length"] - 4 - hlen, 97)]
    pos += [("index", ioff + i) for i in range(0, ilen, 211)]
    pos += [("footer", len(raw) - ALIGN + i) for i in range(0, ALIGN, 5)]
    return pos


@pytest.mark.parametrize("bit", [0, 3, 7])
def test_flipped_bits_with_stale_crcs_are_one_error(base_file, tmp_path, bit):
    """A flip anywhere: the CRCs (or the framing) catch it: one QntFormatError naming the file. Skipped: the
    minor versions (any minor is valid: minors add optional fields) and the zero padding no reader uses."""
    raw = base_file.read_bytes()
    p = tmp_path / "flip.qnt"
    for where, i in _flip_positions(base_file):
        if (where == "preamble" and i >= 10) or (where == "footer" and 30 <= i - (len(raw) - ALIGN) < ALIGN - 8):
            continue
        b = bytearray(raw)
        b[i] ^= 1 << bit
        p.write_bytes(b)
        try:
            _read_everything(p)
        except QntFormatError as e:
            assert str(e).startswith(f"{p}: ") and "\n" not in str(e), (where, i, e)
        else:
            raise AssertionError(f"a flip at {where} byte {i} was not detected")


@pytest.mark.parametrize("bit", [0, 1, 6, 7])
def test_flipped_bits_in_reforged_payloads_are_one_error_or_a_correct_shape(base_file, tmp_path, bit):
    """An attacker fixes the CRC after flipping a payload bit: the decoders' own checks answer."""
    raw = base_file.read_bytes()
    _, ioff, ilen, *_ = FOOTER.unpack_from(raw, len(raw) - ALIGN)
    index = json.loads(raw[ioff : ioff + ilen])
    p = tmp_path / "reforged.qnt"
    outcomes = {"error": 0, "decoded": 0}
    for t in index["tensors"]:
        for where, i in _flip_positions(base_file):
            if not (t["offset"] <= i < t["offset"] + t["length"]):
                continue
            b = bytearray(raw)
            b[i] ^= 1 << bit
            payload = bytes(b[t["offset"] : t["offset"] + t["length"]])
            idx = json.loads(raw[ioff : ioff + ilen])
            next(x for x in idx["tensors"] if x["name"] == t["name"]).update(crc32=zlib.crc32(payload))
            body = json.dumps(idx).encode()
            footer = FOOTER.pack(b"QNTINDEX", ioff, len(body), zlib.crc32(body), 1, 0, b"QNTEND\0\0")
            p.write_bytes(bytes(b[:ioff]) + body + b"\0" * ((-len(body)) % ALIGN) + footer)
            with QntFile(p, max_memory="256M") as f:
                try:
                    a = f.read(t["name"])
                except QntFormatError as e:
                    assert str(e).startswith(f"{p}: tensor {t['name']!r}") and "\n" not in str(e), e
                    outcomes["error"] += 1
                else:
                    assert a.shape == tuple(t["shape"]) and a.dtype.name == t["dtype"]
                    outcomes["decoded"] += 1
    assert outcomes["error"] > 0


def test_reforged_payload_headers_with_wrong_types_are_one_error(tmp_path):
    """Payload header fields of the wrong JSON type (the decoders' ``param``): one error each."""
    good = {"step": 0.5, "symbols": "int8"}
    for params in ({**good, "step": [0.5]}, {**good, "step": "0.5"}, {**good, "symbols": ["int8"]}, {**good, "scales": ["row"]},
                   {**good, "scales": {}}, {**good, "step": True}, {**good, "step": float("nan")}):
        try:
            payload = pack_payload("direct", 2, params, [constant_stream(16)])
        except ValueError:  # NaN: the packer refuses it; write it by hand
            payload = pack_payload("direct", 2, {**params, "step": 1.0}, [constant_stream(16)]).replace(b'"step":1.0', b'"step":NaN')
        p = forged(tmp_path / "t.qnt", payload, (4, 4), "float32", "direct", 2)
        with QntFile(p) as f, pytest.raises(QntFormatError, match=r"t\.qnt: tensor 'w'"):
            f.read("w")
    for header in (b"[]", b'{"codec": ["direct"], "version": 2, "params": {}, "streams": []}',
                   b'{"codec": "direct", "version": [2], "params": {}, "streams": []}',
                   b'{"codec": "direct", "version": 2, "params": [], "streams": []}',
                   b'{"codec": "direct", "version": 2, "params": {}, "streams": [true]}',
                   b'{"codec": "direct", "version": 2, "params": {}, "streams": {}}', b"\xff\xfe", b"nul"):
        p = forged(tmp_path / "t.qnt", len(header).to_bytes(4, "little") + header, (4, 4), "float32", "direct", 2)
        with QntFile(p) as f, pytest.raises(QntFormatError, match=r"t\.qnt: tensor 'w'"):
            f.read("w")
