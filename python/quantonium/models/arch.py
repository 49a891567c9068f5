"""Which checkpoint tensors are parameters, which are buffers, which are tied copies.

When the configuration names a transformers architecture, the model is built
on the meta device (no memory, no weights) and its own lists are used:
``named_parameters()`` (tied weights once), ``named_parameters(remove_duplicate=False)``
(the tied aliases, e.g. GPT-2's ``lm_head.weight`` = ``transformer.wte.weight``)
and ``named_buffers()`` (GPT-2's ``attn.bias`` / ``attn.masked_bias`` causal
masks, BERT's ``position_ids``). Checkpoint names are matched with and
without the model's base prefix. Without an architecture every tensor is a
parameter, except tensors that share storage in a ``.bin`` checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Buffer names of checkpoints written by older library versions, not always
#: buffers of the current model classes.
LEGACY_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias", "position_ids")


@dataclass
class Roles:
    architecture: str = "unknown"
    buffers: set[str] = field(default_factory=set)
    tied: dict[str, str] = field(default_factory=dict)  # alias -> canonical
    notes: list[str] = field(default_factory=list)


def transformers_config(config: dict[str, Any]):
    """The transformers configuration object of a ``config.json`` dict."""
    import transformers

    if not isinstance(config.get("model_type"), str):
        raise ValueError("config.json names no model_type")
    return transformers.AutoConfig.for_model(**config)


def model_class(config: dict[str, Any]):
    """(class, architecture name): the first of ``architectures`` transformers has, else AutoModel."""
    import transformers

    archs = config.get("architectures") or []
    for arch in archs if isinstance(archs, list) else []:
        cls = getattr(transformers, str(arch), None) if isinstance(arch, str) else None
        if cls is not None:
            return cls, arch
    return transformers.AutoModel, (str(archs[0]) if archs else str(config.get("model_type", "unknown")))


def build_empty(config: dict[str, Any]):
    """The model with its parameters on the meta device (no memory) and its buffers real.

    Buffers (causal masks, rotary frequencies, position ids, embedding scales)
    are computed by the model's own constructor, so they are exactly what
    ``from_pretrained`` would make; parameters are filled in afterwards with
    ``assign`` (see ``models.loader``).
    """
    import transformers
    from accelerate import init_empty_weights

    cfg = transformers_config(config)
    cls, _ = model_class(config)
    with init_empty_weights(include_buffers=False):
        model = cls.from_config(cfg) if cls is transformers.AutoModel else cls(cfg)
    return model.eval()


def model_kind(model) -> str:
    """"causal-lm" for next-token models, "encoder" for the rest (embeddings are pooled)."""
    name = model if isinstance(model, str) else type(model).__name__
    return "causal-lm" if name.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) else "encoder"


def max_positions(model) -> int:
    """The longest input the model takes (its position table), or a large number if it has none."""
    cfg = model.config
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        v = getattr(cfg, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return 1 << 30


def find_blocks(model) -> list:
    """The model's repeated blocks (decoder / encoder layers): the ModuleList of one class holding
    the most parameters. Empty when the model has none."""
    import torch

    best, best_n = None, 0
    for mod in model.modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) and len({type(m) for m in mod}) == 1:
            n = sum(p.numel() for p in mod.parameters())
            if n > best_n:
                best, best_n = mod, n
    return list(best) if best is not None else []


def encoder_states(model, **inputs):
    """The last hidden states of an encoder, whatever head its class carries.

    ``BertForMaskedLM`` and friends return logits, not hidden states: the
    base model (``model.<base_model_prefix>``) gives them.
    """
    base = getattr(model, getattr(model, "base_model_prefix", "") or "", None)
    out = (base if base is not None and base is not model else model)(**inputs)
    h = getattr(out, "last_hidden_state", None)
    if h is None:
        raise ValueError(f"{type(model).__name__} gives no last hidden state: cannot pool embeddings")
    return h


def _meta_model(config: dict[str, Any]):
    import torch
    import transformers

    if not config.get("model_type"):
        return None, "unknown"
    cfg = transformers_config(config)
    cls, arch = model_class(config)
    with torch.device("meta"):
        model = cls.from_config(cfg) if cls is transformers.AutoModel else cls(cfg)
    return model, arch


def classify(names: list[str], config: dict[str, Any], shared: dict[str, str]) -> Roles:
    roles = Roles()
    roles.tied.update(shared)
    try:
        model, arch = _meta_model(config) if config else (None, "unknown")
    except Exception as e:  # an architecture this transformers does not know: generic handling
        model, arch = None, str((config.get("architectures") or [config.get("model_type", "unknown")])[0])
        roles.notes.append(f"architecture not built ({type(e).__name__}); tensors handled generically")
    roles.architecture = arch
    present = set(names)
    if model is not None:
        prefix = getattr(model, "base_model_prefix", "") or ""

        def variants(n: str) -> list[str]:
            out = [n]
            if prefix and n.startswith(prefix + "."):
                out.append(n[len(prefix) + 1 :])
            elif prefix:
                out.append(f"{prefix}.{n}")
            return out

        buffers = {b for b, _ in model.named_buffers()}
        unique = dict(model.named_parameters())
        ident = {id(p): n for n, p in unique.items()}
        for n, p in model.named_parameters(remove_duplicate=False):
            canon = ident.get(id(p))
            if canon is not None and canon != n:
                # map model names to checkpoint names
                alias = next((v for v in variants(n) if v in present), None)
                target = next((v for v in variants(canon) if v in present), None)
                if alias and target:
                    roles.tied[alias] = target
        for n in names:
            if any(v in buffers for v in variants(n)):
                roles.buffers.add(n)
    for n in names:
        if n.endswith(LEGACY_BUFFER_SUFFIXES) and n not in roles.tied:
            roles.buffers.add(n)
    return roles
