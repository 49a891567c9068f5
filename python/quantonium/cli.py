"""The ``quantonium`` command: one command, subcommands.

Results go to stdout, progress and diagnostics to stderr; errors are one line
and a non-zero exit. Every output is checked before any work is done and
written by the rules of ``quantonium.outputs``; commands that read ``.qnt``
files take ``--max-memory SIZE`` and ``--max-index SIZE`` (``quantonium.limits``;
they set ``QUANTONIUM_MAX_MEMORY`` / ``QUANTONIUM_MAX_INDEX`` for the command).
Subcommands (compare, chat, serve and bench arrive with their issues):

    quantonium compress SOURCE -o OUT.qnt [--codec C] [--bits B | --snr DB | --keep F] [--fixed-rate]
                        [--include RE] [--exclude RE] [--threads N] [--executor dask://HOST:PORT] [--json]
    quantonium decompress FILE.qnt -o DIR
    quantonium inspect FILE.qnt [--json]
    quantonium inventory FILE.qnt [FILE.qnt ...] -o REPORT.md [--json REPORT.json] [--no-forward]
    quantonium eval ORIGINAL FILE.qnt [--text FILE] [--json]
    quantonium info [--json]    build report and a measured round trip of every transform
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from collections.abc import Sequence

from . import __version__


class CliError(Exception):
    """An error reported to the user as one line, exit status 1."""


def _round_trip_report() -> list[dict]:
    """Measures every native transform against the numpy reference on seeded data."""
    import numpy as np

    import quantonium_native as qn
    from quantonium import reference as ref

    rng = np.random.default_rng(0)
    rows = []

    def rel(a, b) -> float:
        a = np.asarray(a, np.complex128)
        b = np.asarray(b, np.complex128)
        return float(np.linalg.norm(a - b) / np.linalg.norm(b))

    cases = [
        ("phi-rft", qn.rft_forward, qn.rft_inverse, ref.rft_forward, True, 1000),
        ("real-orthogonal", qn.rft_real_forward, qn.rft_real_inverse, ref.rft_real_forward, False, 1000),
        ("canonical", qn.canonical_rft_forward, qn.canonical_rft_inverse, ref.canonical_rft_forward, True, 256),
    ]
    for name, fwd, inv, reference, complex_in, n in cases:
        for prec, rdt, cdt in (("f32", np.float32, np.complex64), ("f64", np.float64, np.complex128)):
            x = rng.standard_normal((16, n))
            if complex_in:
                x = (x + 1j * rng.standard_normal((16, n))).astype(cdt)
            else:
                x = x.astype(rdt)
            y = fwd(x)
            rows.append(
                {
                    "transform": name,
                    "precision": prec,
                    "n": n,
                    "rows": 16,
                    "vs_reference": rel(y, reference(x)),
                    "round_trip": rel(inv(y), x),
                    "norm_ratio": float(np.linalg.norm(y) / np.linalg.norm(x)),
                }
            )
    return rows


def cmd_info(args: argparse.Namespace) -> int:
    import quantonium_native as qn

    info = dict(qn.build_info())
    report = {"build": info, "round_trip": _round_trip_report()}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"quantonium {__version__} (native core {info['version']})")
    print(f"  FFTW:      {info['fftw_version']} (planner effort: {info['planner_effort']})")
    print(f"  SIMD:      selected {info['simd_selected']} of {', '.join(info['simd_compiled'])}")
    print(f"  compiler:  {info['compiler']} ({info['architecture']})")
    print("  measured on seeded random rows (relative L2 errors):")
    print(f"  {'transform':<16} {'prec':<5} {'n':>5}  {'vs numpy ref':>12}  {'round trip':>10}  {'|y|/|x|':>9}")
    for r in report["round_trip"]:
        print(
            f"  {r['transform']:<16} {r['precision']:<5} {r['n']:>5}  {r['vs_reference']:>12.2e}  "
            f"{r['round_trip']:>10.2e}  {r['norm_ratio']:>9.6f}"
        )
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    from .models import source_files
    from .outputs import check_file
    from .pipeline import compress

    targets = [t for t in (args.bits, args.snr, args.keep) if t is not None]
    if len(targets) > 1:
        raise CliError("give at most one of --bits, --snr, --keep")
    check_file(args.outfile, inputs=source_files(args.source))
    res = compress(
        args.source, args.outfile, codec=args.codec, bpw=args.bits, snr_db=args.snr, keep=args.keep,
        include=args.include, exclude=args.exclude, threads=args.threads, progress=_progress(args),
        allocate=args.allocate, calibration=args.calibration, floor=args.floor, resume=args.resume,
        calibration_tokens=args.calibration_tokens, fixed_rate=args.fixed_rate, executor=args.executor,
    )
    print(json.dumps(res.to_json(), indent=2) if args.json else res.summary())
    return 0


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars on stderr unless --quiet, or --json (flag or path) when stderr is not a terminal."""
    from .compress.progress import wanted

    return wanted(getattr(args, "quiet", False), bool(getattr(args, "json", None)))


def cmd_decompress(args: argparse.Namespace) -> int:
    from .outputs import check_folder
    from .pipeline import decompress

    check_folder(args.outdir, inputs=[args.file])

    out = decompress(args.file, args.outdir, threads=args.threads, progress=_progress(args))
    print(f"wrote {out} (loads with transformers' from_pretrained)")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .container import QntFile

    with QntFile(args.file) as f:
        rows = [f.info(n) for n in f]
        if args.json:
            print(json.dumps({"model": f.model, "files": f.file_names, "tensors": rows}, indent=2))
            return 0
        m = f.model
        total = sum(r["numel"] for r in rows)
        print(f"{args.file}: {m.get('id', '?')} ({m.get('architecture', '?')}), format {f.version[0]}.{f.version[1]}, "
              f"{len(rows)} tensors, {total:,} values, {f.size:,} bytes, {8 * f.size / max(total, 1):.3f} bpw (whole file)")
        print(f"{'name':<60} {'shape':<18} {'codec':<13} {'bits':>12} {'bpw':>7} {'SNR dB':>8} {'gap':>6}")
        for r in rows:
            snr = "exact" if r["snr_db"] is None else f"{r['snr_db']:.2f}"
            gap = "-" if r.get("shannon_gap_bpw") is None else f"{r['shannon_gap_bpw']:.3f}"
            print(f"{r['name']:<60} {'x'.join(map(str, r['shape'])):<18} {r['codec']:<13} {r['bits']:>12,} {r['bpw']:>7.3f} {snr:>8} {gap:>6}")
        print("gap: bits per weight above the Shannon lower bound h(W) - log2(2 pi e D)/2 at the measured error")
    return 0


def cmd_inventory(args: argparse.Namespace) -> int:
    from . import inventory

    inventory.check_outputs(args.outfile, args.json, args.files)
    inv = inventory.build(args.files, forward=not args.no_forward, progress=_progress(args))
    written = inventory.write(inv, args.outfile, args.json)
    t = inv["totals"]
    for m in inv["models"]:
        for c in m["checks"]:
            print(f"{m['file']}: {c['check']}: {c['result']} ({c['detail']})", file=sys.stderr)
    def num(v, fmt: str) -> str:  # totals are None when no file opened
        return "n/a" if v is None else format(v, fmt)

    ratio = "n/a" if t["ratio_vs_source"] is None else f"{t['ratio_vs_source']:.2f}x"
    snr = "exact" if t["median_tensor_snr_db"] is None else f"{t['median_tensor_snr_db']:.2f} dB (worst {t['worst_tensor_snr_db']:.2f} dB)"
    failed = f" (and {t['files_failed_to_open']} that failed to open)" if t["files_failed_to_open"] else ""
    print(f"inventory: {t['files']} file{'s' if t['files'] != 1 else ''}{failed} of {t['models']} model{'s' if t['models'] != 1 else ''} ({t['parameters']:,} parameters), {t['file_bytes']:,} bytes, "
          f"{num(t['bpw'], '.3f')} bpw, ratio {ratio} vs source, {num(t['ratio_vs_fp16'], '.2f')}x vs fp16, median tensor SNR {snr}; "
          f"{t['checks_failed']} checks failed; wrote {', '.join(str(w) for w in written)}")
    return 1 if t["checks_failed"] else 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .container import update_model
    from .evaluate import evaluate
    from .outputs import check_file

    text, name = _read_text(args.text, "text")
    if not args.no_record:  # the result is recorded in the file: it must be writable before the evaluation runs
        check_file(args.file)
    res = evaluate(args.original, args.file, text=text, text_name=name, window=args.window, max_tokens=args.max_tokens,
                   progress=_progress(args))
    if not args.no_record:
        update_model(args.file, {"evaluation": res})
    if args.json:
        print(json.dumps(res, indent=2))
    elif res["kind"] == "causal-lm":
        print(f"{args.file}: perplexity {res['perplexity_compressed']:.3f} vs {res['perplexity_original']:.3f} original "
              f"({res['perplexity_change_pct']:+.2f}%), mean KL {res['mean_kl_nats']:.4f} nats, top-1 agreement "
              f"{res['top1_agreement']:.1%} ({res['tokens_scored']} tokens, {res['windows']} windows of {res['window']}, stride {res['stride']}, text: {res['text']})")
    else:
        print(f"{args.file}: embedding cosine mean {res['mean_cosine']:.5f}, min {res['min_cosine']:.5f} over {res['sentences']} sentences (text: {res['text']})")
    return 0


def _read_text(path: str | None, what: str) -> tuple[str | None, str | None]:
    if path is None:
        return None, None
    p = Path(path)
    if not p.is_file():
        raise CliError(f"{p}: no such {what} file")
    return p.read_text(encoding="utf-8", errors="replace"), p.name


def cmd_compare(args: argparse.Namespace) -> int:
    from . import compare as cmp

    try:
        bits = [float(b) for b in args.bits.split(",") if b.strip()]
    except ValueError:
        raise CliError(f"--bits takes numbers separated by commas, not {args.bits!r}") from None
    if not bits or any(not 0 < b <= 16 for b in bits):
        raise CliError("--bits needs bit counts in (0, 16]")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else list(cmp.DEFAULT_METHODS)
    methods = list(dict.fromkeys(x for m in methods for x in cmp.METHOD_GROUPS.get(m, (m,))))
    bad = [m for m in methods if m not in cmp.METHODS]
    if bad:
        raise CliError(f"unknown method {bad[0]!r}; expected some of {', '.join(cmp.METHODS)} "
                       f"or a group ({', '.join(cmp.METHOD_GROUPS)})")
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        raise CliError(f"--seeds takes whole numbers separated by commas, not {args.seeds!r}") from None
    if not seeds or any(not 0 <= x < 2**63 for x in seeds):
        raise CliError("--seeds needs seeds in [0, 2^63)")
    text, text_name = _read_text(args.text, "text")
    cal, cal_name = _read_text(args.calibration, "calibration text")
    if args.outdir:
        from .models import source_files

        cmp.check_outputs(args.outdir, source_files(args.source))
    wl = cmp.Workload.load(args.source, text=text, text_name=text_name, calibration=cal, calibration_name=cal_name,
                           max_tokens=args.max_tokens, threads=args.threads)
    out = Path(args.outdir) if args.outdir else None
    on_row = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        partial = out / "compare.partial.jsonl"
        partial.write_text("")

        def on_row(row: dict) -> None:  # rows measured so far survive an interrupted run
            with partial.open("a") as f:
                f.write(json.dumps(row, default=float) + "\n")
    res = cmp.compare(wl, bits, methods, progress=None if args.json else (lambda line: print(line, flush=True)),
                      seeds=seeds, on_row=on_row)
    if out is not None:
        from .outputs import write_text

        cmp.write_json(res, out / "compare.json")
        write_text(out / "compare.md", cmp.table(res) + "\n")
        cmp.write_chart(res, out / "compare_rd.png")
    if args.json:
        print(json.dumps(res, indent=1, default=float))
    else:
        print()
        print(cmp.table(res))
        if out is not None:
            print(f"\nwrote {out / 'compare.md'}, {out / 'compare.json'}, {out / 'compare_rd.png'}")
    return 0


def _limits_parent() -> argparse.ArgumentParser:
    """``--max-memory`` / ``--max-index`` for the commands that read .qnt files (quantonium.limits)."""
    lp = argparse.ArgumentParser(add_help=False)
    g = lp.add_argument_group("limits for reading .qnt files (quantonium.limits)")
    g.add_argument("--max-memory", metavar="SIZE", dest="qnt_max_memory",
                   help="most memory a read may use, e.g. 8G (default: $QUANTONIUM_MAX_MEMORY or half the machine's memory)")
    g.add_argument("--max-index", metavar="SIZE", dest="qnt_max_index",
                   help="largest index accepted, e.g. 128M (default: $QUANTONIUM_MAX_INDEX or 64M; at most 256M)")
    return lp


def _apply_limits(args: argparse.Namespace) -> None:
    """Validates the limit flags and hands them to everything the command runs (environment variables)."""
    import os

    from . import limits

    for flag, env in (("max-memory", limits.ENV_MAX_MEMORY), ("max-index", limits.ENV_MAX_INDEX)):
        v = getattr(args, "qnt_" + flag.replace("-", "_"), None)  # only the commands with these flags (chat has its own)
        if v is not None:
            try:
                os.environ[env] = str(limits.parse_size(v))
            except ValueError as e:
                raise CliError(f"--{flag}: {e}") from None


def build_parser() -> argparse.ArgumentParser:
    lp = _limits_parent()
    p = argparse.ArgumentParser(
        prog="quantonium",
        description="Compress model weights with the Resonance Fourier Transform, and measure what it costs.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    c = sub.add_parser("compress", help="compress a model into a .qnt file",
                       description="Compress a model (HF folder, model id in the local hub cache, .safetensors, .bin or .gguf) into one .qnt file.")
    c.add_argument("source", help="folder, owner/name in the local hub cache, .safetensors, .bin or .gguf file")
    c.add_argument("-o", "--outfile", required=True, help="the .qnt file to write")
    from .compress.run import CODEC_CHOICES

    c.add_argument("--codec", default="auto", choices=list(CODEC_CHOICES))
    c.add_argument("--fixed-rate", action="store_true",
                   help="auto chooses among the fixed-rate codecs only (fixed, rft-fixed, wht-fixed; groups 32/64/128), "
                        "per tensor; the index records which won and why")
    c.add_argument("--bits", type=float, help="target bits per weight for each tensor (with --allocate: for the whole model)")
    c.add_argument("--allocate", action="store_true",
                   help="spend --bits as a model average: Lagrangian allocation over each tensor's measured rate-distortion curve")
    c.add_argument("--calibration", metavar="FILE",
                   help="weight the allocation by sensitivities measured on this text ('builtin': bundled Wikipedia prose); implies --allocate")
    c.add_argument("--floor", type=float, help="floor of each sensitivity factor, as a fraction of its mean (default 0.3)")
    c.add_argument("--calibration-tokens", type=int, metavar="N",
                   help="calibration tokens for causal LMs (default 4096; windows of 256)")
    c.add_argument("--resume", action="store_true",
                   help="continue a killed run of the same source and options from its partial file (.OUT.partial)")
    c.add_argument("--snr", type=float, help="target SNR in dB for each tensor (default 30 when no target is given)")
    c.add_argument("--keep", type=float, help="fraction of RFT coefficients to keep (rft-spectral)")
    c.add_argument("--include", help="regex: tensors to code with the codec (default all); others are lossless")
    c.add_argument("--exclude", help="regex: tensors to store lossless")
    c.add_argument("--threads", type=int, default=2, help="tensors encoded at once (default 2)")
    c.add_argument("--executor", default="threads", metavar="threads|dask://HOST:PORT",
                   help="where tensor jobs run: local threads (default) or a Dask (distributed) scheduler; "
                        "the file written is the same")
    c.add_argument("--json", action="store_true", help="print the summary as JSON")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_compress)
    d = sub.add_parser("decompress", help="write a .qnt file back as an HF folder", parents=[lp])
    d.add_argument("file")
    d.add_argument("-o", "--outdir", required=True, help="a new (or empty) folder")
    d.add_argument("--threads", type=int, default=2)
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=cmd_decompress)
    i = sub.add_parser("inspect", help="per-tensor table of a .qnt file (name, shape, codec, bits, bpw, SNR)", parents=[lp])
    i.add_argument("file")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_inspect)
    inv = sub.add_parser("inventory", help="parameter-inventory report (Markdown, JSON, PNG charts) with validation", parents=[lp])
    inv.add_argument("files", nargs="+", help=".qnt files")
    inv.add_argument("-o", "--outfile", required=True, help="report.md (charts are written beside it)")
    inv.add_argument("--json", help="also write the same numbers as JSON here")
    inv.add_argument("--no-forward", action="store_true", help="skip rebuilding each model and running a forward pass")
    inv.add_argument("--quiet", action="store_true", help="no progress bars")
    inv.set_defaults(func=cmd_inventory)
    ev = sub.add_parser("eval", help="perplexity / KL / top-1 (causal LMs) or embedding cosine (encoders) against the original",
                        parents=[lp])
    ev.add_argument("original", help="the uncompressed model: folder, owner/name in the hub cache, or .gguf")
    ev.add_argument("file", help="the .qnt file")
    ev.add_argument("--text", help="evaluation text (default: the Lee corpus from gensim's test data)")
    ev.add_argument("--window", type=int, default=512, help="tokens per window, no overlap (default 512)")
    ev.add_argument("--max-tokens", type=int, default=8192, help="tokens of the text scored at most (default 8192)")
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--no-record", action="store_true", help="do not record the result in the .qnt file")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(func=cmd_eval)
    cp = sub.add_parser("compare", help="our codecs and peer quantisers at matched bits: table, RD chart, JSON",
                        description="Run auto/direct/rft-dense/rft-spectral and the peers (RTN g32/g128, GGUF Q8_0/Q5_0/Q4_1/Q4_0, "
                                    "HQQ, optimum-quanto) on one model at the given bits; fidelity on the rebuilt model.")
    cp.add_argument("source", help="the uncompressed model: folder, owner/name in the hub cache, .safetensors or .gguf")
    cp.add_argument("--bits", default="2,3,4,5,6,8", help="bit counts, comma separated (default 2,3,4,5,6,8)")
    from .compare import METHODS

    cp.add_argument("--methods", help=f"comma-separated subset of: {', '.join(METHODS)}; or the group fixed-rate "
                    "(RTN, GPTQ and the rotated fixed-rate methods); default: the codecs and peers without the rotations")
    cp.add_argument("--seeds", default="0", help="seeds of the rotated fixed-rate methods, comma separated (default 0)")
    cp.add_argument("--text", help="evaluation text (default: the Lee corpus from gensim's test data)")
    cp.add_argument("--calibration", help="calibration text for auto's sensitivities (default: bundled Wikipedia prose)")
    cp.add_argument("--max-tokens", type=int, default=4096, help="tokens scored / used for calibration, causal LMs (default 4096)")
    cp.add_argument("--threads", type=int, default=2)
    cp.add_argument("-o", "--outdir", help="write compare.md, compare.json and compare_rd.png here")
    cp.add_argument("--json", action="store_true", help="print the results as JSON")
    cp.set_defaults(func=cmd_compare)
    info = sub.add_parser("info", help="build report and a measured round trip of every transform")
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    info.set_defaults(func=cmd_info)
    from .chat import add_subcommands as add_chat_subcommands

    add_chat_subcommands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _apply_limits(args)
        return int(args.func(args))
    except CliError as e:
        print(f"quantonium: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    except (ValueError, OSError, KeyError) as e:  # QntFormatError, SourceError, missing files, ...
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"quantonium: error: {msg}", file=sys.stderr)
        return 1
    except ImportError as e:
        print(f"quantonium: error: {e} (is the package installed? run: bash scripts/setup.sh)", file=sys.stderr)
        return 1
    except MemoryError:
        print("quantonium: error: out of memory (lower --max-memory, or free memory)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
