"""The parameter-inventory report: every number read from the files or measured now.

``build(paths)`` opens each .qnt file and collects its model, tensors, codecs,
sizes and fidelity, then *performs* the validation: the file opens, every
checksum passes, every tensor decodes, the RFT parameters (beta, sigma, phi)
recorded in the index are those inside each payload and phi is this
library's golden ratio, and (unless skipped) the model is rebuilt with
transformers and runs one forward pass with finite outputs. ``write`` turns
the result into Markdown and JSON with the same numbers, and PNG charts
beside them (SNR against bpw per tensor; file size per file by codec).

**Files and models.** A row of the report is a *file*, named by its file
name, with the model it holds. Several files may hold the same model (one
model compressed several ways): models are counted once per *distinct
source*, which is defined by what the file records of its source: the model
id, the architecture, and the names and shapes of its tensors (so the
parameter count); see :func:`source_key`. Two files of one model compressed
from two copies of its folder count once; two fine-tunes that share an
architecture count twice when their ids differ (the id is the config's
``_name_or_path``, else the source folder's name). Parameter totals are given
both ways: each model once, and summed over the files (what bits per weight
and ratios over all the files divide by).
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from . import outputs
from .codecs.base import unpack_payload
from .compress.progress import Progress
from .container import QntFile
from .reference import PHI

__all__ = ["build", "check_outputs", "evaluation_columns", "output_paths", "source_key", "write"]

SIZE_CLASS_LIMIT = 500_000_000


def _check(checks: list[dict], name: str, fn) -> Any:
    try:
        detail = fn()
        checks.append({"check": name, "result": "pass", "detail": detail})
        return detail
    except Exception as e:  # every failure is reported, none is hidden
        checks.append({"check": name, "result": "fail", "detail": f"{type(e).__name__}: {e}"})
        return None


def _rft_consistent(f: QntFile) -> str:
    n = 0
    for name in f:
        info = f.info(name)
        rft = info.get("rft")
        if not rft:
            continue
        params, _ = unpack_payload(f.payload(name), info["codec"], info["codec_version"])
        for k in ("beta", "sigma"):
            if params.get(k) != rft.get(k):
                raise ValueError(f"{name}: {k} in the index ({rft.get(k)}) differs from the payload ({params.get(k)})")
        if not math.isclose(rft.get("phi", float("nan")), PHI, rel_tol=0, abs_tol=1e-15):
            raise ValueError(f"{name}: recorded phi {rft.get('phi')} is not the golden ratio {PHI}")
        n += 1
    return f"{n} RFT-coded tensors, beta/sigma/phi consistent" if n else "no RFT-coded tensors"


def _forward(path: Path, progress: Progress) -> str:
    import torch

    from .models.loader import load_qnt

    model, tok = load_qnt(path, progress=progress)
    if tok is not None:
        ids = tok("The quick brown fox jumps over the lazy dog.", return_tensors="pt")
    else:
        ids = {"input_ids": torch.arange(1, 17).unsqueeze(0)}
    with torch.no_grad():
        out = model(**ids)
    t = out.logits if hasattr(out, "logits") else out.last_hidden_state
    if not torch.isfinite(t).all():
        raise ValueError("non-finite outputs")
    return f"{type(model).__name__} forward pass on {ids['input_ids'].shape[1]} tokens: finite, shape {tuple(t.shape)}"


def source_key(model: dict[str, Any], tensors: list[dict[str, Any]]) -> str:
    """What makes two files hold the same model (the module docstring): a digest of the recorded model
    id, architecture, and tensor names and shapes (in name order)."""
    ident = [str(model.get("id", "unknown")), str(model.get("architecture", "unknown")),
             sorted([str(t["name"]), [int(x) for x in t["shape"]]] for t in tensors)]
    return hashlib.sha256(json.dumps(ident, separators=(",", ":")).encode()).hexdigest()[:16]


def _setting(req: Any) -> str:
    """The recorded codec request, short: ``auto, snr 30 dB, fixed-rate``."""
    if not isinstance(req, dict):
        return "unknown"
    parts = [str(req.get("codec", "?"))[:20]]
    for key, fmt in (("snr_db", "snr {:g} dB"), ("bpw", "{:g} bpw"), ("keep", "keep {:g}")):
        v = req.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            parts.append(fmt.format(v))
    if req.get("allocation"):
        parts.append(f"allocation {str(req['allocation'])[:20]}")
    if req.get("fixed_rate") is True:
        parts.append("fixed-rate")
    for key in ("include", "exclude"):
        if isinstance(req.get(key), str):
            parts.append(f"{key} {req[key][:30]}")
    return ", ".join(parts)


def _verify(f: QntFile, update) -> str:
    """Every checksum (tensors, then embedded files), counted in bytes for the bar."""
    for name in f:
        update(len(f.payload(name)))
    for name in f.file_names:
        update(len(f.file(name)))
    return f"{len(f)} tensors and {len(f.file_names)} files"


def _decodes(f: QntFile, update) -> str:
    for name in f:
        a = f.read(name)
        update(a.nbytes)
        update.note(name)
    return f"all {len(f)} tensors decode"


def _model_entry(path: Path, forward: bool, progress: Progress) -> dict[str, Any]:
    checks: list[dict] = []
    entry: dict[str, Any] = {"file": str(path), "file_name": path.name, "checks": checks}
    holder: list[QntFile] = []
    _check(checks, "opens", lambda: (holder.append(QntFile(path)), f"format {holder[0].version[0]}.{holder[0].version[1]}, {holder[0].size:,} bytes, {len(holder[0])} tensors")[1])
    if not holder:
        return entry
    f = holder[0]
    with f:
        m = f.model
        rows = []
        for name in f:
            i = f.info(name)
            rows.append({k: i.get(k) for k in ("name", "shape", "dtype", "source_dtype", "codec", "bits", "bpw", "snr_db", "shannon_gap_bpw", "stored_values")})
        params = sum(int(np.prod(r["shape"], dtype=np.int64)) for r in rows)
        stored = sum(r["stored_values"] or 0 for r in rows)
        quantum = sum(r["stored_values"] or 0 for r in rows if r["codec"] == "rft-spectral")
        mix: dict[str, dict[str, int]] = {}
        for r in rows:
            e = mix.setdefault(r["codec"], {"tensors": 0, "bytes": 0, "parameters": 0})
            e["tensors"] += 1
            e["bytes"] += r["bits"] // 8
            e["parameters"] += int(np.prod(r["shape"], dtype=np.int64))
        snrs = [r["snr_db"] for r in rows if r["snr_db"] is not None]
        src_bytes = m.get("source_bytes")
        payload = sum(e["bytes"] for e in mix.values())
        entry.update({
            "model_id": m.get("id", "unknown"),
            "source_key": source_key(m, rows),
            "source": m.get("source", "unknown"),
            "architecture": m.get("architecture", "unknown"),
            "setting": _setting(m.get("codec_request")),
            "source_dtypes": sorted({str(r["source_dtype"]) for r in rows}),
            "license": m.get("license") or "unknown",
            "parameters": params,
            "stored_values": stored,
            "quantum_states": quantum,
            "buffers": m.get("buffers", []),
            "tied": m.get("tied", {}),
            "file_bytes": f.size,
            "payload_bytes": payload,
            "other_bytes": f.size - payload,  # preamble, index, embedded files, alignment, footer
            "source_bytes": src_bytes,
            "ratio_vs_source": (src_bytes / f.size) if src_bytes else None,
            "ratio_vs_fp16": 2 * params / f.size,
            "bpw": 8 * f.size / params if params else None,
            "tensors": len(rows),
            "exact_tensors": len(rows) - len(snrs),
            "codec_mix": mix,
            "median_tensor_snr_db": statistics.median(snrs) if snrs else None,
            "worst_tensor_snr_db": min(snrs) if snrs else None,
            "evaluation": m.get("evaluation"),
            "compress_seconds": m.get("compress_seconds"),
            "peak_rss_mib": m.get("peak_rss_mib"),
            "size_class": "under 500M" if params < SIZE_CLASS_LIMIT else "500M and over",
            "per_tensor": rows,
        })
        with progress.stage("verify", f.size) as update:
            update.note(path.name)
            _check(checks, "checksums", lambda: _verify(f, update))
        with progress.stage("decode", f.decoded_bytes()) as update:
            _check(checks, "decodes", lambda: _decodes(f, update))
        _check(checks, "rft parameters", lambda: _rft_consistent(f))
    if forward:
        _check(checks, "forward pass", lambda: _forward(path, progress))
    return entry


def build(paths: list[str | Path], *, forward: bool = True, progress: bool = False) -> dict[str, Any]:
    """The inventory of ``paths`` (module docstring); ``progress``: byte bars on stderr for each file's
    checks (``verify``, ``decode``, and the model load of the forward pass)."""
    prog = Progress(progress)
    models = [_model_entry(Path(p), forward, prog) for p in paths]
    ok = [m for m in models if "parameters" in m]
    distinct: dict[str, dict[str, Any]] = {}
    for m in ok:
        d = distinct.setdefault(m["source_key"], {
            "model_id": m["model_id"], "source_key": m["source_key"], "source": m["source"],
            "architecture": m["architecture"], "source_dtypes": m["source_dtypes"], "license": m["license"],
            "parameters": m["parameters"], "source_bytes": m["source_bytes"], "size_class": m["size_class"], "files": []})
        d["files"].append(m["file_name"])
    labels: dict[str, int] = {}
    for d in distinct.values():  # two distinct sources under one id: numbered, so that rows stay apart
        labels[d["model_id"]] = labels.get(d["model_id"], 0) + 1
        d["label"] = d["model_id"] if labels[d["model_id"]] == 1 else f"{d['model_id']} (#{labels[d['model_id']]})"
    for m in ok:
        m["model"] = distinct[m["source_key"]]["label"]
    total_params = sum(d["parameters"] for d in distinct.values())
    file_params = sum(m["parameters"] for m in ok)
    total_bytes = sum(m["file_bytes"] for m in ok)
    src = [m["source_bytes"] for m in ok if m["source_bytes"]]
    snrs = [r["snr_db"] for m in ok for r in m["per_tensor"] if r["snr_db"] is not None]

    def group(key: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for m in ok:
            g = out.setdefault(str(m[key]), {"models": 0, "files": 0, "parameters": 0, "file_parameters": 0,
                                             "file_bytes": 0, "_keys": set()})
            if m["source_key"] not in g["_keys"]:
                g["_keys"].add(m["source_key"])
                g["models"] += 1
                g["parameters"] += m["parameters"]
            g["files"] += 1
            g["file_parameters"] += m["parameters"]
            g["file_bytes"] += m["file_bytes"]
        for g in out.values():
            del g["_keys"]
            g["bpw"] = 8 * g["file_bytes"] / g["file_parameters"] if g["file_parameters"] else None
        return out

    by_codec: dict[str, dict[str, Any]] = {}
    for m in ok:
        for c, e in m["codec_mix"].items():
            g = by_codec.setdefault(c, {"tensors": 0, "parameters": 0, "bytes": 0, "snr": []})
            g["tensors"] += e["tensors"]
            g["parameters"] += e["parameters"]
            g["bytes"] += e["bytes"]
            g["snr"] += [r["snr_db"] for r in m["per_tensor"] if r["codec"] == c and r["snr_db"] is not None]
    for g in by_codec.values():
        s = g.pop("snr")
        g["bpw"] = 8 * g["bytes"] / g["parameters"] if g["parameters"] else None
        g["median_tensor_snr_db"] = statistics.median(s) if s else None
    return {
        "totals": {
            "files": len(ok),
            "models": len(distinct),
            "files_failed_to_open": len(models) - len(ok),
            "parameters": total_params,
            "file_parameters": file_params,
            "stored_values": sum(m["stored_values"] for m in ok),
            "quantum_states": sum(m["quantum_states"] for m in ok),
            "file_bytes": total_bytes,
            "ratio_vs_source": (sum(src) / total_bytes) if src and len(src) == len(ok) else None,
            "ratio_vs_fp16": 2 * file_params / total_bytes if total_bytes else None,
            "bpw": 8 * total_bytes / file_params if file_params else None,
            "median_tensor_snr_db": statistics.median(snrs) if snrs else None,
            "worst_tensor_snr_db": min(snrs) if snrs else None,
            "checks_failed": sum(c["result"] == "fail" for m in models for c in m["checks"]),
        },
        "distinct_models": list(distinct.values()),
        "by_architecture": group("architecture"),
        "by_size_class": group("size_class"),
        "by_codec": by_codec,
        "models": models,
    }


def _fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _cell(v: Any) -> str:
    """Text for a Markdown table cell: names come from files, so pipes and line breaks are escaped."""
    return str(v).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _num(ev: dict, key: str) -> float | None:
    """A finite number from a recorded evaluation (a claim of the file: anything else is None)."""
    v = ev.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def evaluation_columns(ev: Any) -> dict[str, str]:
    """A recorded evaluation as readable cells: perplexity change (%), mean KL (nats), top-1 agreement,
    embedding cosine (mean / min) and what it was measured on; "n/a" where a kind has no such number."""
    cols = {"perplexity change": "n/a", "mean KL (nats)": "n/a", "top-1 agreement": "n/a",
            "embedding cosine mean / min": "n/a", "evaluated on": "not evaluated"}
    if not isinstance(ev, dict):
        return cols
    text = _cell(str(ev.get("text", "?"))[:40])
    if ev.get("kind") == "causal-lm":
        pc, kl, top1 = _num(ev, "perplexity_change_pct"), _num(ev, "mean_kl_nats"), _num(ev, "top1_agreement")
        po, pq = _num(ev, "perplexity_original"), _num(ev, "perplexity_compressed")
        cols["perplexity change"] = "n/a" if pc is None else (
            f"{pc:+.2f}%" + (f" ({po:.2f} -> {pq:.2f})" if po is not None and pq is not None else ""))
        cols["mean KL (nats)"] = "n/a" if kl is None else f"{kl:.4f}"
        cols["top-1 agreement"] = "n/a" if top1 is None else f"{100 * top1:.1f}%"
        n, w = _num(ev, "tokens_scored"), _num(ev, "window")
        cols["evaluated on"] = f"{_fmt(None if n is None else int(n))} tokens, windows of {_fmt(None if w is None else int(w))}, {text}"
    elif ev.get("kind") == "encoder":
        mc, mn = _num(ev, "mean_cosine"), _num(ev, "min_cosine")
        cols["embedding cosine mean / min"] = f"{_fmt(mc, 5)} / {_fmt(mn, 5)}"
        n = _num(ev, "sentences")
        cols["evaluated on"] = f"{_fmt(None if n is None else int(n))} sentences, {text}"
    else:
        cols["evaluated on"] = f"unknown kind {_cell(str(ev.get('kind'))[:20])}"
    return cols


def _short(text: str, n: int) -> str:
    """``text`` in at most ``n`` characters, the middle elided (file names differ at the start and the end)."""
    return text if len(text) <= n else text[: n // 2 - 1] + "..." + text[-(n - n // 2 - 2):]


def _save(fig, p: Path) -> None:
    with outputs.AtomicFile(p) as f:
        fig.savefig(f.file, dpi=110, format="png")


def _charts(inv: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    ok = [m for m in inv["models"] if "codec_mix" in m]
    codecs = sorted(inv["by_codec"])
    colours = {c: plt.get_cmap("tab10")(i % 10) for i, c in enumerate(codecs)}
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for codec in codecs:
        pts = [(r["bpw"], r["snr_db"]) for m in ok for r in m["per_tensor"] if r["codec"] == codec and r["snr_db"] is not None]
        if pts:
            ax.scatter(*zip(*pts), s=10, label=codec, alpha=0.6, color=colours[codec])
    ax.set_xlabel("bits per weight of the tensor's payload")
    ax.set_ylabel("SNR of the tensor (dB), measured")
    n = len(ok)
    ax.set_title(f"Per-tensor SNR against bits per weight ({n} file{'s' if n != 1 else ''}; lossless tensors omitted: exact)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # no file opened: nothing to label
        ax.legend(fontsize=8, title="codec", title_fontsize=8)
    p = output_paths(out)[1]
    fig.tight_layout()
    _save(fig, p)
    plt.close(fig)
    files.append(p.name)

    # one horizontal bar per file (names fit on the left, any number of files), stacked by codec; the
    # last segment is the rest of the file, so a bar's length is the file's size
    several = len({m["source_key"] for m in ok}) > 1
    labels = [_short(m["file_name"], 34) + (f"\n{_short(m['model'], 34)}" if several else "") for m in ok]
    biggest = max((m["file_bytes"] for m in ok), default=0)
    unit, scale = next((u, s) for u, s in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10), ("bytes", 1)) if biggest >= s or s == 1)
    fig, ax = plt.subplots(figsize=(10, max(2.6, 1.4 + (0.55 if several else 0.38) * max(n, 1))))
    y = np.arange(n)
    left = np.zeros(n)
    for codec in codecs:
        vals = np.array([m["codec_mix"].get(codec, {}).get("bytes", 0) / scale for m in ok])
        if vals.any():
            ax.barh(y, vals, left=left, label=f"{codec} payloads", color=colours[codec], height=0.7)
            left += vals
    rest = np.array([m["other_bytes"] / scale for m in ok])
    if n:
        ax.barh(y, rest, left=left, label="index, embedded files,\nalignment", color="0.75", height=0.7)
        left += rest
        for i, m in enumerate(ok):
            ax.text(left[i], i, f" {m['file_bytes'] / scale:,.{0 if unit == 'bytes' else 2}f} {unit}, {_fmt(m['bpw'], 2)} bpw",
                    va="center", fontsize=7)
        ax.set_xlim(0, left.max() * 1.3 if left.max() > 0 else 1)
        ax.set_ylim(n - 0.5, -0.5)  # the first file at the top, as in the report's table
    ax.set_yticks(y, labels, fontsize=7 if n > 8 else 8)
    ax.set_xlabel(f"{unit} (whole file: tensor payloads by codec, then the rest)")
    ax.set_title(f"File size by codec, one bar per file ({n} file{'s' if n != 1 else ''})", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # beside the bars, never over them
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    p = output_paths(out)[2]
    fig.tight_layout()
    _save(fig, p)
    plt.close(fig)
    files.append(p.name)
    return files


def output_paths(md_path: str | Path, json_path: str | Path | None = None) -> list[Path]:
    """Every file :func:`write` writes: the report, its two charts beside it, and the JSON if asked."""
    md = Path(md_path)
    return [md, md.with_name(md.stem + "_snr_vs_bpw.png"), md.with_name(md.stem + "_size_by_codec.png")] + (
        [Path(json_path)] if json_path else [])


def check_outputs(md_path: str | Path, json_path: str | Path | None, inputs: list[str | Path]) -> None:
    """Checks every output before the (long) build: none is a folder or one of the ``inputs``, none repeats."""
    paths = output_paths(md_path, json_path)
    for p in paths:
        outputs.check_file(p, inputs=inputs)
    seen: dict[str, Path] = {}
    for p in paths:
        key = str(Path(p).absolute())
        if key in seen and key not in ("/dev/null",):
            raise outputs.OutputError(f"{p}: given twice as an output")
        seen[key] = p


def write(inv: dict[str, Any], md_path: str | Path, json_path: str | Path | None = None) -> list[Path]:
    """Writes the report, its charts and the JSON by the rules of :mod:`quantonium.outputs`.

    The JSON holds ``totals``, ``distinct_models`` (one per distinct source,
    with the files that hold it), the groupings, and ``models``: one entry per
    file (its file name, model label, numbers, checks and per-tensor rows).
    """
    md_path = Path(md_path)
    charts = _charts(inv, md_path)
    t = inv["totals"]
    L = ["# Parameter inventory (Quantonium)", "",
         "Every number below was read from the .qnt files or measured when this report was made.", "",
         "## Grand totals", "", "| quantity | value |", "|---|---|"]
    for label, key in (("files", "files"), ("models (distinct sources)", "models"),
                       ("original parameters (each model once)", "parameters"),
                       ("parameters coded, summed over the files", "file_parameters"),
                       ("stored values, summed over the files (quantised weights and retained RFT coefficients)", "stored_values"),
                       ("of which quantum states (retained RFT coefficients)", "quantum_states"),
                       ("total file bytes", "file_bytes"), ("ratio vs source bytes (over the files)", "ratio_vs_source"),
                       ("ratio vs fp16 (over the files)", "ratio_vs_fp16"), ("average bits per weight (whole files)", "bpw"),
                       ("median tensor SNR (dB)", "median_tensor_snr_db"), ("worst tensor SNR (dB)", "worst_tensor_snr_db"),
                       ("validation checks failed", "checks_failed")):
        L.append(f"| {label} | {_fmt(t[key], 3)} |")
    L += ["", "## Models", "", "One row per distinct source (same model id, architecture, tensor names and shapes); "
          "the files that hold it are listed.", "",
          "| model | source | architecture | source dtype | parameters | source bytes | licence | files |", "|" + "---|" * 8]
    for d in inv["distinct_models"]:
        L.append(f"| {_cell(d['label'])} | {_cell(d['source'])} | {_cell(d['architecture'])} | {_cell(', '.join(d['source_dtypes']))} | "
                 f"{_fmt(d['parameters'])} | {_fmt(d['source_bytes'])} | {_cell(d['license'])} | {_cell(', '.join(d['files']))} |")
    L += ["", "## Files", "",
          "| file | model | setting | file bytes | ratio vs source | ratio vs fp16 | bpw | tensors | codec mix | quantum states | compress time (s) | peak RSS (MiB) |",
          "|" + "---|" * 12]
    for m in inv["models"]:
        if "parameters" not in m:
            L.append(f"| {_cell(m['file_name'])} | failed to open (see Validation) |" + " |" * 10)
            continue
        mix = ", ".join(f"{c} {e['tensors']}" for c, e in sorted(m["codec_mix"].items()))
        L.append(f"| {_cell(m['file_name'])} | {_cell(m['model'])} | {_cell(m['setting'])} | {_fmt(m['file_bytes'])} | "
                 f"{_fmt(m['ratio_vs_source'])} | {_fmt(m['ratio_vs_fp16'])} | {_fmt(m['bpw'], 3)} | {m['tensors']} | {_cell(mix)} | "
                 f"{_fmt(m['quantum_states'])} | {_fmt(m['compress_seconds'], 1)} | {_fmt(m['peak_rss_mib'], 0)} |")
    cols = list(evaluation_columns(None))
    L += ["", "## Fidelity", "", "Tensor SNRs are measured on each payload; the evaluation is the one recorded in the file "
          "(`quantonium eval`: perplexity change, KL and top-1 agreement for causal LMs, cosine of sentence embeddings for encoders).", "",
          "| file | model | median / worst tensor SNR (dB) | " + " | ".join(cols) + " |", "|" + "---|" * (3 + len(cols))]
    for m in inv["models"]:
        if "parameters" not in m:
            continue
        ev = evaluation_columns(m["evaluation"])
        L.append(f"| {_cell(m['file_name'])} | {_cell(m['model'])} | {_fmt(m['median_tensor_snr_db'])} / {_fmt(m['worst_tensor_snr_db'])} | "
                 + " | ".join(ev[c] for c in cols) + " |")
    for title, key in (("By architecture", "by_architecture"), ("By size class", "by_size_class")):
        L += ["", f"## {title}", "", "| group | models | files | parameters (each model once) | file bytes | bpw (over the files) |",
              "|---|---|---|---|---|---|"]
        for g, e in inv[key].items():
            L.append(f"| {_cell(g)} | {e['models']} | {e['files']} | {_fmt(e['parameters'])} | {_fmt(e['file_bytes'])} | {_fmt(e['bpw'], 3)} |")
    L += ["", "## By codec", "", "| codec | tensors | parameters | payload bytes | bpw | median tensor SNR (dB) |", "|---|---|---|---|---|---|"]
    for c, e in sorted(inv["by_codec"].items()):
        L.append(f"| {_cell(c)} | {e['tensors']} | {_fmt(e['parameters'])} | {_fmt(e['bytes'])} | {_fmt(e['bpw'], 3)} | {_fmt(e['median_tensor_snr_db'])} |")
    L += ["", "## Validation (performed now)", ""]
    for m in inv["models"]:
        for c in m["checks"]:
            L.append(f"- {_cell(m['file_name'])}: {c['check']}: **{c['result']}** ({_cell(c['detail'])})")
    L += ["", "## Charts", ""] + [f"![{c}]({c})" for c in charts]
    L += ["", "## Per-tensor appendix", ""]
    for m in inv["models"]:
        if "per_tensor" not in m:
            continue
        L += [f"### {_cell(m['file_name'])} ({_cell(m['model'])})", "", "| name | shape | codec | bits | bpw | SNR (dB) | gap to Shannon bound (bits/weight) |",
              "|---|---|---|---|---|---|---|"]
        for r in m["per_tensor"]:
            gap = r.get("shannon_gap_bpw")
            L.append(f"| {_cell(r['name'])} | {'x'.join(map(str, r['shape']))} | {r['codec']} | {_fmt(r['bits'])} | {_fmt(r['bpw'], 3)} | "
                     f"{'exact' if r['snr_db'] is None else _fmt(r['snr_db'])} | {'-' if gap is None else _fmt(gap, 3)} |")
        L.append("")
    outputs.write_text(md_path, "\n".join(L) + "\n")
    written = [md_path] + [md_path.with_name(c) for c in charts]
    if json_path:
        jp = Path(json_path)
        outputs.write_text(jp, json.dumps(inv, indent=2, default=str) + "\n")
        written.append(jp)
    return written
