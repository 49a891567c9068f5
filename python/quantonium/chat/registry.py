"""The model registry and the router rule.

A registry is the list of ``.qnt`` files given on the command line, or every
``*.qnt`` in a ``--registry`` folder. Each entry is described from the file's
index alone (nothing is decoded): its size, the parameters it stores, the
memory its weights need once loaded, the fidelity that ``quantonium eval``
recorded in it, and its kind (causal LM or encoder, from the embedded
``config.json``). Only causal LMs with a tokenizer and a chat template can
chat.

The router rule (``--model auto``), applied by :func:`route`:

1. Drop the models that cannot chat (encoders, no tokenizer, no chat template).
2. Drop the models whose memory need does not fit the budget: ``--max-memory``,
   or by default the memory the system has available now (``MemAvailable``).
   The need is the decoded weights at the serving dtype: parameters x bytes
   per weight (4 for float32, 2 for bfloat16 / float16).
3. Order the rest by recorded fidelity, best first: the mean KL divergence of
   the next-token distribution against the original model (``mean_kl_nats``,
   lower is better), compared at 1e-4 nats; models without a recorded
   evaluation come after every evaluated one.
4. On ties (same KL at that resolution, or none recorded), the smaller file
   first; then by name, so that the order never depends on listing order.

The caller loads the candidates in that order and keeps the first that loads
(:func:`load_first`); each failure is reported with its reason.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .loader import dtype_itemsize

__all__ = [
    "KL_RESOLUTION", "ModelEntry", "NoUsableModel", "Registry", "RouteDecision",
    "available_memory", "describe", "format_bytes", "parse_memory", "route",
]

#: Mean KL values closer than this (nats) are a tie for the router.
KL_RESOLUTION = 1e-4


class NoUsableModel(RuntimeError):
    """No model of the registry can serve the request (the message says why, in one line)."""


def format_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_memory(text: str) -> int:
    """Bytes from "2GiB", "1.5 GB", "800MiB", "500M" or a plain byte count."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise ValueError(f"cannot read {text!r} as a memory size (examples: 2GiB, 1.5GB, 800MiB)")
    value = float(m.group(1)) * _UNITS[unit]
    if value <= 0:
        raise ValueError(f"memory size {text!r} must be positive")
    return int(value)


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes (None where there is no such file)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _is_causal(architecture: str) -> bool:
    return architecture.endswith(("ForCausalLM", "LMHeadModel"))


@dataclass(frozen=True)
class ModelEntry:
    """One .qnt file as the router sees it (read from its index; nothing decoded)."""

    name: str
    path: Path
    model_id: str
    architecture: str
    kind: str  # "causal-lm" or "encoder"
    file_bytes: int
    source_bytes: int | None
    parameters: int
    has_tokenizer: bool
    has_chat_template: bool
    context_length: int | None
    evaluation: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def ratio(self) -> float | None:
        """Source bytes / file bytes (None when the source size was not recorded)."""
        return self.source_bytes / self.file_bytes if self.source_bytes else None

    def memory_need(self, dtype: Any = "float32") -> int:
        """Bytes of the decoded weights at ``dtype`` (tied weights counted once)."""
        return self.parameters * dtype_itemsize(dtype)

    @property
    def mean_kl(self) -> float | None:
        ev = self.evaluation or {}
        v = ev.get("mean_kl_nats")
        return float(v) if isinstance(v, (int, float)) else None

    def chat_problem(self) -> str | None:
        """Why this model cannot chat (None when it can)."""
        if self.kind != "causal-lm":
            return f"an encoder ({self.architecture}) cannot chat: only causal LMs generate text"
        if not self.has_tokenizer:
            return "no tokenizer is embedded in the file"
        if not self.has_chat_template:
            return "its tokenizer has no chat template"
        return None

    def fidelity_text(self) -> str:
        """The fidelity recorded by ``quantonium eval``, or "not evaluated"."""
        ev = self.evaluation
        if not ev:
            return "not evaluated"
        if ev.get("kind") == "causal-lm":
            return (f"perplexity {ev['perplexity_change_pct']:+.2f}%, KL {ev['mean_kl_nats']:.4f} nats, "
                    f"top-1 {100 * ev['top1_agreement']:.1f}%")
        if ev.get("kind") == "encoder":
            return f"embedding cosine {ev['mean_cosine']:.5f} (min {ev['min_cosine']:.5f})"
        return "evaluation of an unknown kind"

    def size_text(self) -> str:
        ratio = f", {self.ratio:.2f}x vs source" if self.ratio else ""
        return f"{format_bytes(self.file_bytes)}{ratio}"

    def to_json(self, dtype: Any = "float32") -> dict[str, Any]:
        return {
            "name": self.name, "file": str(self.path), "model_id": self.model_id, "architecture": self.architecture,
            "kind": self.kind, "file_bytes": self.file_bytes, "source_bytes": self.source_bytes,
            "ratio_vs_source": self.ratio, "parameters": self.parameters,
            "bpw": 8 * self.file_bytes / self.parameters if self.parameters else None,
            "memory_need_bytes": self.memory_need(dtype), "chat": self.chat_problem() is None,
            "why_not_chat": self.chat_problem(), "context_length": self.context_length,
            "evaluation": self.evaluation, "fidelity": self.fidelity_text(),
        }


def _json_file(f, name: str) -> dict[str, Any]:
    if name not in f.file_names:
        return {}
    from ..limits import JsonError, load_json

    try:  # nesting bounded: a deep file is one error, not a RecursionError (issue 11)
        v = load_json(f.file(name), f"embedded {name}")
    except JsonError as e:
        raise ValueError(f"{f.path}: {e}") from None
    return v if isinstance(v, dict) else {}


def describe(path: str | Path, name: str | None = None) -> ModelEntry:
    """The registry entry of one .qnt file (validated by :class:`QntFile`; no tensor decoded)."""
    from ..container import QntFile

    path = Path(path)
    with QntFile(path) as f:
        meta = f.model
        config = _json_file(f, "config.json")
        tok_cfg = _json_file(f, "tokenizer_config.json")
        archs = config.get("architectures") or []
        arch = str(archs[0]) if archs and isinstance(archs[0], str) else str(meta.get("architecture", "unknown"))
        stored = sum(f.info(n)["numel"] for n in f)  # tied aliases are not stored: counted once
        params = meta.get("parameters")
        files = set(f.file_names)
        ctx = next((config[k] for k in ("max_position_embeddings", "n_positions", "n_ctx")
                    if isinstance(config.get(k), int) and config[k] > 0), None)
        ev = meta.get("evaluation")
        src = meta.get("source_bytes")
        return ModelEntry(
            name=name or path.stem,
            path=path,
            model_id=str(meta.get("id", path.stem)),
            architecture=arch,
            kind="causal-lm" if _is_causal(arch) else "encoder",
            file_bytes=f.size,
            source_bytes=int(src) if isinstance(src, int) and src > 0 else None,
            parameters=int(params) if isinstance(params, int) and params > 0 else stored,
            has_tokenizer=bool(files & {"tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model"}),
            has_chat_template=("chat_template.jinja" in files or "chat_template.json" in files
                               or isinstance(tok_cfg.get("chat_template"), (str, list))),
            context_length=ctx,
            evaluation=ev if isinstance(ev, dict) else None,
        )


@dataclass
class RouteDecision:
    """The router's answer: candidates in order, the models left out and why, and the rule's summary."""

    candidates: list[ModelEntry]
    excluded: list[tuple[ModelEntry, str]]
    budget: int | None
    budget_source: str

    def explain(self, chosen: ModelEntry | None = None, dtype: Any = "float32") -> str:
        """Why the first candidate was picked, in one line."""
        first = chosen or (self.candidates[0] if self.candidates else None)
        if first is None:
            return "no usable model"
        rank = ("best recorded fidelity" if first.mean_kl is not None else "no model has a recorded evaluation; smallest file")
        others = len(self.candidates) - 1
        return (f"auto picked {first.name}: {rank} ({first.fidelity_text()}), {first.size_text()}, "
                f"needs {format_bytes(first.memory_need(dtype))} of {format_bytes(self.budget)} ({self.budget_source}); "
                f"{others} other candidate{'s' if others != 1 else ''}, {len(self.excluded)} excluded")


def _order_key(e: ModelEntry) -> tuple:
    kl = e.mean_kl
    return (kl is None, round(kl / KL_RESOLUTION) if kl is not None else 0, e.file_bytes, e.name)


def route(entries: list[ModelEntry], *, max_memory: int | None = None, dtype: Any = "float32") -> RouteDecision:
    """Applies the router rule (module docstring) to ``entries``."""
    budget, source = (max_memory, "--max-memory") if max_memory is not None else (available_memory(), "memory available now")
    ok: list[ModelEntry] = []
    excluded: list[tuple[ModelEntry, str]] = []
    for e in entries:
        problem = e.chat_problem()
        if problem is None and budget is not None and e.memory_need(dtype) > budget:
            problem = f"needs {format_bytes(e.memory_need(dtype))}, more than the {format_bytes(budget)} of {source}"
        if problem:
            excluded.append((e, problem))
        else:
            ok.append(e)
    return RouteDecision(sorted(ok, key=_order_key), excluded, budget, source)


def load_first(decision: RouteDecision, load: Callable[[ModelEntry], Any], report: Callable[[str], None]):
    """Loads the candidates in order and returns (entry, loaded) for the first that loads.

    Each failure is reported through ``report`` (one line) and the next
    candidate is tried; :class:`NoUsableModel` when none is left.
    """
    failures = []
    for e in decision.candidates:
        try:
            return e, load(e)
        except Exception as exc:  # a broken file, an architecture transformers lacks, out of memory ...
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            report(f"{e.name}: failed to load ({msg}); trying the next candidate")
            failures.append(f"{e.name} failed to load")
    reasons = failures + [f"{e.name}: {why}" for e, why in decision.excluded]
    raise NoUsableModel("no usable chat model" + (": " + "; ".join(reasons) if reasons else ": the registry is empty"))


class Registry:
    """The models a chat or server may use, by name (the file name without ``.qnt``)."""

    def __init__(self, entries: list[ModelEntry]):
        self.entries = list(entries)
        self.by_name: dict[str, ModelEntry] = {}
        for e in self.entries:
            if e.name in self.by_name:
                raise ValueError(f"two models are named {e.name!r} ({self.by_name[e.name].path} and {e.path}); rename one")
            self.by_name[e.name] = e

    @classmethod
    def from_args(cls, files: list[str] | None, directory: str | None,
                  report: Callable[[str], None] | None = None) -> Registry:
        """The files given, plus every ``*.qnt`` in ``directory``.

        A file that cannot be read is reported (when ``report`` is given) and
        left out, so that one broken file does not take the others down; with
        no ``report`` it raises.
        """
        paths: list[Path] = [Path(p) for p in files or []]
        if directory is not None:
            d = Path(directory)
            if not d.is_dir():
                raise ValueError(f"{d}: no such registry folder")
            paths += sorted(p for p in d.iterdir() if p.suffix == ".qnt" and p.is_file())
        if not paths:
            raise ValueError("no model given: name .qnt files or a --registry folder")
        entries = []
        for p in paths:
            if not p.exists():
                raise FileNotFoundError(f"{p}: no such file")
            try:
                entries.append(describe(p))
            except (ValueError, OSError) as exc:
                if report is None:
                    raise
                report(f"{p}: left out of the registry ({str(exc).splitlines()[0]})")
        return cls(entries)

    def get(self, name: str, *, paths: bool = True) -> ModelEntry:
        """An entry by name, model id or (with ``paths``, for the command line) path."""
        if name in self.by_name:
            return self.by_name[name]
        for e in self.entries:
            if name == e.model_id:
                return e
            if paths and (name in (str(e.path), e.path.name)
                          or (os.path.exists(name) and Path(name).resolve() == e.path.resolve())):
                return e
        raise KeyError(f"unknown model {name!r}; known: {', '.join(self.by_name) or 'none'}")
