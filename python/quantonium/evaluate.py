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
from .models.loader import load_qnt, load_source
from .models.texts import default_text, sentences

__all__ = ["compare_models", "default_text", "evaluate", "load_source", "with_weights"]


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
    """Fidelity of the ``.qnt`` file's model against ``original`` (module docstring).

    ``progress``: bars on stderr for decoding the file (bytes) and for the
    forward passes (tokens through the original and the compressed model).
    """
    from .compress.progress import Progress

    t0 = time.perf_counter()
    prog = Progress(progress)
    if text is None:
        text_name, text = default_text()
    orig, otok = load_source(original)  # the original first: a bad source fails before the file is decoded
    comp, tok = load_qnt(qnt, progress=prog)
    tok = tok or otok
    res = compare_models(orig, comp, tok, text, window=window, max_tokens=max_tokens, sentences=sentences, progress=prog)
    res.update({"original": str(original), "text": text_name or "user text",
                "text_sha256": hashlib.sha256(text.encode()).hexdigest()[:16], "seconds": time.perf_counter() - t0})
    return res
