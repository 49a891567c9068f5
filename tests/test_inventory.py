"""The inventory report: numbers from the files, validation really performed, failures reported."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from quantonium import inventory  # noqa: E402
from quantonium.container import QntFile  # noqa: E402
from quantonium.pipeline import compress  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")


@pytest.fixture
def qnts(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1000, n_positions=128, bos_token_id=0, eos_token_id=0)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "src")
    a = tmp_path / "a.qnt"
    b = tmp_path / "b.qnt"
    compress(str(tmp_path / "src"), a, codec="rft-dense", snr_db=30, progress=False)
    compress(str(tmp_path / "src"), b, codec="rft-spectral", keep=0.5, progress=False)
    return a, b


def test_report_numbers_come_from_the_files(tmp_path, qnts):
    inv = inventory.build(list(qnts))
    written = inventory.write(inv, tmp_path / "rep" / "report.md", tmp_path / "rep" / "report.json")
    assert all(p.exists() for p in written) and len([p for p in written if p.suffix == ".png"]) == 2
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    t = data["totals"]
    assert t["files"] == 2 and t["models"] == 1 and t["checks_failed"] == 0  # one model compressed two ways
    for path, m in zip(qnts, data["models"]):
        with QntFile(path) as f:
            assert m["file_bytes"] == f.size
            assert m["parameters"] == sum(int(np.prod(f.info(n)["shape"])) for n in f)
        assert {c["check"] for c in m["checks"]} == {"opens", "checksums", "decodes", "rft parameters", "forward pass"}
    assert t["file_bytes"] == sum(m["file_bytes"] for m in data["models"])
    assert t["parameters"] == data["models"][0]["parameters"] and t["file_parameters"] == 2 * t["parameters"]
    spectral = data["models"][1]
    assert spectral["quantum_states"] > 0 and spectral["quantum_states"] == sum(
        r["stored_values"] for r in spectral["per_tensor"] if r["codec"] == "rft-spectral")
    assert data["models"][0]["license"] == "unknown"  # not invented
    md = (tmp_path / "rep" / "report.md").read_text()
    assert f"{t['parameters']:,}" in md and "quantum states" in md and "**pass**" in md


def test_tampered_rft_parameters_and_broken_files_fail_their_checks(tmp_path, qnts):
    a, _ = qnts
    raw = bytearray(a.read_bytes())
    from quantonium.container import ALIGN, FOOTER
    import zlib

    magic, ioff, ilen, icrc, major, minor, end = FOOTER.unpack_from(raw, len(raw) - ALIGN)
    index = json.loads(bytes(raw[ioff : ioff + ilen]))
    for t in index["tensors"]:
        if t.get("rft"):
            t["rft"]["beta"] = 0.5  # the index now lies about the transform
    body = json.dumps(index).encode()
    data = bytes(raw[:ioff]) + body + b"\0" * ((-len(body)) % ALIGN)
    bad = tmp_path / "tampered.qnt"
    bad.write_bytes(data + FOOTER.pack(magic, ioff, len(body), zlib.crc32(body), major, minor, end))
    inv = inventory.build([bad], forward=False)
    rft = [c for c in inv["models"][0]["checks"] if c["check"] == "rft parameters"][0]
    assert rft["result"] == "fail" and "beta" in rft["detail"]
    broken = tmp_path / "broken.qnt"
    broken.write_bytes(a.read_bytes()[:1000])
    r = subprocess.run([sys.executable, "-m", "quantonium", "inventory", str(a), str(broken), "-o", str(tmp_path / "r.md"), "--no-forward"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert "broken.qnt: opens: fail" in r.stderr and "1 checks failed" in r.stdout
