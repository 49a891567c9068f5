"""Which embedded file names a ``.qnt`` may carry, and where they may be written.

A ``.qnt`` embeds the files a loader needs besides the weights (config,
tokenizer, generation config, licence, sentence-transformers module files).
Their names come from the file's index, so they are claims of whoever made the
file: a name such as ``../x`` or ``/etc/cron.d/x`` would make ``decompress``
write outside its output folder. The rule is therefore an allow-list, applied
by the writer (nothing else gets in) and by the reader (nothing else gets out):

- a plain name from :data:`KNOWN_FILES`, or
- a sentence-transformers module file: ``<digits>_<Name>/<file>`` with
  ``<Name>`` letters and digits and ``<file>`` from :data:`MODULE_FILES`.

No other name is accepted: no ``..``, no absolute path, no backslash, no
control character, no other folder. :func:`target_path` turns an accepted
name into a path inside a given folder and checks that it stays inside.

A sentence-transformers module may have no file at all (``2_Normalize``), yet
its folder must exist for the model to load: :func:`module_dirs` reads the
folders a ``modules.json`` lists, keeping only names of the module-folder
form above (others are ignored, never created); :func:`module_dir_path` places them.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["KNOWN_FILES", "MODULE_FILES", "UnsafeFileName", "check_file_name", "is_allowed", "is_module_dir",
           "module_dir_path", "module_dirs", "target_path"]

#: Plain file names a model folder may hold and a loader may need.
KNOWN_FILES = frozenset({
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
    "processor_config.json",
    "spm.model",
    "source.spm",
    "target.spm",
    "bpe.codes",
    "README.md",
    "LICENSE",
    # sentence-transformers, top level
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
})

#: Files of a sentence-transformers module folder (``1_Pooling/config.json``, ``2_Dense/model.safetensors``:
#: a Dense layer's weights, kept byte for byte; never a pickle such as ``pytorch_model.bin``).
MODULE_FILES = frozenset({"config.json", "model.safetensors"})

_MODULE_DIR = r"[0-9]{1,3}_[A-Za-z][A-Za-z0-9]{0,63}"
_MODULE_RE = re.compile(rf"(?P<dir>{_MODULE_DIR})/(?P<file>[A-Za-z0-9_.\-]{{1,64}})")
_MODULE_DIR_RE = re.compile(_MODULE_DIR)
MAX_NAME = 128


class UnsafeFileName(ValueError):
    """An embedded file name outside the allow-list (path traversal, unknown file)."""


def is_allowed(name: object) -> bool:
    """True when ``name`` is a name a ``.qnt`` may embed (see the module docstring)."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        return False
    if name in KNOWN_FILES:
        return True
    m = _MODULE_RE.fullmatch(name)
    return bool(m) and m.group("file") in MODULE_FILES


def check_file_name(name: object) -> str:
    """``name`` itself when allowed; raises :class:`UnsafeFileName` otherwise."""
    if not is_allowed(name):
        shown = repr(name)[:80]
        raise UnsafeFileName(f"embedded file name {shown} is not allowed (only known model files such as "
                             "config.json and tokenizer.json, or sentence-transformers module files like 1_Pooling/config.json)")
    return name  # type: ignore[return-value]


def target_path(folder: str | Path, name: str) -> Path:
    """Where embedded file ``name`` goes inside ``folder``; never outside it."""
    check_file_name(name)
    return _inside(folder, name)


def module_dir_path(folder: str | Path, name: str) -> Path:
    """Where module folder ``name`` (:func:`is_module_dir`) goes inside ``folder``; never outside it."""
    if not is_module_dir(name):
        raise UnsafeFileName(f"module folder name {repr(name)[:80]} is not allowed (expected a name like 1_Pooling)")
    return _inside(folder, name)


def _inside(folder: str | Path, name: str) -> Path:
    base = Path(folder).resolve()
    p = (base / name).resolve()
    if base not in p.parents:
        raise UnsafeFileName(f"embedded file {name!r} would be written outside {base}")
    return p


def is_module_dir(name: object) -> bool:
    """True when ``name`` is a sentence-transformers module folder name (``1_Pooling``, ``2_Normalize``)."""
    return isinstance(name, str) and bool(_MODULE_DIR_RE.fullmatch(name))


def module_dirs(modules_json: bytes) -> list[str]:
    """The module folders a ``modules.json`` lists, only those of the allowed form (in order, once each).

    The content is a claim of whoever made the file: it is parsed with the
    nesting limit of :mod:`quantonium.limits`, anything that is not a list of
    objects gives no folder, and a ``path`` that is not a plain module folder
    name (``""`` for the root module, ``../x``, ``a/b``) is skipped.
    """
    from . import limits

    try:
        mods = limits.load_json(modules_json, "modules.json")
    except (limits.JsonError, ValueError):
        return []
    if not isinstance(mods, list):
        return []
    out: list[str] = []
    for m in mods:
        p = m.get("path") if isinstance(m, dict) else None
        if is_module_dir(p) and p not in out:
            out.append(p)
    return out
