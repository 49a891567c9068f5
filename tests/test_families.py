"""Calibrated compression, loading and eval on every architecture family the pipeline accepts (issue 9).

Tiny random models (a few layers, width 64) of GPT-2, GPT-Neo, Llama, Gemma 3, OPT
(tied embeddings, per-head q/k norms), Qwen2, BERT and MPNet, encoders with
and without a task head (masked-LM heads are what many sentence-transformers
exports name in their config), each saved with a small trained tokenizer:
``compress --codec auto --bits 4 --calibration FILE`` must run (GPTQ on the
layers it can see), the file must load in memory and equal ``from_pretrained``
of the decompressed folder, and ``eval`` must score it.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from quantonium import load  # noqa: E402
from quantonium.compress import compress  # noqa: E402
from quantonium.container import QntFile  # noqa: E402
from quantonium.evaluate import evaluate  # noqa: E402
from quantonium.pipeline import decompress  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")

V = 256  # vocabulary of the tiny models (the tokenizer has 200)


def families():
    T = transformers
    small = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, vocab_size=V)
    return {
        "gpt2": lambda: T.GPT2LMHeadModel(T.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=V, n_positions=128)),
        "gpt-neo": lambda: T.GPTNeoForCausalLM(T.GPTNeoConfig(num_layers=2, attention_types=[[["global", "local"], 1]],
                                                             hidden_size=64, num_heads=4, vocab_size=V,
                                                             max_position_embeddings=128, window_size=16)),
        "llama": lambda: T.LlamaForCausalLM(T.LlamaConfig(num_hidden_layers=2, num_key_value_heads=2,
                                                          max_position_embeddings=128, **small)),
        "gemma3": lambda: T.Gemma3ForCausalLM(T.Gemma3TextConfig(num_hidden_layers=2, num_key_value_heads=1, head_dim=32,
                                                                 max_position_embeddings=128, sliding_window=16, **small)),
        "qwen2": lambda: T.Qwen2ForCausalLM(T.Qwen2Config(num_hidden_layers=2, num_key_value_heads=2,
                                                          max_position_embeddings=128, **small)),
        "opt": lambda: T.OPTForCausalLM(T.OPTConfig(num_hidden_layers=2, hidden_size=64, ffn_dim=128, num_attention_heads=4,
                                                    word_embed_proj_dim=64, vocab_size=V, max_position_embeddings=128)),
        "bert": lambda: T.BertModel(T.BertConfig(num_hidden_layers=2, max_position_embeddings=128, **small)),
        "bert-mlm": lambda: T.BertForMaskedLM(T.BertConfig(num_hidden_layers=2, max_position_embeddings=128, **small)),
        "mpnet": lambda: T.MPNetModel(T.MPNetConfig(num_hidden_layers=2, max_position_embeddings=130, **small)),
        "mpnet-mlm": lambda: T.MPNetForMaskedLM(T.MPNetConfig(num_hidden_layers=2, max_position_embeddings=130, **small)),
    }


@pytest.fixture(scope="module")
def tokenizer_and_text(gpt2_folder_module):
    src, text = gpt2_folder_module
    tok = transformers.AutoTokenizer.from_pretrained(str(src))
    tok.pad_token = "<unk>"
    sentences = ". ".join(text[i:i + 120] for i in range(0, len(text), 120))  # encoders calibrate on sentences
    return tok, sentences


@pytest.mark.parametrize("family", list(families()))
def test_calibrated_compress_load_and_eval(family, tokenizer_and_text, tmp_path):
    tok, text = tokenizer_and_text
    torch.manual_seed(0)
    model = families()[family]().eval()
    model.save_pretrained(tmp_path / "src")
    tok.save_pretrained(tmp_path / "src")
    cal = tmp_path / "cal.txt"
    cal.write_text(text)
    res = compress(str(tmp_path / "src"), tmp_path / "m.qnt", codec="auto", bpw=4, calibration=str(cal),
                   threads=1, progress=False, calibration_tokens=1024)
    assert res.tensor_bpw <= 4.0 + 1e-9 and res.tensor_bpw > 3.5
    with QntFile(tmp_path / "m.qnt") as f:
        cal_meta = f.model["calibration"]
        gptq = [n for n in f if (f.info(n).get("report") or {}).get("gptq")]
    assert cal_meta["weighted_tensors"] > 0 and cal_meta["gptq_tensors"] == len(gptq) > 0
    # the in-memory loader gives what from_pretrained gives on the decompressed folder
    mem, mtok = load(tmp_path / "m.qnt")
    disk = type(model).from_pretrained(str(decompress(tmp_path / "m.qnt", tmp_path / "hf"))).eval()
    for (n1, p1), (n2, p2) in zip(mem.state_dict().items(), disk.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    assert mtok is not None
    r = evaluate(str(tmp_path / "src"), tmp_path / "m.qnt", text=text, text_name="words", max_tokens=512, window=64,
                 sentences=64)
    if r["kind"] == "causal-lm":
        assert np.isfinite(r["mean_kl_nats"]) and r["tokens_scored"] > 0
    else:
        assert -1 <= r["min_cosine"] <= r["mean_cosine"] <= 1


def test_an_architecture_transformers_cannot_build_fails_fast(tmp_path, tokenizer_and_text):
    import json

    tok, text = tokenizer_and_text
    torch.manual_seed(0)
    families()["gpt2"]().save_pretrained(tmp_path / "src")
    cfg = json.loads((tmp_path / "src" / "config.json").read_text())
    cfg["model_type"], cfg["architectures"] = "no-such-model", ["NoSuchModelForCausalLM"]
    (tmp_path / "src" / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "cal.txt").write_text(text)
    with pytest.raises(ValueError, match="cannot build|calibration"):
        compress(str(tmp_path / "src"), tmp_path / "m.qnt", codec="auto", bpw=4, calibration=str(tmp_path / "cal.txt"),
                 threads=1, progress=False)
    assert not (tmp_path / "m.qnt").exists() and not (tmp_path / ".m.qnt.partial").exists()


def test_gram_matrices_are_released_one_block_at_a_time(tokenizer_and_text, tmp_path, monkeypatch):
    """Calibrated compress of a 6-layer model: when a layer is coded, no earlier block's Gram matrix
    is still alive (one block's: q/k/v share one, gate/up share one). Holding them all, as the old
    code did, fails this."""
    import gc
    import re
    import weakref

    import quantonium.compress.allocated as allocated

    tok, text = tokenizer_and_text
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(num_hidden_layers=6, num_key_value_heads=4, max_position_embeddings=128,
                                   hidden_size=64, intermediate_size=256, num_attention_heads=4, vocab_size=V)
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path / "src")
    tok.save_pretrained(tmp_path / "src")
    (tmp_path / "cal.txt").write_text(text)
    seen: list[tuple[int, weakref.ref]] = []
    live_max = [0]
    real = allocated.run_job

    def block(name: str) -> int:
        m = re.search(r"layers\.(\d+)\.", name)
        return int(m.group(1)) if m else 1_000  # the head comes after every block

    def spy(job, nthreads=1):
        if job.gram is not None:
            gc.collect()
            if not any(r() is job.gram for _, r in seen):
                seen.append((block(job.name), weakref.ref(job.gram)))
            alive = [b for b, r in seen if r() is not None]
            assert all(b == block(job.name) for b in alive), (job.name, alive)  # no earlier block's matrix
            live_max[0] = max(live_max[0], len(alive))
        return real(job, nthreads)

    monkeypatch.setattr(allocated, "run_job", spy)
    compress(str(tmp_path / "src"), tmp_path / "m.qnt", codec="auto", bpw=4, calibration=str(tmp_path / "cal.txt"),
             threads=1, progress=False, calibration_tokens=512)
    assert len(seen) == 6 * 4 + 1  # per layer: q/k/v (one input), o, gate/up (one input), down; the untied head
    assert 1 <= live_max[0] <= 4  # at most one block's four inputs (handed over one by one, each released after)


@pytest.mark.parametrize("family", ["gpt2", "gpt-neo", "llama", "gemma3", "qwen2"])
def test_the_block_by_block_sweep_measures_each_layers_own_input(family, tokenizer_and_text):
    """gram_sweep in chunks of one window, block by block with the earlier blocks replayed from their
    stored outputs, gives every layer the Gram matrix of the input it sees when the whole model runs on
    all windows at once (captured independently); local / sliding-window layers (window 16 < 64
    tokens) and untied heads included. A replay that fed a block the wrong input, or masks made for
    another layer type, fails this."""
    from quantonium.calibration import CalibrationData, gram_modules, gram_sweep

    tok, text = tokenizer_and_text
    torch.manual_seed(0)
    model = families()[family]().eval()
    data = CalibrationData.make(model, tok, text, max_tokens=256, window=64)
    assert len(data.windows) == 4
    got: dict[str, np.ndarray] = {}
    gram_sweep(model, data, lambda n, g, t: got.__setitem__(n, g.double().numpy().copy()), chunk_tokens=64)
    inputs, handles = {}, []
    mods = {n: m for n, m, _ in gram_modules(model, data)}
    for n, m in mods.items():
        handles.append(m.register_forward_pre_hook(
            lambda mod, inp, _n=n: inputs.__setitem__(_n, inp[0].detach().reshape(-1, inp[0].shape[-1]).double())))
    with torch.no_grad():
        model(torch.cat(data.windows, 0), use_cache=False)
    for h in handles:
        h.remove()
    head = model.get_output_embeddings()
    assert set(got) == set(mods) and len(got) >= 8
    if not model.config.tie_word_embeddings:
        assert any(mods[n] is head for n in got)  # the untied head's matrix, measured before its logits
    for n, x in inputs.items():
        want = (x.T @ x / x.shape[0]).numpy()
        assert np.allclose(got[n], want, rtol=1e-4, atol=1e-5 * np.abs(want).max()), n
    assert all("forward" not in b.__dict__ for b in model.modules())  # the blocks' own forward is back
