"""The model layer: where tensors come from, what they are, and live models built from them.

- ``sources``: resolve a folder / hub id / .safetensors / .bin / .gguf into a
  lazy, per-tensor :class:`ModelSource` (safetensors memory-mapped, zero-copy);
- ``arch``: parameter roles (tied copies, buffers), architecture classes, the
  empty (meta-device) model;
- ``names``: checkpoint names against model parameter names;
- ``loader``: models in memory, from a ``.qnt`` (``load_qnt``) or from the
  original source (``load_source``);
- ``texts``: the default evaluation and calibration texts.
"""

from .arch import Roles, build_empty, classify, model_class, model_kind
from .loader import LoadError, load_qnt, load_source, resolve_dtype
from .names import match_names
from .sources import EMBED_FILES, ModelSource, SourceError, TensorRef, open_source, source_files

__all__ = ["EMBED_FILES", "LoadError", "ModelSource", "Roles", "SourceError", "TensorRef", "build_empty", "classify",
           "load_qnt", "load_source", "match_names", "model_class", "model_kind", "open_source", "resolve_dtype",
           "source_files"]
