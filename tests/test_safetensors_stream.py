"""decompress streams model.safetensors (issue 9): the file safetensors writes, bounded memory, nothing left on failure.

The oracle is the safetensors library: ``safetensors.torch.save_file`` of the same tensors and
metadata must give the same bytes (its ``__metadata__`` comes from a Rust HashMap, in an order that
changes between processes: with two keys the headers are compared with the metadata put in one order).
"""

from __future__ import annotations

import errno
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from quantonium import __version__, limits, outputs  # noqa: E402
from quantonium.codecs import encode_tensor, numpy_dtype  # noqa: E402
from quantonium.container import QntFile, QntFormatError, QntLimitError, QntWriter  # noqa: E402
from quantonium.pipeline import decompress  # noqa: E402
from quantonium.safetensors_stream import SafetensorsWriter, layout  # noqa: E402

META = {"format": "pt", "quantonium": __version__}


def _torch(a: np.ndarray):
    a = np.require(a, requirements="C")  # not np.ascontiguousarray: it makes a 0-dim array 1-dim
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _split(raw: bytes) -> tuple[dict, bytes, int]:
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + n]), raw[8 + n :], n


def assert_same_file(ours: bytes, theirs: bytes) -> None:
    """Byte identity, but for the order of the library's ``__metadata__`` keys (a HashMap's)."""
    if ours == theirs:
        return
    h1, d1, n1 = _split(ours)
    h2, d2, n2 = _split(theirs)
    assert n1 == n2 and d1 == d2
    assert list(h1) == list(h2) and h1 == h2  # the same tensors in the same order, the same metadata
    m2 = dict(h2.pop("__metadata__"))
    m1 = h1.pop("__metadata__")
    assert list(m1) != list(m2)  # the only difference allowed
    reordered = {"__metadata__": {k: m2[k] for k in m1}, **h2}
    text = json.dumps(reordered, ensure_ascii=False, separators=(",", ":")).encode()
    assert ours[8 : 8 + n1] == text + b" " * (n1 - len(text))


def _write(path: Path, arrays: dict[str, np.ndarray], metadata, direct=None) -> bytes:
    lay = layout(((n, a.dtype.name, a.shape) for n, a in arrays.items()), metadata)
    with SafetensorsWriter(path, lay, direct=direct) as w:
        for s in lay.slots:
            w.add(s.name, arrays[s.name])
    return path.read_bytes()


def _mixed(rng) -> dict[str, np.ndarray]:
    bf16 = numpy_dtype("bfloat16")
    return {
        "z.weight": rng.standard_normal((33, 7)).astype(np.float32),
        "a.weight": rng.standard_normal((5, 3)).astype(np.float16),
        "B.bias": rng.standard_normal(11).astype(np.float32).astype(bf16),
        "h.10.w": rng.standard_normal((2, 2)).astype(np.float32),
        "h.2.w": rng.standard_normal(3).astype(np.float16),
        "scalar": np.array(1.5, np.float32),  # 0-dim
        "empty": np.zeros((0, 4), np.float32),
        "vide.é": np.zeros((0,), bf16),
        "ünï.w": rng.standard_normal((3, 1)).astype(bf16),
    }


@pytest.mark.parametrize("metadata", [None, {"format": "pt"}, META], ids=["none", "one-key", "two-keys"])
@pytest.mark.parametrize("direct", [True, False], ids=["direct-io", "buffered"])
def test_writer_matches_save_file_byte_for_byte(tmp_path, rng, metadata, direct):
    arrays = _mixed(rng)
    ours = _write(tmp_path / "ours.safetensors", arrays, metadata, direct)
    safetensors_torch.save_file({n: _torch(a) for n, a in arrays.items()}, str(tmp_path / "lib.safetensors"), metadata=metadata)
    theirs = (tmp_path / "lib.safetensors").read_bytes()
    if metadata is None or len(metadata) < 2:
        assert ours == theirs
    else:
        assert_same_file(ours, theirs)
    with safetensors_torch.safe_open(str(tmp_path / "ours.safetensors"), "pt") as f:
        assert f.metadata() == metadata and sorted(f.keys()) == sorted(arrays)
        for n, a in arrays.items():
            assert torch.equal(f.get_tensor(n), _torch(a))


_NAME = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "S"]), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(_NAME.filter(lambda s: s != "__metadata__"),
                       st.tuples(st.sampled_from(["float32", "float16", "bfloat16"]),
                                 st.lists(st.integers(0, 5), max_size=3)), max_size=8))
def test_layout_is_the_librarys_for_any_names_dtypes_and_shapes(spec):
    """Order (descending dtype, then name as UTF-8 bytes), offsets and header: safetensors.torch.save's."""
    rng = np.random.default_rng(0)
    arrays = {n: rng.standard_normal(shape).astype(np.float32).astype(numpy_dtype(dt)) for n, (dt, shape) in spec.items()}
    lay = layout(((n, a.dtype.name, a.shape) for n, a in arrays.items()), {"format": "pt"})
    body = lay.head + b"".join(arrays[s.name].tobytes() for s in lay.slots)
    assert len(body) == lay.size
    assert body == safetensors_torch.save({n: _torch(a) for n, a in arrays.items()}, metadata={"format": "pt"})


def test_layout_refuses_what_safetensors_cannot_hold():
    with pytest.raises(ValueError, match="float64"):
        layout([("w", "float64", (2,))])
    with pytest.raises(ValueError, match="__metadata__"):
        layout([("__metadata__", "float32", (2,))])
    with pytest.raises(ValueError, match="strings"):
        layout([("w", "float32", (2,))], {"n": 1})


def test_writer_checks_what_it_is_given(tmp_path):
    lay = layout([("a", "float32", (2, 3)), ("b", "float16", (4,))])
    with pytest.raises(ValueError, match=r"tensor 'b' given where 'a' comes next"):
        with SafetensorsWriter(tmp_path / "x", lay) as w:
            w.add("b", np.zeros(4, np.float16))
    with pytest.raises(ValueError, match=r"tensor 'a' is float32 \(3, 2\), the layout says float32 \(2, 3\)"):
        with SafetensorsWriter(tmp_path / "y", lay) as w:
            w.add("a", np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="1 tensors were not written"):
        with SafetensorsWriter(tmp_path / "z", lay) as w:
            w.add("a", np.zeros((2, 3), np.float32))


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 5 * 65536 + 3, 3 << 20])
@pytest.mark.parametrize("direct", [True, False], ids=["direct-io", "buffered"])
def test_stream_file_writes_exactly_what_it_is_given(tmp_path, size, direct):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8)
    p = tmp_path / "f"
    with outputs.StreamFile(p, size, direct=direct) as f:
        cuts = [0, min(10, size), max(min(10, size), size // 3), size]
        for a, b in zip(cuts, cuts[1:]):
            f.write(data[a:b])
        assert f.written == size
    assert p.read_bytes() == data.tobytes()
    assert os.stat(p).st_mode & 0o777 == 0o666 & ~outputs._umask()
    with pytest.raises(ValueError, match="more than the 3 announced"):
        with outputs.StreamFile(tmp_path / "g", 3, direct=direct) as f:
            f.write(b"abcd")
    with pytest.raises(ValueError, match="2 bytes written, 3 announced"):
        with outputs.StreamFile(tmp_path / "h", 3, direct=direct) as f:
            f.write(b"ab")


# --- decompress ------------------------------------------------------------------------------------
def _qnt(path: Path, tensors: dict[str, np.ndarray], *, config: dict | None = None, tied: dict | None = None,
         codec: str = "lossless") -> Path:
    with QntWriter(path, model={"id": "t", "tied": tied or {}}) as out:
        for n, a in tensors.items():
            c = codec if a.ndim == 2 and a.size else "lossless"  # as auto stores small tensors
            out.add_tensor(n, encode_tensor(a, c, **({} if c == "lossless" else {"snr_db": 30})), a.shape, a.dtype.name)
        out.add_file("config.json", json.dumps(config if config is not None else {"model_type": "none"}).encode())
    return path


def _reference(qnt: Path, path: Path) -> bytes:
    """What decompress wrote before it streamed: every tensor decoded, one save_file."""
    with QntFile(qnt) as f:
        arrays = f.read_all()
        tie = bool(f.config().get("tie_word_embeddings", True))
        for alias, canon in ({} if tie else f.model["tied"]).items():
            arrays[alias] = arrays[canon].copy()
    safetensors_torch.save_file({n: _torch(a) for n, a in arrays.items()}, str(path), metadata=META)
    return path.read_bytes()


def _model(rng, dtype="float32") -> dict[str, np.ndarray]:
    dt = numpy_dtype(dtype)
    return {
        "transformer.wte.weight": (rng.standard_normal((96, 32)) * 0.1).astype(np.float32).astype(dt),
        "transformer.h.0.mlp.weight": (rng.standard_normal((32, 64)) * 0.1).astype(np.float32).astype(dt),
        "transformer.h.0.ln.weight": np.ones(32, np.float32).astype(dt),
        "transformer.h.0.ln.bias": rng.standard_normal(32).astype(np.float16),  # mixed dtypes in one file
        "transformer.scale": np.array(0.5, np.float32),  # 0-dim
        "transformer.nothing": np.zeros((0, 8), np.float32),  # empty
    }


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_decompress_writes_what_save_file_writes(tmp_path, rng, dtype, tie):
    tensors = _model(rng, dtype)
    qnt = _qnt(tmp_path / "m.qnt", tensors, config={"model_type": "none", "tie_word_embeddings": tie},
               tied={"lm_head.weight": "transformer.wte.weight"}, codec="direct")
    out = decompress(qnt, tmp_path / "out", threads=2)
    ours = (out / "model.safetensors").read_bytes()
    assert_same_file(ours, _reference(qnt, tmp_path / "ref.safetensors"))
    head, _, _ = _split(ours)
    assert ("lm_head.weight" in head) == (not tie)  # an untied model gets its copy as a tensor of its own
    with safetensors_torch.safe_open(str(out / "model.safetensors"), "pt") as f:
        if not tie:
            assert torch.equal(f.get_tensor("lm_head.weight"), f.get_tensor("transformer.wte.weight"))
        assert f.get_tensor("transformer.scale").shape == () and f.get_tensor("transformer.nothing").shape == (0, 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.qnt", "out", "ref.safetensors"]


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")  # transformers'
def test_decompress_of_a_transformers_model_is_byte_identical_and_loads(tmp_path):
    transformers = pytest.importorskip("transformers")
    from quantonium.pipeline import compress

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1000, n_positions=128, bos_token_id=0,
                                  eos_token_id=0)
    model = transformers.GPT2LMHeadModel(cfg).to(torch.bfloat16)
    model.save_pretrained(tmp_path / "src")
    compress(str(tmp_path / "src"), tmp_path / "m.qnt", codec="direct", bpw=6, progress=False)
    out = decompress(tmp_path / "m.qnt", tmp_path / "out")
    assert_same_file((out / "model.safetensors").read_bytes(), _reference(tmp_path / "m.qnt", tmp_path / "ref.st"))
    back = transformers.GPT2LMHeadModel.from_pretrained(str(out))
    assert back.transformer.wte.weight.dtype == torch.bfloat16
    assert back.lm_head.weight.data_ptr() == back.transformer.wte.weight.data_ptr()  # tied again by transformers


def test_decompress_holds_the_tensors_in_flight_not_the_model(tmp_path, rng, monkeypatch):
    """A memory limit below the model's decoded size but above one tensor (and the write buffers): the old
    decompress (read_all, then save_file) refuses it; the streaming one must write the same file within it."""
    tensors = {f"layer.{i:02d}.weight": rng.standard_normal((128, 256)).astype(np.float32) for i in range(16)}
    qnt = _qnt(tmp_path / "m.qnt", tensors)
    total = 16 * 128 * 256 * 4  # 2 MiB
    limit = total // 2
    with QntFile(qnt, max_memory=limit) as f:
        with pytest.raises(QntLimitError, match="decoding 16 tensors needs"):
            f.read_all()  # what decompress did before
    ref = _reference(qnt, tmp_path / "ref.st")
    held, peak = [0], [0]
    read = QntFile.read

    def counting_read(self, name, **kw):  # bytes of decoded tensors alive at once (freed when collected)
        import weakref

        a = read(self, name, **kw)
        held[0] += a.nbytes
        peak[0] = max(peak[0], held[0])
        weakref.finalize(a, lambda n=a.nbytes: held.__setitem__(0, held[0] - n))
        return a

    monkeypatch.setattr(QntFile, "read", counting_read)
    for threads in (1, 2):
        held[0] = peak[0] = 0
        monkeypatch.setenv(limits.ENV_MAX_MEMORY, str(limit))
        out = decompress(qnt, tmp_path / f"out{threads}", threads=threads)
        assert_same_file((out / "model.safetensors").read_bytes(), ref)
        assert 0 < peak[0] <= (threads + 2) * 128 * 256 * 4 < limit, peak[0]  # a few tensors, never the model


def test_a_decoder_error_mid_write_leaves_nothing(tmp_path, rng, monkeypatch):
    tensors = {f"layer.{i:02d}.weight": rng.standard_normal((64, 128)).astype(np.float32) for i in range(8)}
    qnt = _qnt(tmp_path / "m.qnt", tensors)
    with QntFile(qnt) as f:
        last = f.info("layer.07.weight")  # the last tensor in the file's order
    raw = bytearray(qnt.read_bytes())
    raw[last["offset"] + last["length"] // 2] ^= 0xFF
    qnt.write_bytes(bytes(raw))
    writes = []
    real = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, data, off: writes.append(off) or real(fd, data, off))
    with pytest.raises(QntFormatError, match=r"m\.qnt: tensor 'layer\.07\.weight': checksum mismatch"):
        decompress(qnt, tmp_path / "out", threads=2)
    assert writes  # the first tensors had reached the disk
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.qnt"]  # no folder, no temporary


def test_an_interruption_mid_write_leaves_nothing(tmp_path, rng, monkeypatch):
    tensors = {f"w{i}": rng.standard_normal((64, 64)).astype(np.float32) for i in range(6)}
    qnt = _qnt(tmp_path / "m.qnt", tensors)
    add = SafetensorsWriter.add
    calls = []

    def interrupted(self, name, array):
        calls.append(name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        add(self, name, array)

    monkeypatch.setattr(SafetensorsWriter, "add", interrupted)
    with pytest.raises(KeyboardInterrupt):
        decompress(qnt, tmp_path / "out", threads=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.qnt"]


def test_a_write_error_stops_the_decoding(tmp_path, rng, monkeypatch):
    """The disk fills: one OutputError naming the file, and no tensor is decoded after it is known."""
    tensors = {f"w{i:02d}": rng.standard_normal((64, 64)).astype(np.float32) for i in range(12)}
    qnt = _qnt(tmp_path / "m.qnt", tensors)
    real = os.pwrite

    def full(fd, data, off):
        if off:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, off)

    decoded = []
    read = QntFile.read
    monkeypatch.setattr(QntFile, "read", lambda self, name, **kw: decoded.append(name) or read(self, name, **kw))
    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(outputs.OutputError, match=r"out/model\.safetensors: write failed \(no space left on the device\)"):
        decompress(qnt, tmp_path / "out", threads=1)
    assert len(decoded) < len(tensors)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.qnt"]


def test_a_tied_alias_safetensors_cannot_hold_is_one_error(tmp_path, rng):
    w = rng.standard_normal((8, 8)).astype(np.float32)
    qnt = _qnt(tmp_path / "m.qnt", {"w": w}, config={"tie_word_embeddings": False}, tied={"__metadata__": "w"})
    with pytest.raises(QntFormatError, match=r"m\.qnt: cannot be written as safetensors \(a tensor cannot be named '__metadata__'"):
        decompress(qnt, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.qnt"]


@pytest.mark.parametrize("refusal", ["einval", "short"])
def test_stream_file_goes_on_buffered_when_direct_writes_fail(tmp_path, monkeypatch, refusal):
    """A filesystem that takes O_DIRECT at open but refuses it at write (EINVAL), or a direct write cut short at
    an unaligned length: the rest is written buffered and the file is still exact."""
    import fcntl

    if not getattr(os, "O_DIRECT", 0):
        pytest.skip("no O_DIRECT on this OS")
    real, seen = os.pwrite, []

    def pwrite(fd, data, offset):
        direct = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)
        seen.append(direct)
        if direct and refusal == "einval":
            raise OSError(errno.EINVAL, "Invalid argument")
        if direct and refusal == "short" and len(data) > 5000:
            return real(fd, bytes(memoryview(data)[:5000]), offset)  # 5000: not a multiple of the block size
        return real(fd, data, offset)

    size = 3 * 65536 + 123
    data = np.random.default_rng(3).integers(0, 256, size, dtype=np.uint8)
    monkeypatch.setattr(os, "pwrite", pwrite)
    with outputs.StreamFile(tmp_path / "f", size, direct=True) as f:
        assert f.direct
        f.write(data)
    assert not f.direct and seen[0] and not seen[-1]
    assert (tmp_path / "f").read_bytes() == data.tobytes()


@pytest.mark.parametrize("value, want", [("0", False), ("off", False), ("1", True), (None, True)])
def test_direct_io_can_be_turned_off_from_the_environment(value, want):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "QUANTONIUM_DIRECT_IO"}
    if value is not None:
        env["QUANTONIUM_DIRECT_IO"] = value
    r = subprocess.run([sys.executable, "-c", "import quantonium.outputs as o; print(o.DIRECT_IO)"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == str(want), r.stderr
