"""quantonium compare (ours vs peers at matched bits), compress --allocate / --calibration, sensitivities."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from quantonium import compare as cmp  # noqa: E402
from quantonium.calibration import CalibrationData, Sensitivity, collect_grams, measure  # noqa: E402
from quantonium.models.texts import calibration_text  # noqa: E402
from quantonium.container import QntFile  # noqa: E402
from quantonium.pipeline import compress  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "quantonium", *map(str, args)], capture_output=True, text=True, timeout=900)


def test_sensitivities_of_a_causal_lm(gpt2_folder):
    src, text = gpt2_folder
    model = transformers.GPT2LMHeadModel.from_pretrained(str(src)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(src))
    s = measure(model, tok, text, max_tokens=512, window=64)
    grams = collect_grams(model, CalibrationData.make(model, tok, text, max_tokens=512, window=64))
    wte = s["transformer.wte.weight"]
    assert len(wte.terms) == 2 and "transformer.wte.weight" not in grams  # tied: input table and output projection
    c = s["transformer.h.0.mlp.c_fc.weight"]  # Conv1D (in, out)
    g, transposed = grams["transformer.h.0.mlp.c_fc.weight"]
    assert c.transposed and transposed and g.shape == (64, 64) and np.allclose(g, g.T)
    r, col = c.factors()
    assert r.shape == (64,) and col.shape == (256,) and np.all(r > 0) and np.all(col > 0)
    assert np.allclose(np.diag(g), c.terms[0][0], rtol=1e-5)  # diag of E[x x^T] is the input energy
    # token rows never seen in the text are floored, not zero
    rows, _ = wte.factors(floor=0.1)
    assert rows.min() > 0 and np.sum(rows == rows.min()) > 100  # the floor, shared by the unseen tokens
    assert not model.training and all(p.grad is None for p in model.parameters())


def test_rank_one_combination_is_exact_for_one_term():
    r, c = np.array([1.0, 2.0]), np.array([3.0, 4.0, 5.0])
    s = Sensitivity((2, 3), [(r, c)])
    rr, cc = s.factors(floor=0.0)
    assert np.allclose(np.outer(rr, cc), np.outer(r, c))
    s.terms.append((r * 2, c))
    rr, cc = s.factors(floor=0.0)
    assert np.isclose(np.outer(rr, cc).sum(), s.weight_sum())


def test_calibration_text_is_prose_not_markup():
    name, text = calibration_text(max_chars=50_000)
    assert "Wikipedia" in name and len(text) == 50_000
    assert "{{" not in text and "[[" not in text and "<ref" not in text


def test_compare_ours_and_peers(gpt2_folder):
    src, text = gpt2_folder
    wl = cmp.Workload.load(str(src), text=text, text_name="words", calibration=text[:6000], max_tokens=512)
    methods = ["auto", "direct", "rtn-g32", "rtn-g128", "gguf-q8_0", "gguf-q4_0", "hqq-g64", "quanto"]
    res = cmp.compare(wl, [3, 4], methods)
    got = {(r["method"], r["requested_bits"]) for r in res["rows"]}
    assert {("auto", 3), ("auto", 4), ("direct", 4), ("rtn-g32", 3), ("gguf-q4_0", 4), ("hqq-g64", 4), ("quanto", 4)} <= got
    assert ("gguf-q8_0", 4) not in got and ("quanto", 3) not in got  # fixed-rate peers only at their own bits
    rows = {(r["method"], r["requested_bits"]): r for r in res["rows"]}
    small = sum(cmp._lossless_bits(wl).values())
    n_large = sum(a.size for a in wl.large.values())
    # bits are counted the same way: GGUF Q4_0 is 4.5 bits per large weight plus the same small tensors
    assert rows[("gguf-q4_0", 4)]["bpw"] == pytest.approx((4.5 * n_large + small) / wl.weights, rel=1e-6)
    assert rows[("rtn-g32", 4)]["bpw"] > 4.5
    # the tiny model's rows (64, 192, 256 wide) do not all split into groups of 128: said, not faked
    assert any(n["method"] == "rtn-g128" and "multiple of 128" in n["reason"] for n in res["not_run"])
    assert rows[("auto", 4)]["bpw"] <= 4.0 and rows[("auto", 3)]["bpw"] <= 3.0
    for r in res["rows"]:
        assert 0 < r["mean_kl_nats"] < 5 and 0 <= r["top1_agreement"] <= 1
    # more bits, less damage (same method)
    assert rows[("rtn-g32", 4)]["mean_kl_nats"] < rows[("rtn-g32", 3)]["mean_kl_nats"]
    assert rows[("auto", 4)]["mean_kl_nats"] < rows[("auto", 3)]["mean_kl_nats"]
    assert "| gguf-q4_0 | 4 |" in cmp.table(res)


def test_a_peer_that_cannot_run_is_reported_not_faked():
    wl = cmp.Workload("synthetic", {"w": np.ones((8, 1000), np.float32)}, None, None, "", "", "", "")
    res = cmp.compare(wl, [4, 5], ["gguf-q4_0", "gguf-q5_0", "rtn-g32"])
    assert res["rows"] == []
    reasons = {(n["method"], n["bits"]): n["reason"] for n in res["not_run"]}
    assert "multiple of the 32-weight block" in reasons[("gguf-q4_0", 4)]
    assert "multiple of 32" in reasons[("rtn-g32", 4)]
    with pytest.raises(ValueError, match="unknown method"):
        cmp.compare(wl, [4], ["nope"])


def test_cli_compare_writes_table_chart_and_json(tmp_path, gpt2_folder):
    src, text = gpt2_folder
    (tmp_path / "t.txt").write_text(text)
    r = run_cli("compare", src, "--bits", "4", "--methods", "direct,rtn-g32", "--text", tmp_path / "t.txt",
                "--max-tokens", "256", "-o", tmp_path / "cmp")
    assert r.returncode == 0, r.stderr
    assert "| rtn-g32 | 4 |" in r.stdout
    res = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert {x["method"] for x in res["rows"]} == {"direct", "rtn-g32"}
    assert (tmp_path / "cmp" / "compare_rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = run_cli("compare", src, "--methods", "direct,zip")
    assert bad.returncode == 2 and "unknown method 'zip'" in bad.stderr  # usage errors: exit 2 (issue 12)
    bad = run_cli("compare", src, "--bits", "four")
    assert bad.returncode == 2 and "--bits" in bad.stderr


def test_compress_with_allocation_and_calibration(tmp_path, gpt2_folder):
    src, text = gpt2_folder
    (tmp_path / "cal.txt").write_text(text[:5000])
    r = run_cli("compress", src, "-o", tmp_path / "m.qnt", "--codec", "direct", "--bits", "3",
                "--calibration", tmp_path / "cal.txt", "--json", "--quiet")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    with QntFile(tmp_path / "m.qnt") as f:
        f.verify()
        assert f.model["calibration"]["text"] == "cal.txt"
        infos = [f.info(n) for n in f]
        # the tensors' payloads (scales, tables, headers included) average 3 bpw at most
        assert 2.9 <= sum(i["bits"] for i in infos) / sum(i["numel"] for i in infos) <= 3.0
        assert len({round(i["bpw"], 2) for i in infos if i["codec"] == "direct"}) > 3  # not one setting for all
        gaps = [i["shannon_gap_bpw"] for i in infos if i["codec"] == "direct"]
        # near the bound plus overheads: on these tiny tensors (12k weights) header, table and fp16
        # scales alone cost ~0.7 bpw, and weighted grids are not MSE-optimal
        assert all(g is not None and g > -0.2 for g in gaps) and float(np.median(gaps)) < 2.5
        assert all(i["shannon_gap_bpw"] is None for i in infos if i["codec"] == "lossless")
    r = run_cli("inspect", tmp_path / "m.qnt")
    assert r.returncode == 0 and "gap" in r.stdout
    assert res["bpw"] > 3.0  # the whole file also holds the tokenizer and config
    compress(str(src), tmp_path / "p.qnt", codec="direct", bpw=3, allocate=True, progress=False)
    with QntFile(tmp_path / "p.qnt") as f:
        infos = [f.info(n) for n in f]
        assert sum(i["bits"] for i in infos) / sum(i["numel"] for i in infos) <= 3.0
    bad = run_cli("compress", src, "-o", tmp_path / "x.qnt", "--allocate")
    assert bad.returncode == 2 and "needs --bits" in bad.stderr  # a usage error (issue 12)
    bad = run_cli("compress", src, "-o", tmp_path / "x.qnt", "--bits", "3", "--calibration", tmp_path / "nope.txt")
    assert bad.returncode == 1 and "no such calibration text" in bad.stderr
    assert not (tmp_path / "x.qnt").exists()


def test_every_gram_matrix_is_its_own_layers_input(gpt2_folder):
    """Each layer's Gram matrix is E[x x^T] of that layer's own input, checked against inputs captured
    independently (a matrix cached by the input's address once went to a later layer of the same width)."""
    import torch

    src, text = gpt2_folder
    model = transformers.GPT2LMHeadModel.from_pretrained(str(src)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(src))
    data = CalibrationData.make(model, tok, text, max_tokens=512, window=64)
    grams = collect_grams(model, data)
    inputs, handles = {}, []
    for n, m in model.named_modules():
        if n + ".weight" in grams:
            handles.append(m.register_forward_pre_hook(
                lambda mod, inp, _n=n: inputs.__setitem__(_n, inp[0].detach().reshape(-1, inp[0].shape[-1]).double())))
    with torch.no_grad():
        model(torch.cat(data.windows, 0), use_cache=False)
    for h in handles:
        h.remove()
    assert len(inputs) == len(grams) >= 8
    for n, x in inputs.items():
        want = (x.T @ x / x.shape[0]).numpy()
        g, _ = grams[n + ".weight"]
        assert np.allclose(g, want, rtol=1e-4, atol=1e-6 * np.abs(want).max()), n
