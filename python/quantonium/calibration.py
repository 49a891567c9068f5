"""Sensitivity of a model's output to the error in each weight, from a calibration text.

For a weight matrix used as ``y = W x`` (``nn.Linear``; GPT-2's ``Conv1D`` is
the transpose; an embedding is the case where x is one-hot), a small error E
moves the output by ``E x`` and, to second order, the loss by
``1/2 * sum_t (E x_t)^T F_t (E x_t)``, with F the Fisher information of the
output distribution with respect to y. Keeping the diagonal of F and treating
the input channels as uncorrelated gives, per token::

    expected loss increase ~= 1/2 * sum_ij  E[g_i^2] * E[x_j^2] * e_ij^2

where g = dloss/dy under labels *sampled from the model itself* (so E[g g^T]
is the Fisher, and the loss increase is the KL divergence from the original)
and x the layer's input. ``measure`` runs the original model on a
calibration text and returns, per weight, the two factors: a *row* and a
*column* sensitivity whose outer product is the weight of each squared error.
It is what llama.cpp's importance matrix (E[x^2]) and AWQ use, completed with
the output side, so that tensors can also be compared with each other.

Encoders have no next-token distribution: their output is the mean-pooled
embedding, and g is the gradient of ``v . embedding`` for a random Gaussian v
(in expectation, the Gauss-Newton matrix of the squared embedding error).

Embedding rows of tokens absent from the calibration text would get weight
zero (an infinite step); ``Sensitivity.factors`` floors each factor at a
fraction of its mean (``floor``, ``DEFAULT_FLOOR``) so that no weight is dropped;
the default was chosen on MiniLM (bench/allocation.py): lower floors trust
the calibration text's token counts too much and lose on other text.
"""

from __future__ import annotations

import bz2
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Each sensitivity factor is floored at this fraction of its mean (see Sensitivity.factors).
DEFAULT_FLOOR = 0.3

__all__ = ["DEFAULT_FLOOR", "Sensitivity", "calibration_text", "match_names", "measure"]


def calibration_text(max_chars: int = 400_000) -> tuple[str, str]:
    """(name, text): English Wikipedia prose from gensim's test data, markup stripped.

    Different from the default *evaluation* text (the Lee corpus), so that a
    model is not tuned and judged on the same words.
    """
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the default calibration text needs gensim's test data: pip install --no-deps gensim==4.4.0, or pass --calibration FILE")
    p = (Path(spec.submodule_search_locations[0]) / "test" / "test_data"
         / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
    xml = bz2.open(p).read().decode("utf-8", errors="replace")
    out: list[str] = []
    size = 0
    for m in re.finditer(r"<text[^>]*>(.*?)</text>", xml, flags=re.S):
        t = _strip_wiki(m.group(1))
        if len(t) < 500:  # redirects, stubs
            continue
        out.append(t)
        size += len(t)
        if size >= max_chars:
            break
    return "English Wikipedia prose (gensim 4.4.0 test data, markup stripped)", "\n\n".join(out)[:max_chars]


def _strip_wiki(t: str) -> str:
    import html

    t = html.unescape(t)
    t = re.sub(r"<ref[^>]*/>|<ref.*?</ref>|<!--.*?-->", "", t, flags=re.S)
    for _ in range(3):  # nested templates and tables
        t = re.sub(r"\{\{[^{}]*\}\}|\{\|.*?\|\}", "", t, flags=re.S)
    t = re.sub(r"\[\[(?:File|Image|Category):[^\]]*\]\]", "", t)
    t = re.sub(r"\[\[(?:[^\]|]*\|)?([^\]]*)\]\]", r"\1", t)
    t = re.sub(r"\[https?://\S+ ([^\]]*)\]", r"\1", t)
    t = re.sub(r"<[^>]+>|'''?|^[*#:;=].*$|^\s*\|.*$", "", t, flags=re.M)
    return re.sub(r"\n{2,}", "\n", t).strip()


@dataclass
class Sensitivity:
    """Row and column sensitivities of one weight (its stored 2-D layout: rows = axis 0).

    ``terms`` holds one (row, col) pair per use of the weight (a tied
    embedding is used twice: as input table and as output projection).
    """

    shape: tuple[int, ...]
    terms: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    #: E[x x^T] of the layer's input (``measure(..., gram=True)``; one use as a matrix only)
    gram: np.ndarray | None = None
    #: True when the weight is stored (in, out) (GPT-2 Conv1D): inputs along axis 0
    transposed: bool = False

    def weight_sum(self) -> float:
        """sum_ij S_ij: the total weight of a unit squared error spread evenly."""
        return float(sum(r.sum() * c.sum() for r, c in self.terms))

    def factors(self, floor: float = DEFAULT_FLOOR) -> tuple[np.ndarray, np.ndarray]:
        """A rank-one (row, col) approximation of S = sum of the terms, each factor floored.

        Exact for a single term; for several, S ~= rowsum colsum^T / total.
        """
        if len(self.terms) == 1:
            r, c = self.terms[0]
        else:
            r = sum(r * c.sum() for r, c in self.terms)
            c = sum(c * r.sum() for r, c in self.terms)
            total = self.weight_sum()
            r = r / max(np.sqrt(total), 1e-300)
            c = c / max(np.sqrt(total), 1e-300)
        r = np.maximum(r, floor * r.mean()) if r.size else r
        c = np.maximum(c, floor * c.mean()) if c.size else c
        return r.astype(np.float64), c.astype(np.float64)


def match_names(model_names: list[str], names: list[str]) -> dict[str, str]:
    """Maps checkpoint names to a model's parameter names (prefixes like ``bert.`` may differ)."""
    exact = set(model_names)
    out: dict[str, str] = {}
    for n in names:
        if n in exact:
            out[n] = n
            continue
        cands = [m for m in model_names if m.endswith("." + n) or n.endswith("." + m)]
        if len(cands) == 1:
            out[n] = cands[0]
    return out


def measure(model, tok, text: str, *, max_tokens: int = 8192, window: int = 256,
            sentences: int = 1024, seed: int = 0, gram: bool = False) -> dict[str, Sensitivity]:
    """Sensitivities of every Linear / Conv1D / Embedding weight, by parameter name.

    With ``gram``, also the input Gram matrix E[x x^T] of each Linear / Conv1D
    weight used once (for ``codecs.gptq``); it costs in^2 doubles per layer.
    """
    import torch

    modules = []
    for mname, mod in model.named_modules():
        kind = type(mod).__name__
        if isinstance(mod, (torch.nn.Linear, torch.nn.Embedding)) or kind == "Conv1D":
            modules.append((mname, mod, kind))
    pname = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
    first_name = {}
    for n, p in model.named_parameters():  # canonical (first) name of each tensor
        first_name[id(p)] = n
    acc: dict[tuple[int, str], dict] = {}
    handles = []
    g_torch = torch.Generator().manual_seed(seed)

    def fwd_hook(key, mod, kind):
        def hook(m, inp, out):
            x = inp[0]
            st = acc.setdefault(key, {"x": 0.0, "g": 0.0, "n": 0, "kind": kind, "mod": mod})
            if kind == "Embedding":
                ids = x.reshape(-1)
                st["x"] = st["x"] + torch.bincount(ids, minlength=mod.num_embeddings).double()
            else:
                xd = x.detach().double().reshape(-1, x.shape[-1])
                st["x"] = st["x"] + xd.pow(2).sum(0)
                if gram:
                    st["gram"] = st.get("gram", 0.0) + xd.T @ xd
            st["n"] += x.numel() if kind == "Embedding" else x.numel() // x.shape[-1]
            if out.requires_grad:
                def grad_hook(g):
                    st["g"] = st["g"] + g.detach().double().pow(2).reshape(-1, g.shape[-1]).sum(0)
                out.register_hook(grad_hook)
        return hook

    for mname, mod, kind in modules:
        handles.append(mod.register_forward_hook(fwd_hook((id(mod), mname), mod, kind)))
    causal = type(model).__name__.endswith(("ForCausalLM", "LMHeadModel"))
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            if causal:
                from .evaluate import max_positions

                window = min(window, max_positions(model))
                ids = tok(text, return_tensors="pt")["input_ids"][0][:max_tokens]
                nwin = max(1, len(ids) // window)
                for w in range(nwin):
                    x = ids[w * window:(w + 1) * window].unsqueeze(0)
                    logits = model(x).logits[0]
                    with torch.no_grad():
                        y = torch.multinomial(torch.softmax(logits.double(), -1), 1, generator=g_torch)[:, 0]
                    loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
                    model.zero_grad(set_to_none=True)
                    loss.backward()
            else:
                sents = [s.strip() for s in text.replace("\n", " ").split(". ") if len(s.strip()) > 20][:sentences]
                for i in range(0, len(sents), 32):
                    enc = tok(sents[i:i + 32], padding=True, truncation=True, max_length=256, return_tensors="pt")
                    h = model(**enc).last_hidden_state
                    mask = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                    pooled = (h * mask).sum(1) / mask.sum(1)
                    v = torch.randn(pooled.shape, generator=g_torch, dtype=pooled.dtype)
                    model.zero_grad(set_to_none=True)
                    (pooled * v).sum().backward()
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)

    out: dict[str, Sensitivity] = {}
    for (_, mname), st in acc.items():
        mod, kind, n = st["mod"], st["kind"], max(st["n"], 1)
        if not torch.is_tensor(st["g"]) or not torch.is_tensor(st["x"]):
            continue  # module never used with a gradient (e.g. a head outside the pass)
        xe = (st["x"] / n).numpy()
        ge = (st["g"] / n).numpy()
        w = mod.weight
        name = first_name.get(id(w), pname.get(id(w), mname + ".weight"))
        if kind == "Linear":      # weight (out, in): rows = outputs (g), cols = inputs (x)
            term = (ge, xe)
        elif kind == "Conv1D":    # weight (in, out)
            term = (xe, ge)
        else:                     # Embedding (num, dim): rows = token counts, cols = g
            term = (xe, ge)
        s = out.setdefault(name, Sensitivity(tuple(w.shape)))
        s.terms.append(term)
        if torch.is_tensor(st.get("gram")) and kind in ("Linear", "Conv1D"):
            s.gram = (st["gram"] / n).numpy()
            s.transposed = kind == "Conv1D"
    for s in out.values():
        if len(s.terms) > 1:
            s.gram = None  # a tied weight: its error metric is not one layer's input Gram matrix
    return out
