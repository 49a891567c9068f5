"""Where a model's tensors come from: an HF folder, the hub cache, a safetensors file, a GGUF file.

``open_source(SOURCE)`` resolves SOURCE and returns a :class:`ModelSource`:
the tensor names in file order, a lazy per-tensor reader (a model never has
to sit in memory whole, except for GGUF, which transformers dequantises as a
whole model), the configuration, the files to embed (config, tokenizer,
generation config) and the licence read from the model's own metadata.

Loading is offline only: a model id is looked up in the local Hugging Face
cache and a missing model is a one-line error saying where it looked.
``pytorch_model.bin`` checkpoints are read with ``torch.load(...,
weights_only=True)``: never an untrusted pickle.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..filenames import KNOWN_FILES, MODULE_FILES, is_module_dir
from .safetensors_view import SafetensorsView, TensorSpan

__all__ = ["EMBED_FILES", "ModelSource", "SourceError", "TensorRef", "open_source", "source_files"]

#: Files copied into the .qnt so that it is self-contained (the container's allow-list).
EMBED_FILES = tuple(sorted(KNOWN_FILES))


class SourceError(ValueError):
    """A model source that cannot be used (missing, unreadable, unsupported)."""


@dataclass
class ModelSource:
    """A resolved model: names, a lazy reader, and what to embed."""

    source: str
    kind: str
    names: list[str]
    read: Callable[[str], np.ndarray]
    source_dtypes: dict[str, str]
    source_bytes: int
    config: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    license: str = "unknown"
    shared: dict[str, str] = field(default_factory=dict)  # name -> the name it shares storage with
    #: where each tensor lies in its file (safetensors sources): workers can read it themselves
    spans: dict[str, TensorSpan] = field(default_factory=dict)
    #: shape and bytes of each tensor, known without reading it
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    #: the files the weights come from (the run's identity for resuming)
    paths: list[str] = field(default_factory=list)
    #: (model, tokenizer) when reading the source already built the model (GGUF): reused, not built twice
    live: tuple[Any, Any] | None = None

    def shape(self, name: str) -> tuple[int, ...]:
        return self.shapes[name]

    def nbytes(self, name: str) -> int:
        return self.sizes[name]

    @property
    def model_id(self) -> str:
        return str(self.config.get("_name_or_path") or Path(self.source).name)

    def ref(self, name: str) -> TensorRef:
        """A picklable reference to one tensor: its file span when it has one, else its data."""
        span = self.spans.get(name)
        return TensorRef(name, span=span) if span is not None else TensorRef(name, data=np.asarray(self.read(name)))


@dataclass(frozen=True)
class TensorRef:
    """One source tensor, as a job carries it: a span of a safetensors file (read where the
    job runs, zero-copy) or the array itself (sources that are not memory-mappable)."""

    name: str
    span: TensorSpan | None = None
    data: np.ndarray | None = None

    def read(self) -> np.ndarray:
        if self.data is not None:
            return self.data
        if self.span is None:
            raise ValueError(f"tensor reference {self.name!r} holds neither a file span nor data")
        return _span_view(self.name, self.span)


_OPEN_VIEWS: dict[str, SafetensorsView] = {}


def _span_view(name: str, span: TensorSpan) -> np.ndarray:
    """The array at ``span`` (each file mapped once per process), checked against the file."""
    v = _OPEN_VIEWS.get(span.path)
    if v is None:
        v = _OPEN_VIEWS[span.path] = SafetensorsView(span.path)
    if v.spans.get(name) != span:
        raise ValueError(f"{span.path}: tensor {name!r} is not where the plan says (the file changed?)")
    return v.array(name)


def _to_numpy(t) -> np.ndarray:
    """A torch tensor as a numpy array in float32 / float16 / bfloat16 (or its own dtype)."""
    import torch

    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.contiguous().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.contiguous().numpy()


def _license_from(folder: Path, config: dict) -> str:
    for key in ("license", "licence"):
        if isinstance(config.get(key), str):
            return config[key]
    readme = folder / "README.md"
    if readme.is_file():
        head = readme.read_text(errors="replace")[:4000]
        m = re.search(r"^---\s*$(.*?)^---\s*$", head, re.S | re.M)
        if m:
            lm = re.search(r"^license:\s*(\S+)", m.group(1), re.M)
            if lm:
                return lm.group(1).strip().strip("'\"")
    return "unknown"


def _embed(folder: Path) -> dict[str, bytes]:
    """The files a loader needs besides the weights: config, tokenizer, generation config, licence,
    and the sentence-transformers modules (``modules.json`` and each module folder's allowed files,
    ``1_Pooling/config.json``, ...; the folder names of the allow-list in :mod:`quantonium.filenames`)."""
    out = {name: (folder / name).read_bytes() for name in EMBED_FILES if (folder / name).is_file()}
    for d in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not (is_module_dir(d.name) and d.is_dir()):
            continue
        for f in sorted(MODULE_FILES):
            if (d / f).is_file():
                out[f"{d.name}/{f}"] = (d / f).read_bytes()
    return out


def _safetensors_source(source: str, files: list[Path], folder: Path | None) -> ModelSource:
    views: dict[str, SafetensorsView] = {}
    where: dict[str, SafetensorsView] = {}
    for f in files:
        try:
            v = views[str(f)] = SafetensorsView(f)
        except (OSError, ValueError) as e:
            raise SourceError(f"{f}: not a readable safetensors file ({e})") from None
        for name in v.names():
            if name in where:
                raise SourceError(f"{source}: tensor {name!r} appears in two shards")
            where[name] = v

    config = _read_config(folder) if folder else {}
    return ModelSource(
        source=source,
        kind="safetensors" if folder is None else "hf-folder",
        names=list(where),
        read=lambda name: where[name].array(name),
        source_dtypes={n: v.dtype_name(n) for n, v in where.items()},
        source_bytes=sum(f.stat().st_size for f in files),
        config=config,
        files=_embed(folder) if folder else {},
        license=_license_from(folder, config) if folder else "unknown",
        spans={n: v.spans[n] for n, v in where.items()},
        shapes={n: v.spans[n].shape for n, v in where.items()},
        sizes={n: v.spans[n].nbytes for n, v in where.items()},
        paths=[str(f) for f in files],
    )


def _read_config(folder: Path) -> dict[str, Any]:
    p = folder / "config.json"
    if not p.is_file():
        return {}
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise SourceError(f"{p}: not valid JSON ({str(e)[:80]})") from None
    if not isinstance(cfg, dict):
        raise SourceError(f"{p}: not a JSON object")
    return cfg


def _bin_source(source: str, files: list[Path], folder: Path) -> ModelSource:
    import torch

    state: dict[str, Any] = {}
    for f in files:
        try:
            part = torch.load(str(f), map_location="cpu", weights_only=True, mmap=True)
        except pickle.UnpicklingError:  # issue 11: say what happened, not torch's advice to load it unsafely
            raise SourceError(f"{f}: refused: a pickled checkpoint that is not plain weights "
                              "(torch.load(weights_only=True) rejects it; nothing in it was executed)") from None
        except Exception as e:
            raise SourceError(f"{f}: cannot be read safely with torch.load(weights_only=True) "
                              f"({(str(e).strip().splitlines() or [''])[0][:200]})") from None
        if not isinstance(part, dict):
            raise SourceError(f"{f}: not a state dict")
        state.update(part)
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    shared: dict[str, str] = {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key in seen:
            shared[name] = seen[key]
        else:
            seen[key] = name
    config = _read_config(folder)
    return ModelSource(
        source=source,
        kind="pytorch-bin",
        names=list(state),
        read=lambda name: _to_numpy(state[name]),
        source_dtypes={n: str(t.dtype).replace("torch.", "") for n, t in state.items()},
        source_bytes=sum(f.stat().st_size for f in files),
        config=config,
        files=_embed(folder),
        license=_license_from(folder, config),
        shared=shared,
        shapes={n: tuple(t.shape) for n, t in state.items()},
        sizes={n: t.numel() * t.element_size() for n, t in state.items()},
        paths=[str(f) for f in files],
    )


def _gguf_source(path: Path) -> ModelSource:
    try:
        import gguf  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise SourceError(f"{path}: reading GGUF needs torch, transformers and gguf ({e})") from None
    from .gguf_model import gguf_licence, load_gguf, shared_gguf_parses

    folder = str(path.parent)
    with shared_gguf_parses():  # tokenizer, config, weights and licence from one parse of the file
        try:
            model, tok = load_gguf(path)
        except Exception as e:
            raise SourceError(f"{path}: transformers could not load this GGUF file ({e})") from None
        gguf_license = gguf_licence(path)
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["architectures"] = [type(model).__name__]
    config.setdefault("_name_or_path", "")
    if not config["_name_or_path"] or config["_name_or_path"] == folder:
        config["_name_or_path"] = path.stem
    state = model.state_dict()
    files: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as d:
        tok.save_pretrained(d)
        model.generation_config.save_pretrained(d)
        files = _embed(Path(d))
    files["config.json"] = json.dumps(config, indent=2).encode()
    shared = {}
    if config.get("tie_word_embeddings") and "lm_head.weight" in state:
        emb = next((n for n in state if n.endswith("embed_tokens.weight") or n.endswith("wte.weight")), None)
        if emb:
            shared["lm_head.weight"] = emb
    return ModelSource(
        source=str(path),
        kind="gguf",
        names=list(state),
        read=lambda name: _to_numpy(state[name]),
        source_dtypes={n: "gguf-dequantized-float32" for n in state},
        source_bytes=path.stat().st_size,
        config=config,
        files=files,
        license=gguf_license,
        shared=shared,
        shapes={n: tuple(t.shape) for n, t in state.items()},
        sizes={n: t.numel() * t.element_size() for n, t in state.items()},
        paths=[str(path)],
        live=(model, tok),
    )


def _select(folder: Path) -> tuple[str, list[Path]]:
    """Which files hold a folder's weights: ("safetensors" | "bin" | "gguf", files); SourceError if none."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError, RecursionError) as e:
            raise SourceError(f"{index}: not a valid shard index ({type(e).__name__}: {e})") from None
        missing = [s for s in shards if not isinstance(s, str) or not (folder / s).is_file()]
        if missing:
            raise SourceError(f"{folder}: shard {missing[0]!r} listed in the index is missing")
        return "safetensors", [folder / s for s in shards]
    st = sorted(folder.glob("*.safetensors"))
    if st:
        return "safetensors", st
    bins = sorted(folder.glob("pytorch_model*.bin"))
    if bins:
        return "bin", bins
    ggufs = sorted(folder.glob("*.gguf"))
    if len(ggufs) == 1:
        return "gguf", ggufs
    raise SourceError(f"{folder}: no model.safetensors, sharded safetensors, pytorch_model.bin or single .gguf file here")


def _from_folder(source: str, folder: Path) -> ModelSource:
    kind, files = _select(folder)
    if kind == "safetensors":
        return _safetensors_source(source, files, folder)
    if kind == "bin":
        return _bin_source(source, files, folder)
    return _gguf_source(files[0])


def _hub_folder(s: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(s, local_files_only=True))
    except Exception:
        from huggingface_hub import constants

        raise SourceError(
            f"model {s!r} is not in the local Hugging Face cache (looked in {constants.HF_HUB_CACHE}; "
            "this tool works offline: download it elsewhere or pass a folder)"
        ) from None


def open_source(source: str | os.PathLike) -> ModelSource:
    """Resolves a folder, a safetensors or GGUF file, or a model id in the local hub cache."""
    s = str(source)
    p = Path(s).expanduser()
    if p.is_dir():
        return _from_folder(s, p)
    if p.is_file():
        if p.suffix == ".safetensors":
            return _safetensors_source(s, [p], None)
        if p.suffix == ".gguf":
            return _gguf_source(p)
        if p.suffix == ".bin":
            return _bin_source(s, [p], p.parent)
        raise SourceError(f"{p}: unsupported file type (expected a folder, .safetensors, .gguf or .bin)")
    if re.fullmatch(r"[\w.\-]+/[\w.\-]+", s):
        return _from_folder(s, _hub_folder(s))
    raise SourceError(f"{s}: no such file or folder, and not a model id of the form owner/name")


def source_files(source: str | os.PathLike) -> list[Path]:
    """The files ``open_source(source)`` would read (weights, shard index, embedded files), found without
    reading them: what an output must never overwrite. Empty when the source does not resolve
    (``open_source`` then says why)."""
    s = str(source)
    p = Path(s).expanduser()
    try:
        if p.is_file():
            return [p] + ([p.parent / n for n in EMBED_FILES if (p.parent / n).is_file()] if p.suffix == ".bin" else [])
        if not p.is_dir():
            if not re.fullmatch(r"[\w.\-]+/[\w.\-]+", s):
                return []
            p = _hub_folder(s)
        _, files = _select(p)
    except SourceError:
        return []
    extra = [p / "model.safetensors.index.json"] if (p / "model.safetensors.index.json").is_file() else []
    modules = [d / f for d in sorted(p.iterdir()) if is_module_dir(d.name) and d.is_dir()
               for f in sorted(MODULE_FILES) if (d / f).is_file()]
    return files + extra + [p / n for n in EMBED_FILES if (p / n).is_file()] + modules
