"""End-to-end fidelity of a compressed model against its original (shared/docs/MEASURE.md).

Causal LMs: perplexity of both models over a text in non-overlapping windows
(512 tokens by default; window, stride and token count are reported), the
mean KL divergence KL(original || compressed) of the next-token
distributions, and top-1 next-token agreement. Encoders: mean and minimum
cosine similarity of mean-pooled sentence embeddings over a fixed sentence
set. The default text is the Lee news corpus shipped in gensim's test data
(installed by the set-up, read as a file: gensim is not imported).
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any

from .models.arch import encoder_states, max_positions, model_kind
from .models.loader import TOKENIZER_FILES, load_qnt, load_source
from .models.texts import default_text, sentences

__all__ = ["SourceMismatch", "check_original", "compare_models", "default_text", "evaluate", "load_source", "with_weights"]


class SourceMismatch(ValueError):
    """The original given to ``eval`` is not the model the ``.qnt`` file was compressed from."""


def check_original(original: str | Path, qnt: str | Path):
    """Refuses an ``original`` that is not ``qnt``'s source, before any model is built; returns its ModelSource.

    Also refused: no tokenizer in either (the text cannot be read). Compared with what the file records:
    the architecture, the stored tensors' names (every stored tensor is in the original, every tensor the original
    would store is in the file) and their shapes. Reading a safetensors
    original costs its header; a GGUF original is dequantised here (the
    returned source carries the model, so ``evaluate`` does not load it twice).
    """
    from .container import QntFile
    from .models import classify, open_source

    with QntFile(qnt) as f:
        rec = f.model
        stored = {n: tuple(int(x) for x in f.info(n)["shape"]) for n in f}
        embedded = set(f.file_names)
    src = open_source(original)
    roles = classify(src.names, src.config, src.shared)
    made_from = f" (it was compressed from {rec['source']})" if rec.get("source") else ""

    def refuse(reason: str) -> None:
        raise SourceMismatch(f"{original} is not the original of {qnt}: {reason}{made_from}; "
                             "give the model the file was compressed from")

    arch = rec.get("architecture")
    if arch and arch != "unknown" and roles.architecture != "unknown" and arch != roles.architecture:
        refuse(f"architecture {roles.architecture}, the file's is {arch}")
    names = set(src.names)
    absent = [n for n in stored if n not in names]
    if absent:
        refuse(f"{len(absent)} of the file's {len(stored)} tensors are not in it, e.g. {absent[0]!r}")
    extra = [n for n in src.names if n not in stored and n not in roles.buffers and n not in roles.tied]
    if extra:
        refuse(f"{len(extra)} of its tensors are not in the file, e.g. {extra[0]!r}")
    for n, shape in stored.items():
        have = tuple(int(x) for x in src.shape(n))
        if have != shape:
            refuse(f"tensor {n!r} has shape {have}, {shape} in the file")
    if not any(n in embedded or n in src.files for n in TOKENIZER_FILES):
        raise ValueError(f"neither {original} nor {qnt} has a tokenizer (tokenizer.json, vocab.txt, ...), and eval "
                         "needs one to read the text: add the tokenizer files to the original's folder")
    return src



def _reference(cache: dict | None, key, compute):
    """The original model's output for one batch, computed once when a cache is given."""
    if cache is None:
        return compute()
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def _stage(progress, name: str, total: float, unit: str):
    """``progress.stage(...)`` when a :class:`~quantonium.compress.progress.Progress` is given, else a silent one."""
    if progress is None:
        from .compress.progress import Progress

        progress = Progress(False)
    return progress.stage(name, total, unit)


def _causal(orig, comp, tok, text: str, window: int, max_tokens: int, cache: dict | None = None,
            progress=None) -> dict[str, Any]:
    import torch

    ids = tok(text, return_tensors="pt")["input_ids"][0][:max_tokens]
    n_windows = len(ids) // window
    if n_windows == 0:
        raise ValueError(f"the text has {len(ids)} tokens, fewer than one window of {window}")
    nll_o = nll_c = kl = 0.0
    agree = count = 0
    keys = [("causal", window, w, len(ids)) for w in range(n_windows)]
    passes = n_windows + sum(cache is None or k not in cache for k in keys)  # the original's cached passes are not run
    with torch.no_grad(), _stage(progress, "perplexity", passes * window, "tok") as update:
        for w in range(n_windows):
            x = ids[w * window : (w + 1) * window].unsqueeze(0)

            def original():
                update.note(f"window {w + 1}/{n_windows}: original")
                out = torch.log_softmax(orig(x).logits[0, :-1].double(), -1)
                update(window)
                return out

            lo = _reference(cache, keys[w], original)
            update.note(f"window {w + 1}/{n_windows}: compressed")
            lc = torch.log_softmax(comp(x).logits[0, :-1].double(), -1)
            update(window)
            tgt = x[0, 1:]
            nll_o -= lo.gather(1, tgt[:, None]).sum().item()
            nll_c -= lc.gather(1, tgt[:, None]).sum().item()
            kl += (lo.exp() * (lo - lc)).sum().item()
            agree += (lo.argmax(-1) == lc.argmax(-1)).sum().item()
            count += tgt.numel()
    return {
        "kind": "causal-lm",
        "window": window, "stride": window, "windows": n_windows, "tokens_scored": count,
        "perplexity_original": math.exp(nll_o / count),
        "perplexity_compressed": math.exp(nll_c / count),
        "perplexity_change_pct": 100 * (math.exp((nll_c - nll_o) / count) - 1),
        "mean_kl_nats": kl / count,
        "top1_agreement": agree / count,
    }


def _encoder(orig, comp, tok, text: str, n_sentences: int, cache: dict | None = None, progress=None) -> dict[str, Any]:
    import torch

    sents = sentences(text, n_sentences)
    batches = []
    for i in range(0, len(sents), 32):
        enc = tok(sents[i : i + 32], padding=True, truncation=True, max_length=256, return_tensors="pt")
        batches.append((i, enc, int(enc["attention_mask"].sum())))
    keys = {i: ("encoder", i, len(sents)) for i, _, _ in batches}
    total = sum(n * (2 if cache is None or keys[i] not in cache else 1) for i, _, n in batches)
    cos = []
    with torch.no_grad(), _stage(progress, "embeddings", total, "tok") as update:
        for i, enc, n in batches:
            mask = enc["attention_mask"].unsqueeze(-1).double()

            def original():
                update.note(f"sentences {i + 1}-{i + len(mask)}: original")
                out = (encoder_states(orig, **enc).double() * mask).sum(1) / mask.sum(1)
                update(n)
                return out

            eo = _reference(cache, keys[i], original)
            update.note(f"sentences {i + 1}-{i + len(mask)}: compressed")
            ec = (encoder_states(comp, **enc).double() * mask).sum(1) / mask.sum(1)
            update(n)
            cos += torch.nn.functional.cosine_similarity(eo, ec, dim=-1).tolist()
    return {"kind": "encoder", "sentences": len(cos), "pooling": "mean", "mean_cosine": sum(cos) / len(cos), "min_cosine": min(cos)}


def compare_models(orig, comp, tok, text: str, *, window: int = 512, max_tokens: int = 8192,
                   sentences: int = 256, cache: dict | None = None, progress=None) -> dict[str, Any]:
    """Fidelity of ``comp`` against ``orig`` (two loaded models): causal-LM or encoder metrics.

    The window is capped at the model's context length (reported in the result).
    ``cache`` (a dict kept by the caller for one original model and text) holds
    the original's outputs, so that comparing many models runs it once.
    ``progress`` (a :class:`~quantonium.compress.progress.Progress`): a bar
    counting the tokens through both models, window by window (stage
    ``perplexity`` or ``embeddings``).
    """
    if model_kind(orig) == "causal-lm":
        return _causal(orig, comp, tok, text, min(window, max_positions(orig)), max_tokens, cache, progress)
    return _encoder(orig, comp, tok, text, sentences, cache, progress)


def with_weights(model, tensors: dict[str, Any]):
    """A copy of ``model`` with the given tensors (checkpoint names, numpy arrays) put in."""
    import copy

    import numpy as np
    import torch

    from .models.names import match_names

    comp = copy.deepcopy(model)
    params = dict(comp.named_parameters(remove_duplicate=False))
    names = match_names(list(params), list(tensors), getattr(model, "base_model_prefix", "") or "")
    missing = [n for n in tensors if n not in names]
    if missing:
        raise ValueError(f"{len(missing)} tensors match no parameter of the model, e.g. {missing[0]!r}")
    with torch.no_grad():
        for n, a in tensors.items():
            p = params[names[n]]
            p.copy_(torch.from_numpy(np.asarray(a, np.float32)).reshape(p.shape).to(p.dtype))
    return comp


def evaluate(original: str, qnt: str | Path, *, text: str | None = None, text_name: str | None = None,
             window: int = 512, max_tokens: int = 8192, sentences: int = 256, progress: bool = False) -> dict[str, Any]:
    """Fidelity of ``qnt`` against ``original`` (see the module docstring); the original is first checked to be
    the file's source (:func:`check_original`, ``SourceMismatch`` otherwise), before any model is built.

    ``progress``: bars on stderr for decoding the file (bytes) and for the
    forward passes (tokens through the original and the compressed model).
    """
    from .compress.progress import Progress

    t0 = time.perf_counter()
    src = check_original(original, qnt)
    prog = Progress(progress)
    if text is None:
        text_name, text = default_text()
    # the original first: a bad source fails before the file is decoded (a GGUF one was loaded by the check)
    orig, otok = src.live if src.live is not None else load_source(original)
    comp, tok = load_qnt(qnt, progress=prog)
    tok = tok or otok
    res = compare_models(orig, comp, tok, text, window=window, max_tokens=max_tokens, sentences=sentences, progress=prog)
    res.update({"original": str(original), "text": text_name or "user text",
                "text_sha256": hashlib.sha256(text.encode()).hexdigest()[:16], "seconds": time.perf_counter() - t0})
    return res
