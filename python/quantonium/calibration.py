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

Streaming (issue 9): the weights are never copied (the loader maps them
from the source file), and no parameter needs a gradient: only the
gradients of each layer's output are read. When a window's activations
would pass ``ACTIVATION_BUDGET`` (estimated as 40 floats per hidden unit,
token and block: GPT-Neo 1.3B's 24 x 2048 at 256 tokens is about 2 GB), the
model's blocks are checkpointed (each block keeps only its input during the
forward pass and is recomputed, one at a time, during the backward pass):
memory is then about one block's activations, whatever the depth, for a
quarter more time. Smaller models (SmolLM2-135M: 0.7 GB by the estimate,
141 MiB more peak measured) run without it. The input Gram matrices that GPTQ needs are
*not* measured here: ``gram_sweep`` computes them later, one layer at a time,
during the encoding pass (``quantonium.compress``), and each is released as
soon as its layer is coded.

Embedding rows of tokens absent from the calibration text would get weight
zero (an infinite step); ``Sensitivity.factors`` floors each factor at a
fraction of its mean (``floor``, ``DEFAULT_FLOOR``) so that no weight is dropped;
the default was chosen on MiniLM (bench/allocation.py): lower floors trust
the calibration text's token counts too much and lose on other text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

#: Each sensitivity factor is floored at this fraction of its mean (see Sensitivity.factors).
DEFAULT_FLOOR = 0.3

from .memory import trim
from .models.arch import encoder_states, find_blocks, max_positions, model_kind
from .models.texts import sentences

__all__ = ["DEFAULT_FLOOR", "CalibrationData", "Sensitivity", "collect_grams", "gram_modules", "gram_sweep", "measure", "sample_labels",
           "weight_modules"]

#: Tokens of calibration text for causal LMs, and window length (capped at the context).
#: 8192: SmolLM2's main job at 4 bpw measured +9.58% perplexity / KL 0.108 with it, +12.5% / 0.127 with 4096.
DEFAULT_TOKENS = 8192
DEFAULT_WINDOW = 256
#: Estimated activation bytes of one window above which ``measure`` checkpoints the blocks.
ACTIVATION_BUDGET = 1 << 30
#: Sentences of calibration text for encoders.
DEFAULT_SENTENCES = 1024


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




def weight_modules(model) -> list[tuple[str, object, str]]:
    """(module name, module, kind) of every Linear / Conv1D / Embedding, in definition order."""
    import torch

    out = []
    for mname, mod in model.named_modules():
        kind = type(mod).__name__
        if isinstance(mod, torch.nn.Linear):
            out.append((mname, mod, "Linear"))
        elif isinstance(mod, torch.nn.Embedding):
            out.append((mname, mod, "Embedding"))
        elif kind == "Conv1D" and getattr(mod, "weight", None) is not None and mod.weight.ndim == 2:
            out.append((mname, mod, "Conv1D"))
    return out


@dataclass
class CalibrationData:
    """The calibration inputs, tokenised once: causal windows, or encoder sentence batches."""

    kind: str  # "causal-lm" or "encoder"
    windows: list = field(default_factory=list)  # causal: LongTensor (1, W) each
    batches: list = field(default_factory=list)  # encoder: tokenizer outputs (dicts of tensors)
    tokens: int = 0

    @classmethod
    def make(cls, model, tok, text: str, *, max_tokens: int = DEFAULT_TOKENS, window: int = DEFAULT_WINDOW,
             n_sentences: int = DEFAULT_SENTENCES) -> CalibrationData:
        if tok is None:
            raise ValueError("calibration needs the model's tokenizer, and the source has none")
        if model_kind(model) == "causal-lm":
            w = max(8, min(window, max_positions(model)))
            ids = tok(text, return_tensors="pt")["input_ids"][0][:max_tokens]
            n = len(ids) // w
            if n == 0:
                raise ValueError(f"the calibration text has {len(ids)} tokens, fewer than one window of {w}")
            return cls("causal-lm", windows=[ids[i * w:(i + 1) * w].unsqueeze(0) for i in range(n)], tokens=n * w)
        sents = sentences(text, n_sentences)
        if not sents:
            raise ValueError("the calibration text has no sentence longer than 20 characters")
        batches = [tok(sents[i:i + 32], padding=True, truncation=True, max_length=256, return_tensors="pt")
                   for i in range(0, len(sents), 32)]
        return cls("encoder", batches=batches, tokens=int(sum(int(b["attention_mask"].sum()) for b in batches)))

    @property
    def steps(self) -> int:
        return len(self.windows) if self.kind == "causal-lm" else len(self.batches)


class _Checkpointed:
    """Wraps each block's forward in non-reentrant activation checkpointing (restored on exit)."""

    def __init__(self, blocks: list) -> None:
        self.blocks = blocks

    def __enter__(self):
        import torch.utils.checkpoint as ckpt

        for b in self.blocks:
            orig = b.forward

            def forward(*args, _orig=orig, **kwargs):
                return ckpt.checkpoint(_orig, *args, use_reentrant=False, **kwargs)

            b.forward = forward
        return self

    def __exit__(self, *exc) -> None:
        for b in self.blocks:
            b.__dict__.pop("forward", None)


def activation_bytes(model, data: CalibrationData, batch: int = 1) -> float:
    """Estimated activation bytes of one step of ``measure`` without checkpointing (inf when unknown)."""
    h = getattr(model.config, "hidden_size", None)
    blocks = find_blocks(model)
    if not isinstance(h, int) or not blocks:
        return float("inf")
    if data.kind == "causal-lm":
        tokens = batch * (data.windows[0].shape[1] if data.windows else 0)
    else:
        tokens = max((int(b["input_ids"].numel()) for b in data.batches), default=0)
    return 40.0 * 4 * h * len(blocks) * tokens


def sample_labels(logits, generator) -> object:
    """One label per row of ``logits`` (tokens, vocabulary), drawn from softmax(logits).

    By inversion of the cumulative distribution (float64): one uniform number
    per token. ``torch.multinomial`` draws an exponential number per
    vocabulary entry (256 x 49,152 per SmolLM2 window: 0.3 s, 15% of the
    sensitivity pass, measured with torch.profiler).
    """
    import torch

    with torch.no_grad():
        cdf = torch.softmax(logits.double(), -1).cumsum_(-1)
        u = torch.rand((cdf.shape[0], 1), generator=generator, dtype=torch.float64) * cdf[:, -1:]
        return torch.searchsorted(cdf, u)[:, 0].clamp_(max=cdf.shape[1] - 1)


def measure(model, tok, text: str | None = None, *, data: CalibrationData | None = None,
            max_tokens: int = DEFAULT_TOKENS, window: int = DEFAULT_WINDOW, n_sentences: int = DEFAULT_SENTENCES,
            seed: int = 0, checkpoint_blocks: bool | None = None, batch: int = 1,
            progress: Callable[[int], None] | None = None) -> dict[str, Sensitivity]:
    """Sensitivities of every Linear / Conv1D / Embedding weight, by (canonical) parameter name.

    ``checkpoint_blocks``: None decides by ``ACTIVATION_BUDGET`` (module
    docstring). ``batch``: causal windows per forward pass (more costs memory
    and, measured on SmolLM2, no time). ``progress`` is called with the number
    of calibration tokens each step processed.
    """
    import torch

    if data is None:
        data = CalibrationData.make(model, tok, text or "", max_tokens=max_tokens, window=window,
                                    n_sentences=n_sentences)
    modules = weight_modules(model)
    first_name = {}
    for n, p in model.named_parameters():  # canonical (first) name of each tensor
        first_name[id(p)] = n
    acc: dict[tuple[int, str], dict] = {}
    handles = []
    g_torch = torch.Generator().manual_seed(seed)
    phase = {"forward": True}  # False while blocks are recomputed during backward

    def fwd_hook(key, mod, kind):
        def hook(m, inp, out):
            if not phase["forward"]:
                return None  # a checkpointed block being recomputed: already counted
            x = inp[0]
            if kind == "Embedding" and (x.is_floating_point() or x.is_complex()):
                return None  # an Embedding subclass fed something else (OPT's positions get the mask): no lookup to count
            st = acc.setdefault(key, {"x": 0.0, "g": 0.0, "n": 0, "kind": kind, "mod": mod})
            if kind == "Embedding":
                st["x"] = st["x"] + torch.bincount(x.reshape(-1), minlength=mod.num_embeddings).double()
                st["n"] += x.numel()
            else:
                xf = x.detach().reshape(-1, x.shape[-1]).float()
                st["x"] = st["x"] + (xf * xf).sum(0).double()  # one window's sum in float32, the total in float64
                st["n"] += xf.shape[0]
            if kind == "Embedding" and not out.requires_grad and out.grad_fn is None:
                out = out.requires_grad_(True)  # frozen weights: make the graph start here
            if out.requires_grad:
                def grad_hook(g):
                    gf = g.detach().reshape(-1, g.shape[-1]).float()
                    st["g"] = st["g"] + (gf * gf).sum(0).double()
                out.register_hook(grad_hook)
            return out
        return hook

    for mname, mod, kind in modules:
        handles.append(mod.register_forward_hook(fwd_hook((id(mod), mname), mod, kind)))
    if checkpoint_blocks is None:
        checkpoint_blocks = activation_bytes(model, data, batch) > ACTIVATION_BUDGET
    blocks = find_blocks(model) if checkpoint_blocks else []
    was_training = model.training
    model.eval()
    frozen = [p for p in model.parameters() if p.requires_grad]  # only output gradients are read
    for p in frozen:
        p.requires_grad_(False)
    try:
        with torch.enable_grad(), _Checkpointed(blocks):
            if data.kind == "causal-lm":
                for i in range(0, len(data.windows), batch):
                    x = torch.cat(data.windows[i:i + batch], 0)  # windows of one length: a (B, W) batch
                    phase["forward"] = True
                    logits = model(x, use_cache=False).logits
                    logits = logits.reshape(-1, logits.shape[-1])
                    with torch.no_grad():
                        y = sample_labels(logits, g_torch)
                    loss = torch.nn.functional.cross_entropy(logits.float(), y, reduction="sum")
                    phase["forward"] = False
                    loss.backward()
                    del logits, loss
                    trim()  # the window's freed activations back to the system (memory.py)
                    if progress:
                        progress(x.numel())
            else:
                for enc in data.batches:
                    phase["forward"] = True
                    h = encoder_states(model, **enc)
                    mask = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                    pooled = (h * mask).sum(1) / mask.sum(1)
                    v = torch.randn(pooled.shape, generator=g_torch, dtype=pooled.dtype)
                    phase["forward"] = False
                    (pooled * v).sum().backward()
                    trim()
                    if progress:
                        progress(int(enc["attention_mask"].sum()))
    finally:
        for h in handles:
            h.remove()
        for p in frozen:
            p.requires_grad_(True)
        model.train(was_training)

    out: dict[str, Sensitivity] = {}
    for (_, mname), st in acc.items():
        mod, kind, n = st["mod"], st["kind"], max(st["n"], 1)
        if not torch.is_tensor(st["g"]) or not torch.is_tensor(st["x"]):
            continue  # module never used with a gradient (e.g. a head outside the pass)
        xe = (st["x"] / n).numpy()
        ge = (st["g"] / n).numpy()
        w = mod.weight
        name = first_name.get(id(w), mname + ".weight")
        if kind == "Linear":      # weight (out, in): rows = outputs (g), cols = inputs (x)
            term = (ge, xe)
        else:                     # Conv1D weight (in, out); Embedding (num, dim): rows = token counts
            term = (xe, ge)
        if term[0].shape[0] != w.shape[0] or term[1].shape[0] != w.shape[1]:
            continue  # a module that reshapes its weight: no row/column factorisation
        s = out.setdefault(name, Sensitivity(tuple(w.shape), transposed=kind == "Conv1D"))
        s.terms.append(term)
    return out


def gram_modules(model, data: CalibrationData) -> list[tuple[str, object, str]]:
    """The Linear / Conv1D modules called exactly once per forward pass, in call order.

    Only those can have their input Gram matrix measured in one sweep and
    released at once (a module called twice would see two inputs).
    """
    import torch

    calls: dict[str, int] = {}
    order: list[str] = []
    mods = {n: (m, k) for n, m, k in weight_modules(model) if k != "Embedding"}
    handles = []
    for n, (m, _) in mods.items():
        def hook(mod, inp, _n=n):
            calls[_n] = calls.get(_n, 0) + 1
            if calls[_n] == 1:
                order.append(_n)
        handles.append(m.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            if data.kind == "causal-lm":
                model(data.windows[0][:, :8], use_cache=False)
            else:
                encoder_states(model, **{k: v[:1] for k, v in data.batches[0].items()})
    finally:
        for h in handles:
            h.remove()
    return [(n, mods[n][0], mods[n][1]) for n in order if calls[n] == 1]


class _HeadReached(Exception):
    """Raised by gram_sweep's hook on the LM head: the pass has measured everything it needs."""


class _BlockDone(Exception):
    """Raised before the block after the one being measured: the rest of the pass is not needed."""


#: Calibration tokens per forward call of ``gram_sweep`` (causal LMs with blocks). At GPT-Neo 1.3B,
#: 2048 tokens make a 64 MiB MLP activation (8192 wide) where all 8192 tokens at once made 256 MiB.
GRAM_CHUNK_TOKENS = 2048


class _Grams:
    """The Gram matrices being summed: per module name, [sum of x^T x (float32), rows]; layers fed the
    same tensor (q/k/v) share one sum."""

    def __init__(self, eligible: dict[str, tuple[object, str]], on_gram) -> None:
        self.eligible, self.on_gram = eligible, on_gram
        self.acc: dict[str, list] = {}
        self.last: dict[str, object] = {}
        self.measuring: set[str] = set(eligible)  # the modules whose inputs count now

    def hook(self, name: str, x) -> None:
        import torch

        if name not in self.measuring:
            return
        # the input tensor itself is kept as the key (an address could be reused by a later activation)
        if self.last.get("x") is x and self.last.get("version") == x._version:
            self.acc.setdefault(name, self.last["acc"])  # the previous layer's input: one matrix
            return
        xf = x.detach().reshape(-1, x.shape[-1]).float()
        a = self.acc.setdefault(name, [None, 0])
        a[0] = torch.mm(xf.T, xf) if a[0] is None else a[0].addmm_(xf.T, xf)
        a[1] += xf.shape[0]
        self.last.update(x=x, version=x._version, acc=a)

    def hand_over(self, names) -> list[str]:
        """Divides, hands to ``on_gram`` and releases the matrices of ``names`` that were measured."""
        self.last.clear()
        done = []
        for n in names:
            a = self.acc.pop(n, None)
            if a is None or a[0] is None:
                continue
            if a[1] >= 0:  # a shared sum is divided once: its other names find rows < 0
                a[0].div_(max(a[1], 1))
                a[1] = -1
            self.on_gram(n, a[0], self.eligible[n][1] == "Conv1D")
            done.append(n)
        trim()
        return done


def gram_sweep(model, data: CalibrationData, on_gram: Callable[[str, object, bool], None], *,
               modules: set[str] | None = None, progress: Callable[[int], None] | None = None,
               chunk_tokens: int = GRAM_CHUNK_TOKENS) -> None:
    """Runs the calibration data through the model and hands each layer's input Gram matrix
    ``E[x x^T]`` (a float32 torch tensor) to ``on_gram(module name, gram, transposed)``.

    Causal LMs with recognisable blocks (decoder layers) are swept one block at
    a time, as GPTQ does: the windows go through in chunks of ``chunk_tokens``
    tokens, and the pass for block i runs the model on each chunk with blocks
    0..i-1 replaced by their stored outputs (the model itself still makes each
    block's masks and position embeddings, whatever the architecture: sliding
    or global layers, rotary tables), block i computed with the Gram hooks on,
    and the pass stopped before block i+1. Block i's matrices, summed over the
    chunks, are then handed to ``on_gram`` (which may quantise the layers) and
    released: one block's matrices exist at a time (q/k/v share one), and one
    chunk's activations, whatever the number of calibration tokens. The last
    block's pass goes on to the modules after the blocks (an LM head that is
    not tied gets its matrix) and stops before the head computes its logits
    (tokens x vocabulary floats: 4096 x 262,144 for Gemma 3 would be 4.3 GB);
    modules before the first block are measured in the first pass. Memory
    beyond the model: the block outputs of every chunk (tokens x hidden
    floats: 64 MiB at GPT-Neo 1.3B and 8192 tokens) and one chunk's
    activations. Without recognisable blocks, the chunks go through the whole
    model and every matrix is handed over at the end. Encoders
    (variable-length sentence batches): the matrices are accumulated over the
    batches and handed over at the end (encoders are small). ``modules``
    limits the layers (names from ``gram_modules``); ``transposed`` is True
    for Conv1D (weight stored (in, out)).
    """
    import torch

    eligible = {n: (m, k) for n, m, k in gram_modules(model, data) if modules is None or n in modules}
    blocks = find_blocks(model) if data.kind == "causal-lm" else []
    grams = _Grams(eligible, on_gram)
    handles = [mod.register_forward_pre_hook(lambda m, inp, _n=n: grams.hook(_n, inp[0]))
               for n, (mod, _) in eligible.items()]
    try:
        with torch.no_grad():
            if data.kind == "causal-lm" and blocks:
                _sweep_blocks(model, _chunks(data, chunk_tokens), blocks, grams)
            elif data.kind == "causal-lm":
                _sweep_chunks(model, _chunks(data, chunk_tokens), grams)
            else:
                for enc in data.batches:
                    encoder_states(model, **enc)
                    grams.last.clear()
                    if progress:
                        progress(int(enc["attention_mask"].sum()))
                grams.hand_over(list(eligible))
                return
        if progress:
            progress(data.tokens)
    finally:
        for h in handles:
            h.remove()
        grams.acc.clear()
        grams.last.clear()


def _chunks(data: CalibrationData, chunk_tokens: int) -> list:
    """The calibration windows in (windows, W) batches of about ``chunk_tokens`` tokens."""
    import torch

    per = max(1, chunk_tokens // max(1, data.windows[0].shape[1]))
    return [torch.cat(data.windows[i:i + per], 0) for i in range(0, len(data.windows), per)]


def _run_until_stopped(model, x) -> None:
    try:
        model(x, use_cache=False)
    except (_BlockDone, _HeadReached):
        pass


def _stop_on(module, exc: type[Exception]):
    def stop(*_args):
        raise exc
    return module.register_forward_pre_hook(stop)


def _sweep_chunks(model, chunks: list, grams: _Grams) -> None:
    """No recognisable blocks: every chunk through the whole model (up to the head), then every matrix."""
    head = model.get_output_embeddings()
    stop = _stop_on(head, _HeadReached) if head is not None else None
    try:
        for x in chunks:
            _run_until_stopped(model, x)
            grams.last.clear()
    finally:
        if stop is not None:
            stop.remove()
    grams.hand_over(list(grams.eligible))


def _sweep_blocks(model, chunks: list, blocks: list, grams: _Grams) -> None:
    """The block-by-block passes of ``gram_sweep`` (its docstring)."""
    inside: list[set[str]] = []
    for b in blocks:
        mine = {id(m) for m in b.modules()}
        inside.append({n for n, (m, _) in grams.eligible.items() if id(m) in mine})
    outside = set(grams.eligible) - set().union(*inside)
    # blocks after the last one with a matrix to measure need no pass (unless modules after the blocks do)
    last = len(blocks) - 1 if outside else max((i for i, s in enumerate(inside) if s), default=-1)
    stored: list = [None] * len(chunks)  # the output of the last block computed, per chunk
    current = [0]

    def replay(*_args, **_kwargs):
        return stored[current[0]]

    def keep(_m, _inp, out):
        stored[current[0]] = out

    head = model.get_output_embeddings()
    stops = [_stop_on(head, _HeadReached)] if head is not None else []
    try:
        for i in range(last + 1):
            grams.measuring = inside[i] | (outside if i in (0, last) else set())
            if i + 1 < len(blocks):
                stops.append(_stop_on(blocks[i + 1], _BlockDone))
            capture = blocks[i].register_forward_hook(keep)
            try:
                for c, x in enumerate(chunks):
                    current[0] = c
                    _run_until_stopped(model, x)
                    grams.last.clear()
            finally:
                capture.remove()
                if i + 1 < len(blocks):
                    stops.pop().remove()
            blocks[i].forward = replay  # from now on, this block gives its stored output
            if i == 0:  # modules before the first block
                outside -= set(grams.hand_over([n for n in grams.eligible if n in outside]))
            now = inside[i] | (outside if i == last else set())
            grams.hand_over([n for n in grams.eligible if n in now])  # in call order
    finally:
        for b in blocks:
            b.__dict__.pop("forward", None)
        for h in stops:
            h.remove()
        stored.clear()


def collect_grams(model, data: CalibrationData) -> dict[str, tuple[np.ndarray, bool]]:
    """Every eligible layer's input Gram matrix, kept (by weight parameter name): for small models
    in memory (``quantonium compare``); ``compress`` uses ``gram_sweep`` and never holds them all.
    Tied weights get none (their error metric is not one layer's input)."""
    shared: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        shared[id(p)] = shared.get(id(p), 0) + 1
    first = {id(p): n for n, p in model.named_parameters()}
    mods = {n: m for n, m, _ in weight_modules(model)}
    out: dict[str, tuple[np.ndarray, bool]] = {}

    def keep(mname: str, h, transposed: bool) -> None:
        w = mods[mname].weight
        if shared.get(id(w), 1) == 1:
            out[first.get(id(w), mname + ".weight")] = (h.double().numpy().copy(), transposed)

    gram_sweep(model, data, keep)
    return out
