"""Checkpoint tensor names against a model's parameter names.

Checkpoints and model classes disagree about prefixes: a BERT checkpoint
saved from ``BertModel`` says ``embeddings.word_embeddings.weight`` where
``BertForMaskedLM`` says ``bert.embeddings.word_embeddings.weight``. A name
matches exactly, or with the model's base prefix added or removed, or, last,
as the one model name that ends with it (or that it ends with).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["match_names"]


def match_names(model_names: Iterable[str], names: Iterable[str], prefix: str = "") -> dict[str, str]:
    """Maps checkpoint names to model parameter names; names without a unique match are left out."""
    model_names = list(model_names)
    exact = set(model_names)
    out: dict[str, str] = {}
    for n in names:
        if n in exact:
            out[n] = n
            continue
        if prefix:
            if n.startswith(prefix + ".") and n[len(prefix) + 1:] in exact:
                out[n] = n[len(prefix) + 1:]
                continue
            if f"{prefix}.{n}" in exact:
                out[n] = f"{prefix}.{n}"
                continue
        cands = [m for m in model_names if m.endswith("." + n) or n.endswith("." + m)]
        if len(cands) == 1:
            out[n] = cands[0]
    return out
