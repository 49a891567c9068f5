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


def _meta_model(config: dict[str, Any]):
    import torch
    import transformers

    archs = config.get("architectures") or []
    model_type = config.get("model_type")
    if not model_type:
        return None, "unknown"
    cfg = transformers.AutoConfig.for_model(**config)
    for arch in archs:
        cls = getattr(transformers, arch, None)
        if cls is not None:
            break
    else:
        cls, arch = transformers.AutoModel, (archs[0] if archs else model_type)
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
