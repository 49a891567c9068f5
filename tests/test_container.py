"""The .qnt container: round trip, bit accounting, and every kind of damage detected."""

from __future__ import annotations

import json
import os
import struct
import zlib

import ml_dtypes
import numpy as np
import pytest

from quantonium.codecs import encode_tensor
from quantonium.container import ALIGN, FOOTER, QntFile, QntFormatError, QntLimitError, QntWriter


@pytest.fixture
def tensors(rng):
    return {
        "emb.weight": (rng.standard_normal((300, 64)) * 0.02).astype(np.float32),
        "layer.0.w": (rng.standard_normal((64, 128)) * 0.05).astype(ml_dtypes.bfloat16),
        "layer.0.norm": np.ones(64, np.float16),
    }


def write(path, tensors, codec="auto", **kw):
    entries = {}
    with QntWriter(path, model={"id": "unit-test", "architecture": "none"}) as w:
        for name, a in tensors.items():
            enc = encode_tensor(a, codec, snr_db=30, **kw)
            dt = "bfloat16" if a.dtype == ml_dtypes.bfloat16 else str(a.dtype)
            entries[name] = (enc, w.add_tensor(name, enc, a.shape, dt))
        w.add_file("config.json", b'{"model_type": "none"}')
    return entries


def test_round_trip_and_random_access(tmp_path, tensors):
    path = tmp_path / "m.qnt"
    write(path, tensors)
    assert [p.name for p in tmp_path.iterdir()] == ["m.qnt"]  # no temporary left behind
    with QntFile(path) as f:
        assert f.tensor_names == list(tensors)
        assert f.model["id"] == "unit-test" and f.version == (1, 0)
        assert f.file("config.json") == b'{"model_type": "none"}'
        f.verify()
        for name in reversed(list(tensors)):  # any order
            back = f.read(name)
            assert back.dtype == tensors[name].dtype and back.shape == tensors[name].shape
            if f.info(name)["codec"] == "lossless":
                np.testing.assert_array_equal(back, tensors[name])
            else:
                err = back.astype(np.float64) - tensors[name].astype(np.float64)
                snr = 10 * np.log10(np.sum(tensors[name].astype(np.float64) ** 2) / np.sum(err**2))
                assert snr == pytest.approx(f.info(name)["snr_db"], abs=1e-6)


def test_bits_said_equal_bits_in_the_file(tmp_path, tensors):
    path = tmp_path / "m.qnt"
    entries = write(path, tensors)
    raw = path.read_bytes()
    with QntFile(path) as f:
        for name, (enc, _) in entries.items():
            info = f.info(name)
            assert info["offset"] % ALIGN == 0
            assert info["bits"] == enc.bits == 8 * info["length"]
            assert raw[info["offset"] : info["offset"] + info["length"]] == enc.payload
            assert info["bpw"] == pytest.approx(info["bits"] / np.prod(info["shape"]))
        # what is not a payload is the preamble, padding, embedded files, the index and the footer
        payload_bytes = sum(f.info(n)["length"] for n in f)
        ioff, ilen = struct.unpack_from("<QQ", raw, len(raw) - ALIGN + 8)
        padding = len(raw) - payload_bytes - ilen - 2 * ALIGN - len(b'{"model_type": "none"}')
        assert 0 <= padding < ALIGN * (len(entries) + 2)


def test_failed_write_leaves_nothing(tmp_path, tensors):
    path = tmp_path / "m.qnt"
    path.write_bytes(b"previous content")
    with pytest.raises(RuntimeError):
        with QntWriter(path) as w:
            enc = encode_tensor(tensors["emb.weight"], "direct", snr_db=20)
            w.add_tensor("x", enc, (300, 64), "float32")
            raise RuntimeError("interrupted")
    assert path.read_bytes() == b"previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.qnt"]
    with QntWriter(tmp_path / "n.qnt") as w:
        enc = encode_tensor(tensors["emb.weight"], "direct", snr_db=20)
        w.add_tensor("x", enc, (300, 64), "float32")
        with pytest.raises(ValueError, match="already in the file"):
            w.add_tensor("x", enc, (300, 64), "float32")
        with pytest.raises(ValueError, match="does not match"):
            w.add_tensor("y", enc, (300, 65), "float32")


def test_truncated_files_are_detected(tmp_path, tensors):
    path = tmp_path / "m.qnt"
    write(path, tensors, codec="direct")
    raw = path.read_bytes()
    cut = tmp_path / "cut.qnt"
    for n in sorted({0, 10, 64, 100, len(raw) // 3, len(raw) // 2, len(raw) - 65, len(raw) - 64, len(raw) - 1}):
        cut.write_bytes(raw[:n])
        with pytest.raises(QntFormatError, match="cut.qnt"):
            QntFile(cut)


def test_flipped_bytes_are_detected_everywhere(tmp_path, tensors):
    path = tmp_path / "m.qnt"
    write(path, tensors)
    raw = bytearray(path.read_bytes())
    bad = tmp_path / "bad.qnt"
    rng = np.random.default_rng(3)
    positions = list(range(0, 16)) + list(rng.integers(0, len(raw), 150)) + list(range(len(raw) - 64, len(raw)))
    missed = []
    for pos in positions:
        damaged = bytearray(raw)
        damaged[pos] ^= 0x41
        bad.write_bytes(damaged)
        try:
            with QntFile(bad) as f:
                f.verify()
                for name in f:
                    f.read(name)
        except QntFormatError:
            continue
        # flips in zero padding or in the preamble's reserved bytes are harmless
        missed.append(pos)
    for pos in missed:
        with QntFile(path) as f:
            spans = [(f.info(n)["offset"], f.info(n)["length"]) for n in f]
        assert 16 <= pos < 64 or not any(o <= pos < o + n for o, n in spans), pos


def test_absurd_header_values(tmp_path, tensors):
    path = tmp_path / "m.qnt"
    write(path, tensors, codec="direct")
    raw = path.read_bytes()
    magic, ioff, ilen, icrc, major, minor, end = FOOTER.unpack_from(raw, len(raw) - ALIGN)
    index = json.loads(raw[ioff : ioff + ilen])

    def with_index(mutate, name):
        idx = json.loads(json.dumps(index))
        mutate(idx)
        body = json.dumps(idx).encode()
        data = raw[:ioff] + body + b"\0" * ((-len(body)) % ALIGN)
        footer = FOOTER.pack(magic, ioff, len(body), zlib.crc32(body), major, minor, end)
        p = tmp_path / f"{name}.qnt"
        p.write_bytes(data + footer)
        return p

    t0 = lambda i: i["tensors"][0]  # noqa: E731
    cases = {
        "huge-shape": (lambda i: t0(i).update(shape=[2**40, 2**40]), "values exceed|invalid shape"),
        "neg-shape": (lambda i: t0(i).update(shape=[-1, 64]), "invalid shape"),
        "offset-out": (lambda i: t0(i).update(offset=len(raw) * 4), "outside the data area"),
        "unaligned": (lambda i: t0(i).update(offset=t0(i)["offset"] + 1), "outside the data area"),
        "overlap": (lambda i: i["tensors"][1].update(offset=t0(i)["offset"]), "overlaps"),
        "dtype": (lambda i: t0(i).update(dtype="float8"), "unsupported dtype"),
        "codec": (lambda i: t0(i).update(codec="zip"), "unknown codec"),
        "codec-version": (lambda i: t0(i).update(codec_version=99), "newer than this reader"),
        "dup": (lambda i: i["tensors"].append(dict(t0(i))), "appears twice"),
        "no-tensors": (lambda i: i.pop("tensors"), "lacks its tensor list"),
    }
    for name, (mutate, msg) in cases.items():
        with pytest.raises(QntFormatError, match=msg):
            QntFile(with_index(mutate, name))
    # a shape that the payload does not hold is caught when decoding
    p = with_index(lambda i: t0(i).update(shape=[301, 64]), "reshape")
    with QntFile(p) as f, pytest.raises(QntFormatError, match="emb.weight"):
        f.read("emb.weight")
    # decoding is bounded by max_memory, not by what the header claims
    with QntFile(path, max_memory=50_000) as f, pytest.raises(QntLimitError, match="memory limit"):
        f.read("emb.weight")


def test_newer_major_version_is_refused(tmp_path, tensors):
    path = tmp_path / "m.qnt"
    write(path, {"w": tensors["emb.weight"]}, codec="direct")
    raw = bytearray(path.read_bytes())
    raw[8:10] = struct.pack("<H", 2)
    path.write_bytes(raw)
    with pytest.raises(QntFormatError, match="newer than this reader"):
        QntFile(path)


def test_not_a_qnt_file_and_missing_file(tmp_path):
    p = tmp_path / "x.qnt"
    p.write_bytes(b"PK\x03\x04" + b"\0" * 200)
    with pytest.raises(QntFormatError, match="bad magic"):
        QntFile(p)
    with pytest.raises(FileNotFoundError, match="no such file"):
        QntFile(tmp_path / "missing.qnt")


def test_writer_streams_without_holding_payloads(tmp_path, rng):
    """Payloads go to disk as they are added: the writer keeps only index entries."""
    path = tmp_path / "s.qnt"
    with QntWriter(path) as w:
        for i in range(5):
            a = (rng.standard_normal((64, 256)) * 0.02).astype(np.float32)
            w.add_tensor(f"t{i}", encode_tensor(a, "direct", snr_db=20), a.shape, "float32")
            w._f.flush()
            assert os.path.getsize(w._out._tmp) >= (i + 1) * 64 * 256 * 2 / 8  # already written
        assert not hasattr(w, "_payloads")
    with QntFile(path) as f:
        assert len(f) == 5
