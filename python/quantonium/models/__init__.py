"""Model sources (folders, hub cache, safetensors, .bin, GGUF) and parameter roles."""

from .arch import Roles, classify
from .sources import EMBED_FILES, ModelSource, SourceError, open_source, source_files

__all__ = ["EMBED_FILES", "ModelSource", "Roles", "SourceError", "classify", "open_source", "source_files"]
