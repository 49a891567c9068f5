#!/usr/bin/env python3
"""Random-init models at the real shapes of the systems the mission names, written as HF folders.

    .venv/bin/python bench/shaped_models.py gpt-neo-1.3b OUTDIR     # 5.26 GB of fp32 safetensors
    .venv/bin/python bench/shaped_models.py gpt2-124m OUTDIR
    .venv/bin/python bench/shaped_models.py gpt2-350m OUTDIR

The real weights cannot be downloaded here (shared/docs/DATA.md). These have
the real configurations (GPT-Neo 1.3B: 24 layers, hidden 2048, MLP 8192,
vocabulary 50257, 2048 positions, local/global attention; GPT-2 small = the
DialoGPT-small shape; GPT-2 medium for the 350M point) and the library's own
initialisation statistics (normal(0, initializer_range) for matrices and
embeddings, zeros for biases, ones for norm weights). They serve for code
paths, speed and memory at real sizes only: their fidelity numbers say
nothing about trained models, and nothing here presents them as such.

The safetensors file is written tensor by tensor (the ``safetensors`` package
has no streaming writer and would need the whole 5.26 GB in memory): the
header is the package's documented format (u64 length + JSON with dtype,
shape and data offsets), and the result is checked by reading it back with
``safetensors.safe_open``. The tokenizer is a byte-level BPE trained here on
the bundled Wikipedia prose (gensim test data) up to the model's vocabulary
size: the real GPT-2 tokenizer cannot be downloaded, and calibration only
needs token ids in range (the weights are random anyway).
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np

SHAPES = {
    "gpt2-124m": ("GPT2LMHeadModel", "GPT2Config", {}),
    "gpt2-350m": ("GPT2LMHeadModel", "GPT2Config", {"n_layer": 24, "n_embd": 1024, "n_head": 16}),
    "gpt-neo-1.3b": ("GPTNeoForCausalLM", "GPTNeoConfig", {
        "num_layers": 24, "hidden_size": 2048, "num_heads": 16, "intermediate_size": 8192,
        "vocab_size": 50257, "max_position_embeddings": 2048, "window_size": 256,
        "attention_types": [[["global", "local"], 12]], "bos_token_id": 50256, "eos_token_id": 50256,
        "tie_word_embeddings": True,
    }),
}


def tensors_of(kind: str):
    """(config dict, [(name, shape, init)]) of the model, learnt from the meta device."""
    import torch
    import transformers

    arch, cfg_cls, kw = SHAPES[kind]
    cfg = getattr(transformers, cfg_cls)(**kw)
    cfg.architectures = [arch]
    with torch.device("meta"):
        model = getattr(transformers, arch)(cfg)
    std = float(getattr(cfg, "initializer_range", 0.02))
    out = []
    for name, p in model.named_parameters():  # tied weights once
        if name.endswith("bias"):
            init = "zeros"
        elif p.ndim == 1:
            init = "ones"  # norm weights
        else:
            init = "normal"
        out.append((name, tuple(p.shape), init))
    return cfg.to_dict(), out, std


def write(kind: str, outdir: Path, seed: int = 0) -> Path:
    config, tensors, std = tensors_of(kind)
    outdir.mkdir(parents=True, exist_ok=True)
    header, off = {"__metadata__": {"format": "pt", "made_by": f"bench/shaped_models.py {kind} (random init)"}}, 0
    for name, shape, _ in tensors:
        n = 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((-len(hb)) % 8)
    rng = np.random.default_rng(seed)
    path = outdir / "model.safetensors"
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        for name, shape, init in tensors:
            if init == "normal":
                rows = shape[0]
                per = max(1, (16 << 20) // max(1, int(np.prod(shape[1:]))))
                for r in range(0, rows, per):  # 64 MB at a time
                    blk = rng.standard_normal((min(per, rows - r),) + shape[1:], dtype=np.float32)
                    blk *= np.float32(std)
                    f.write(blk.tobytes())
            else:
                f.write((np.zeros if init == "zeros" else np.ones)(shape, np.float32).tobytes())
    tmp.replace(path)
    (outdir / "config.json").write_text(json.dumps(config, indent=2))
    write_tokenizer(outdir, int(config["vocab_size"]))
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as h:
        names = set(h.keys())
    if names != {n for n, _, _ in tensors}:
        raise RuntimeError("the written safetensors file does not list the expected tensors")
    return path


def write_tokenizer(outdir: Path, vocab_size: int) -> None:
    """A byte-level BPE tokenizer trained on the bundled Wikipedia prose, saved as tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from quantonium.models.texts import calibration_text

    _, text = calibration_text()
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(text.split("\n"), trainer)
    PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                            pad_token="<|endoftext|>").save_pretrained(outdir)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=sorted(SHAPES))
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer-only", action="store_true", help="(re)write the tokenizer of an existing folder")
    a = ap.parse_args(argv)
    if a.tokenizer_only:
        config = json.loads((Path(a.outdir) / "config.json").read_text())
        write_tokenizer(Path(a.outdir), int(config["vocab_size"]))
        return 0
    p = write(a.kind, Path(a.outdir), a.seed)
    print(f"wrote {p} ({p.stat().st_size:,} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
