"""The parameter-inventory report: every number read from the files or measured now.

``build(paths)`` opens each .qnt file and collects its model, tensors, codecs,
sizes and fidelity, then *performs* the validation: the file opens, every
checksum passes, every tensor decodes, the RFT parameters (beta, sigma, phi)
recorded in the index are those inside each payload and phi is this
library's golden ratio, and (unless skipped) the model is rebuilt with
transformers and runs one forward pass with finite outputs. ``write`` turns
the result into Markdown and JSON with the same numbers, and PNG charts
beside them (SNR against bpw per tensor; file size per model by codec).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from . import outputs
from .codecs.base import unpack_payload
from .container import QntFile
from .reference import PHI

__all__ = ["build", "check_outputs", "output_paths", "write"]

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


def _forward(path: Path) -> str:
    import torch

    from .pipeline import load

    model, tok = load(path)
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


def _model_entry(path: Path, forward: bool) -> dict[str, Any]:
    checks: list[dict] = []
    entry: dict[str, Any] = {"file": str(path), "checks": checks}
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
        entry.update({
            "model_id": m.get("id", "unknown"),
            "source": m.get("source", "unknown"),
            "architecture": m.get("architecture", "unknown"),
            "source_dtypes": sorted({str(r["source_dtype"]) for r in rows}),
            "license": m.get("license") or "unknown",
            "parameters": params,
            "stored_values": stored,
            "quantum_states": quantum,
            "buffers": m.get("buffers", []),
            "tied": m.get("tied", {}),
            "file_bytes": f.size,
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
        _check(checks, "checksums", lambda: (f.verify(), f"{len(rows)} tensors and {len(f.file_names)} files")[1])
        _check(checks, "decodes", lambda: (sum(f.read(n).size for n in f), f"all {len(rows)} tensors decode")[1])
        _check(checks, "rft parameters", lambda: _rft_consistent(f))
    if forward:
        _check(checks, "forward pass", lambda: _forward(path))
    return entry


def build(paths: list[str | Path], *, forward: bool = True) -> dict[str, Any]:
    models = [_model_entry(Path(p), forward) for p in paths]
    ok = [m for m in models if "parameters" in m]
    total_params = sum(m["parameters"] for m in ok)
    total_bytes = sum(m["file_bytes"] for m in ok)
    src = [m["source_bytes"] for m in ok if m["source_bytes"]]
    snrs = [r["snr_db"] for m in ok for r in m["per_tensor"] if r["snr_db"] is not None]

    def group(key: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for m in ok:
            g = out.setdefault(str(m[key]), {"models": 0, "parameters": 0, "file_bytes": 0})
            g["models"] += 1
            g["parameters"] += m["parameters"]
            g["file_bytes"] += m["file_bytes"]
        for g in out.values():
            g["bpw"] = 8 * g["file_bytes"] / g["parameters"] if g["parameters"] else None
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
            "models": len(ok),
            "files_failed_to_open": len(models) - len(ok),
            "parameters": total_params,
            "stored_values": sum(m["stored_values"] for m in ok),
            "quantum_states": sum(m["quantum_states"] for m in ok),
            "file_bytes": total_bytes,
            "ratio_vs_source": (sum(src) / total_bytes) if src and len(src) == len(ok) else None,
            "ratio_vs_fp16": 2 * total_params / total_bytes if total_bytes else None,
            "bpw": 8 * total_bytes / total_params if total_params else None,
            "median_tensor_snr_db": statistics.median(snrs) if snrs else None,
            "worst_tensor_snr_db": min(snrs) if snrs else None,
            "checks_failed": sum(c["result"] == "fail" for m in models for c in m["checks"]),
        },
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


def _charts(inv: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for codec in sorted(inv["by_codec"]):
        pts = [(r["bpw"], r["snr_db"]) for m in inv["models"] for r in m.get("per_tensor", []) if r["codec"] == codec and r["snr_db"] is not None]
        if pts:
            ax.scatter(*zip(*pts), s=10, label=codec, alpha=0.7)
    ax.set_xlabel("bits per weight (tensor payload)")
    ax.set_ylabel("SNR (dB), measured")
    ax.set_title("Per-tensor fidelity against rate (lossless tensors omitted: exact)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # no file opened: nothing to label
        ax.legend(fontsize=8)
    p = output_paths(out)[1]
    fig.tight_layout()
    with outputs.AtomicFile(p) as f:
        fig.savefig(f.file, dpi=110, format="png")
    plt.close(fig)
    files.append(p.name)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ok = [m for m in inv["models"] if "codec_mix" in m]
    bottom = np.zeros(len(ok))
    for codec in sorted(inv["by_codec"]):
        vals = np.array([m["codec_mix"].get(codec, {}).get("bytes", 0) / 2**20 for m in ok])
        ax.bar([m["model_id"][-28:] for m in ok], vals, bottom=bottom, label=codec)
        bottom += vals
    ax.set_ylabel("payload MiB")
    ax.set_title("File size per model, by codec")
    if ax.get_legend_handles_labels()[0]:  # no file opened: nothing to label
        ax.legend(fontsize=8)
    plt.setp(ax.get_xticklabels(), rotation=15, ha="right", fontsize=8)
    p = output_paths(out)[2]
    fig.tight_layout()
    with outputs.AtomicFile(p) as f:
        fig.savefig(f.file, dpi=110, format="png")
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
    """Writes the report, its charts and the JSON by the rules of :mod:`quantonium.outputs`."""
    md_path = Path(md_path)
    charts = _charts(inv, md_path)
    t = inv["totals"]
    L = ["# Parameter inventory (Quantonium)", "",
         "Every number below was read from the .qnt files or measured when this report was made.", "",
         "## Grand totals", "", "| quantity | value |", "|---|---|"]
    for label, key in (("models", "models"), ("original parameters", "parameters"),
                       ("stored values (quantised weights and retained RFT coefficients)", "stored_values"),
                       ("of which quantum states (retained RFT coefficients)", "quantum_states"),
                       ("total file bytes", "file_bytes"), ("ratio vs source bytes", "ratio_vs_source"),
                       ("ratio vs fp16", "ratio_vs_fp16"), ("average bits per weight (whole files)", "bpw"),
                       ("median tensor SNR (dB)", "median_tensor_snr_db"), ("worst tensor SNR (dB)", "worst_tensor_snr_db"),
                       ("validation checks failed", "checks_failed")):
        L.append(f"| {label} | {_fmt(t[key], 3)} |")
    L += ["", "## Models", "", "| model | source | architecture | source dtype | parameters | file bytes | ratio vs source | ratio vs fp16 | bpw | tensors | codec mix | quantum states | licence | median / worst SNR (dB) | evaluation | compress time (s) | peak RSS (MiB) |",
          "|" + "---|" * 17]
    for m in inv["models"]:
        if "parameters" not in m:
            L.append(f"| {m['file']} | failed to open | | | | | | | | | | | | | | | |")
            continue
        mix = ", ".join(f"{c} {e['tensors']}" for c, e in sorted(m["codec_mix"].items()))
        ev = json.dumps(m["evaluation"]) if m["evaluation"] else "not evaluated"
        L.append(f"| {m['model_id']} | {m['source']} | {m['architecture']} | {', '.join(m['source_dtypes'])} | {_fmt(m['parameters'])} | {_fmt(m['file_bytes'])} | "
                 f"{_fmt(m['ratio_vs_source'])} | {_fmt(m['ratio_vs_fp16'])} | {_fmt(m['bpw'], 3)} | {m['tensors']} | {mix} | {_fmt(m['quantum_states'])} | "
                 f"{m['license']} | {_fmt(m['median_tensor_snr_db'])} / {_fmt(m['worst_tensor_snr_db'])} | {ev} | {_fmt(m['compress_seconds'], 1)} | {_fmt(m['peak_rss_mib'], 0)} |")
    for title, key in (("By architecture", "by_architecture"), ("By size class", "by_size_class")):
        L += ["", f"## {title}", "", "| group | models | parameters | file bytes | bpw |", "|---|---|---|---|---|"]
        for g, e in inv[key].items():
            L.append(f"| {g} | {e['models']} | {_fmt(e['parameters'])} | {_fmt(e['file_bytes'])} | {_fmt(e['bpw'], 3)} |")
    L += ["", "## By codec", "", "| codec | tensors | parameters | payload bytes | bpw | median tensor SNR (dB) |", "|---|---|---|---|---|---|"]
    for c, e in sorted(inv["by_codec"].items()):
        L.append(f"| {c} | {e['tensors']} | {_fmt(e['parameters'])} | {_fmt(e['bytes'])} | {_fmt(e['bpw'], 3)} | {_fmt(e['median_tensor_snr_db'])} |")
    L += ["", "## Validation (performed now)", ""]
    for m in inv["models"]:
        for c in m["checks"]:
            L.append(f"- {Path(m['file']).name}: {c['check']}: **{c['result']}** ({c['detail']})")
    L += ["", "## Charts", ""] + [f"![{c}]({c})" for c in charts]
    L += ["", "## Per-tensor appendix", ""]
    for m in inv["models"]:
        if "per_tensor" not in m:
            continue
        L += [f"### {m['model_id']}", "", "| name | shape | codec | bits | bpw | SNR (dB) | gap to Shannon bound (bits/weight) |",
              "|---|---|---|---|---|---|---|"]
        for r in m["per_tensor"]:
            gap = r.get("shannon_gap_bpw")
            L.append(f"| {r['name']} | {'x'.join(map(str, r['shape']))} | {r['codec']} | {_fmt(r['bits'])} | {_fmt(r['bpw'], 3)} | "
                     f"{'exact' if r['snr_db'] is None else _fmt(r['snr_db'])} | {'-' if gap is None else _fmt(gap, 3)} |")
        L.append("")
    outputs.write_text(md_path, "\n".join(L) + "\n")
    written = [md_path] + [md_path.with_name(c) for c in charts]
    if json_path:
        jp = Path(json_path)
        outputs.write_text(jp, json.dumps(inv, indent=2, default=str) + "\n")
        written.append(jp)
    return written
