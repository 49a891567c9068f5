"""The texts the tools read by default: the evaluation text and the calibration text.

Both come from gensim's test data (installed by the set-up with ``--no-deps``;
gensim itself is never imported): the Lee news corpus judges models
(``default_text``), English Wikipedia prose calibrates them
(``calibration_text``), so that a model is never tuned and judged on the
same words.
"""

from __future__ import annotations

import bz2
import html
import importlib.util
import re
from pathlib import Path

__all__ = ["calibration_text", "default_text", "read_text_file", "sentences"]


def _gensim_data() -> Path:
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the default texts need gensim's test data: pip install --no-deps gensim==4.4.0, "
                                "or pass a text file")
    return Path(spec.submodule_search_locations[0]) / "test" / "test_data"


def default_text() -> tuple[str, str]:
    """(name, text) of the default evaluation text: the Lee corpus (300 news articles)."""
    p = _gensim_data() / "lee_background.cor"
    return "lee_background.cor (gensim 4.4.0 test data)", p.read_text(encoding="utf-8", errors="replace")


def calibration_text(max_chars: int = 400_000) -> tuple[str, str]:
    """(name, text): English Wikipedia prose from gensim's test data, markup stripped."""
    p = _gensim_data() / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
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
    t = html.unescape(t)
    t = re.sub(r"<ref[^>]*/>|<ref.*?</ref>|<!--.*?-->", "", t, flags=re.S)
    for _ in range(3):  # nested templates and tables
        t = re.sub(r"\{\{[^{}]*\}\}|\{\|.*?\|\}", "", t, flags=re.S)
    t = re.sub(r"\[\[(?:File|Image|Category):[^\]]*\]\]", "", t)
    t = re.sub(r"\[\[(?:[^\]|]*\|)?([^\]]*)\]\]", r"\1", t)
    t = re.sub(r"\[https?://\S+ ([^\]]*)\]", r"\1", t)
    t = re.sub(r"<[^>]+>|'''?|^[*#:;=].*$|^\s*\|.*$", "", t, flags=re.M)
    return re.sub(r"\n{2,}", "\n", t).strip()


def sentences(text: str, limit: int) -> list[str]:
    """The text's sentences longer than 20 characters, at most ``limit`` (encoder evaluation and calibration)."""
    return [s.strip() for s in text.replace("\n", " ").split(". ") if len(s.strip()) > 20][:limit]


def read_text_file(path: str | Path, what: str = "text") -> tuple[str, str]:
    """(text, name) of a user's text file; a missing file is a one-line error."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such {what} file")
    return p.read_text(encoding="utf-8", errors="replace"), p.name
