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
