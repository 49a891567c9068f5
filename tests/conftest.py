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


