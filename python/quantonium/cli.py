"""The ``quantonium`` command: one command, subcommands.

Results go to stdout, progress and diagnostics to stderr; errors are one line
on stderr naming the fix, checked before any model is loaded or work starts.
Exit status: 0 done, 1 the command failed (a missing, damaged or mismatched
file, an output refused, an error while working), 2 a usage error (an option
value or a combination that cannot work, whatever is on disk; argparse's
errors too, printed as one line), 130 interrupted (Ctrl-C: temporaries are
removed, nothing is left behind). Every output is checked before any work is
done and written by the rules of ``quantonium.outputs``; commands that read
``.qnt`` files take ``--max-memory SIZE`` and ``--max-index SIZE``
(``quantonium.limits``; they set ``QUANTONIUM_MAX_MEMORY`` /
``QUANTONIUM_MAX_INDEX`` for the command). ``--json`` is a flag everywhere:
JSON on stdout instead of the text summary (``inventory`` writes its JSON file
with ``--json-out PATH``). Every subcommand's ``--help`` has a description,
examples and the defaults.

    quantonium compress SOURCE -o OUT.qnt [--codec C] [--bits B | --snr DB | --keep F] [--fixed-rate]
                        [--include RE] [--exclude RE] [--threads N] [--executor dask://HOST:PORT] [--json]
    quantonium decompress FILE.qnt -o DIR
    quantonium inspect FILE.qnt [--json]
    quantonium inventory FILE.qnt [FILE.qnt ...] -o REPORT.md [--json-out REPORT.json] [--json] [--no-forward]
    quantonium eval ORIGINAL FILE.qnt [--text FILE] [--record] [--json]
    quantonium compare SOURCE [--bits LIST] [--methods LIST] [-o DIR] [--json]
    quantonium chat / serve FILE.qnt ...   (quantonium.chat.cli)
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


class UsageError(CliError):
    """A command line that cannot work as written (an option value or combination): one line, exit status 2."""


#: the setting ``compress`` uses when no target is given: the recommended one (README, "Rate allocation")
RECOMMENDED_BITS = 4.0
RECOMMENDED_CALIBRATION = "builtin"


# --- argument types: a bad value is a usage error (exit 2) found while parsing, before anything is loaded

def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {v}")
    return v


def _number_in(lo: float, hi: float, *, lo_open: bool = True, unit: str = ""):
    """A float in (lo, hi] (or [lo, hi] when not ``lo_open``); NaN and infinities are refused."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (lo < v <= hi if lo_open else lo <= v <= hi):  # NaN fails both
            raise argparse.ArgumentTypeError(f"must be in {'(' if lo_open else '['}{lo:g}, {hi:g}]{unit}, not {text}")
        return v
    parse.__name__ = "number"
    return parse


def _regex(text: str) -> str:
    import re

    try:
        re.compile(text)
    except re.error as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid regular expression ({e})") from None
    return text


def _qnt_input(path: str, command: str) -> Path:
    """A ``.qnt`` file argument, checked before anything is read: one line naming the fix otherwise."""
    p = Path(path)
    if p.is_dir():
        hint = (f"; to compress the model in it: quantonium compress {path} -o OUT.qnt"
                if any((p / n).exists() for n in ("config.json", "model.safetensors", "model.safetensors.index.json",
                                                   "pytorch_model.bin")) else "")
        raise CliError(f"{path}: is a folder; {command} takes a .qnt file written by quantonium compress{hint}")
    if not p.exists():
        raise CliError(f"{path}: no such file")
    if not p.is_file():
        raise CliError(f"{path}: not a regular file; {command} takes a .qnt file written by quantonium compress")
    return p


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


def _default_target(args: argparse.Namespace) -> bool:
    """Applies the recommended setting when no target is given (returns whether it did).

    No ``--bits`` / ``--snr`` / ``--keep`` / ``--allocate`` / ``--calibration``, a codec the allocation works
    with and no ``--fixed-rate``: ``--bits 4 --calibration builtin`` (sensitivities from bundled prose, GPTQ).
    Other codecs keep their per-tensor default (``--snr 30``, ``compress.validate_options``).
    """
    given = (args.bits, args.snr, args.keep, args.calibration)
    if any(v is not None for v in given) or args.allocate or args.fixed_rate or args.codec not in ("auto", "direct", "rft-dense"):
        return False
    from .models import source_files
    from .models.loader import TOKENIZER_FILES

    fix = "; give a per-tensor target instead: --bits 4 or --snr 30"
    files = source_files(args.source)  # found without reading them (a hub id resolves in the local cache)
    names = {f.name for f in files}
    if files and not any(f.suffix == ".gguf" for f in files):  # GGUF files carry both; unresolved: open_source says why
        if Path(args.source).suffix == ".safetensors" and Path(args.source).is_file():
            raise CliError(f"{args.source}: a bare .safetensors file has no config or tokenizer, so the default "
                           f"(calibrated 4 bits) cannot run the model{fix}")
        if "config.json" not in names:
            raise CliError(f"{args.source}: no config.json beside the weights, so the default (calibrated 4 bits) "
                           f"cannot run the model{fix}")
        if not names & set(TOKENIZER_FILES):
            raise CliError(f"{args.source}: no tokenizer beside the weights, so the default (calibrated 4 bits) "
                           f"cannot read the calibration text{fix}")
    args.bits, args.calibration = RECOMMENDED_BITS, RECOMMENDED_CALIBRATION
    return True


def cmd_compress(args: argparse.Namespace) -> int:
    from .compress.executor import check_executor_spec
    from .compress.run import validate_options
    from .models import source_files
    from .outputs import check_file
    from .pipeline import compress

    if Path(args.source).suffix == ".qnt" and not Path(args.source).is_dir():
        raise UsageError(f"{args.source}: is already a .qnt file; to get the model back: "
                         f"quantonium decompress {args.source} -o DIR")
    if args.calibration not in (None, "builtin") and not Path(args.calibration).is_file():
        raise CliError(f"{args.calibration}: no such calibration text file (or use --calibration builtin)")
    defaulted = _default_target(args)
    try:  # combinations (each value was checked while parsing)
        validate_options(codec=args.codec, snr_db=args.snr, bpw=args.bits, keep=args.keep, threads=args.threads,
                         allocate=args.allocate, calibration=args.calibration, floor=args.floor, include=args.include,
                         exclude=args.exclude, fixed_rate=args.fixed_rate)
        check_executor_spec(args.executor)
    except ValueError as e:
        raise UsageError(str(e)) from None
    check_file(args.outfile, inputs=source_files(args.source))
    if defaulted and not args.quiet:
        print(f"quantonium: no target given: the recommended setting, --codec {args.codec} --bits {RECOMMENDED_BITS:g} "
              f"--calibration {RECOMMENDED_CALIBRATION} (minutes; --snr 30 is the quick per-tensor one)", file=sys.stderr)
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

    _qnt_input(args.file, "decompress")
    check_folder(args.outdir, inputs=[args.file])

    out = decompress(args.file, args.outdir, threads=args.threads, progress=_progress(args))
    print(f"wrote {out} (loads with transformers' from_pretrained)")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .container import QntFile

    _qnt_input(args.file, "inspect")
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

    json_out = args.json_out
    if isinstance(args.json, str):  # the old spelling, --json PATH (before issue 12)
        if args.json.lower().endswith(".qnt"):  # `-o r.md --json a.qnt b.qnt`: never overwrite an input
            raise UsageError(f"--json takes no value (it prints the JSON); to write a JSON file: --json-out PATH "
                             f"(got {args.json!r})")
        if json_out is not None:
            raise UsageError("give --json-out PATH once (--json PATH is its old spelling)")
        json_out = args.json
        print(f"quantonium: note: --json PATH is now --json-out PATH (--json alone prints the JSON); writing {json_out}",
              file=sys.stderr)
    for f in args.files:  # every input exists and is a file before any output is touched
        _qnt_input(f, "inventory")
    inventory.check_outputs(args.outfile, json_out, args.files)
    inv = inventory.build(args.files, forward=not args.no_forward, progress=_progress(args))
    written = inventory.write(inv, args.outfile, json_out)
    t = inv["totals"]
    for m in inv["models"]:
        for c in m["checks"]:
            print(f"{m['file']}: {c['check']}: {c['result']} ({c['detail']})", file=sys.stderr)
    def num(v, fmt: str) -> str:  # totals are None when no file opened
        return "n/a" if v is None else format(v, fmt)

    ratio = "n/a" if t["ratio_vs_source"] is None else f"{t['ratio_vs_source']:.2f}x"
    snr = "exact" if t["median_tensor_snr_db"] is None else f"{t['median_tensor_snr_db']:.2f} dB (worst {t['worst_tensor_snr_db']:.2f} dB)"
    if args.json is True:
        print(json.dumps(inv, indent=2, default=str))  # what --json-out writes (inventory.write)
    else:
        failed = f" (and {t['files_failed_to_open']} that failed to open)" if t["files_failed_to_open"] else ""
        print(f"inventory: {t['files']} file{'s' if t['files'] != 1 else ''}{failed} of {t['models']} model{'s' if t['models'] != 1 else ''} ({t['parameters']:,} parameters), {t['file_bytes']:,} bytes, "
              f"{num(t['bpw'], '.3f')} bpw, ratio {ratio} vs source, {num(t['ratio_vs_fp16'], '.2f')}x vs fp16, median tensor SNR {snr}; "
              f"{t['checks_failed']} checks failed; wrote {', '.join(str(w) for w in written)}")
    return 1 if t["checks_failed"] else 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .container import update_model
    from .evaluate import evaluate
    from .outputs import check_file

    if args.record and args.no_record:
        raise UsageError("give --record or --no-record, not both (not recording is the default)")
    _qnt_input(args.file, "eval")
    text, name = _read_text(args.text, "text")
    if args.record:  # the result is recorded in the file: it must be writable before the evaluation runs
        check_file(args.file)
    # evaluate() first checks that the original is the file's source (one line otherwise), then loads both
    res = evaluate(args.original, args.file, text=text, text_name=name, window=args.window, max_tokens=args.max_tokens,
                   progress=_progress(args))
    if args.record:
        update_model(args.file, {"evaluation": res})
        print(f"quantonium: recorded the evaluation in {args.file}", file=sys.stderr)
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
        raise UsageError(f"--bits takes numbers separated by commas, not {args.bits!r}") from None
    if not bits or any(not 0 < b <= 16 for b in bits):
        raise UsageError("--bits needs bit counts in (0, 16]")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else list(cmp.DEFAULT_METHODS)
    methods = list(dict.fromkeys(x for m in methods for x in cmp.METHOD_GROUPS.get(m, (m,))))
    bad = [m for m in methods if m not in cmp.METHODS]
    if bad:
        raise UsageError(f"unknown method {bad[0]!r}; expected some of {', '.join(cmp.METHODS)} "
                       f"or a group ({', '.join(cmp.METHOD_GROUPS)})")
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--seeds takes whole numbers separated by commas, not {args.seeds!r}") from None
    if not seeds or any(not 0 <= x < 2**63 for x in seeds):
        raise UsageError("--seeds needs seeds in [0, 2^63)")
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
                raise UsageError(f"argument --{flag}: {e}") from None


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """One-paragraph descriptions wrapped, examples (text with line breaks) as written; each option's default
    appended unless its help states it already."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        h = action.help or ""
        if (not action.option_strings or action.default in (None, False, argparse.SUPPRESS)
                or "default" in h.lower()):
            return h
        return f"{h} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """argparse with the house error format: one line, exit status 2, pointing at ``--help``."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


#: two or three examples per subcommand, shown at the end of its --help
EXAMPLES = {
    "compress": """\
The default (no --bits / --snr / --keep) is the recommended setting: --codec auto --bits 4 --calibration
builtin, i.e. 4 bits per weight on average, allocated by sensitivities measured on bundled prose, GPTQ on
the matrices (minutes: the model runs on the calibration text). It needs the model's config and tokenizer;
--snr 30 is the quick per-tensor setting (seconds, no calibration).

examples:
  quantonium compress HuggingFaceTB/SmolLM2-135M-Instruct -o smollm2.qnt         # recommended (calibrated 4 bits)
  quantonium compress ./my-model -o m.qnt --bits 3 --calibration my_text.txt    # 3 bits, your own text
  quantonium compress model.safetensors -o m.qnt --snr 30 --json               # quick, per tensor, JSON summary""",
    "decompress": """\
examples:
  quantonium decompress m.qnt -o m-hf          # then: AutoModelForCausalLM.from_pretrained("m-hf")
  quantonium decompress m.qnt -o m-hf --threads 2 --max-memory 4G""",
    "inspect": """\
examples:
  quantonium inspect m.qnt
  quantonium inspect m.qnt --json | jq '.tensors[] | {name, codec, bpw, snr_db}'""",
    "inventory": """\
examples:
  quantonium inventory m.qnt -o report.md                                  # also report_*.png beside it
  quantonium inventory a.qnt b.qnt -o report.md --json-out report.json
  quantonium inventory *.qnt -o report.md --json --no-forward > inventory.json   # JSON on stdout""",
    "eval": """\
examples:
  quantonium eval HuggingFaceTB/SmolLM2-135M-Instruct smollm2.qnt
  quantonium eval ./my-model m.qnt --text my_text.txt --record     # record the result in m.qnt (the inventory shows it)
  quantonium eval model.gguf m.qnt --json --max-tokens 2048""",
    "compare": """\
examples:
  quantonium compare ./my-model --bits 3,4 -o cmp       # cmp/compare.md, compare.json, compare_rd.png
  quantonium compare ./my-model --bits 4 --methods auto,rtn-g32,gguf-q4_0 --json
  quantonium compare ./my-model --bits 3,4 --methods fixed-rate --seeds 0,1,2""",
    "info": """\
examples:
  quantonium info
  quantonium info --json""",
    "chat": """\
examples:
  quantonium chat smollm2.qnt
  quantonium chat --registry models/ --model auto --max-memory 2GiB
  echo "What is the capital of France?" | quantonium chat smollm2.qnt --max-new-tokens 32""",
    "serve": """\
examples:
  quantonium serve smollm2.qnt                       # http://127.0.0.1:8000/ (chat page), /v1/chat/completions
  quantonium serve --registry models/ --port 0       # a free port, printed
  curl -s localhost:8000/v1/chat/completions -d '{"model": "auto", "messages": [{"role": "user", "content": "Hi"}]}'""",
}


def build_parser() -> argparse.ArgumentParser:
    lp = _limits_parent()
    p = _Parser(
        prog="quantonium",
        description="Compress model weights with the Resonance Fourier Transform, and measure what it costs.",
        epilog="Exit status: 0 done, 1 failed, 2 usage error, 130 interrupted. "
               "Each command's --help has examples and defaults.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    from .compress.run import CODEC_CHOICES

    c = sub.add_parser("compress", help="compress a model into a .qnt file",
                       description="Compress a model (HF folder, model id in the local hub cache, .safetensors, .bin "
                                   "or .gguf) into one self-contained .qnt file (weights, config, tokenizer).")
    c.add_argument("source", help="folder, owner/name in the local hub cache, .safetensors, .bin or .gguf file")
    c.add_argument("-o", "--outfile", required=True, help="the .qnt file to write")
    c.add_argument("--codec", default="auto", choices=list(CODEC_CHOICES),
                   help="auto chooses per tensor among the codecs, by measured rate and error")
    c.add_argument("--fixed-rate", action="store_true",
                   help="auto chooses among the fixed-rate codecs only (fixed, rft-fixed, wht-fixed; groups 32/64/128), "
                        "per tensor; the index records which won and why")
    c.add_argument("--bits", type=_number_in(0, 32), metavar="B",
                   help="bits per weight: the model's average with --allocate / --calibration, else each tensor's "
                        "(default: 4 with --calibration builtin when no target is given, see below)")
    c.add_argument("--allocate", action="store_true",
                   help="spend --bits as a model average: Lagrangian allocation over each tensor's measured rate-distortion curve")
    c.add_argument("--calibration", metavar="FILE",
                   help="weight the allocation by sensitivities measured on this text ('builtin': bundled Wikipedia "
                        "prose); implies --allocate (default: builtin when no target is given)")
    c.add_argument("--floor", type=_number_in(0, 1, lo_open=False), metavar="F",
                   help="floor of each sensitivity factor, as a fraction of its mean (default 0.3)")
    c.add_argument("--calibration-tokens", type=_positive_int, metavar="N",
                   help="calibration tokens for causal LMs (default 4096; windows of 256)")
    c.add_argument("--resume", action="store_true",
                   help="continue a killed run of the same source and options from its partial file (.OUT.partial)")
    c.add_argument("--snr", type=_number_in(0, 200, unit=" dB"), metavar="DB",
                   help="target SNR in dB for each tensor (default 30 for codecs the allocation does not take, "
                        "and with --fixed-rate, when no target is given)")
    c.add_argument("--keep", type=_number_in(0, 1), metavar="F", help="fraction of RFT coefficients to keep (rft-spectral)")
    c.add_argument("--include", type=_regex, metavar="RE", help="regex: tensors to code with the codec (default all); others are lossless")
    c.add_argument("--exclude", type=_regex, metavar="RE", help="regex: tensors to store lossless")
    c.add_argument("--threads", type=_positive_int, default=2, metavar="N", help="tensors encoded at once")
    c.add_argument("--executor", default="threads", metavar="threads|dask://HOST:PORT",
                   help="where tensor jobs run: local threads or a Dask (distributed) scheduler; the file written is the same")
    c.add_argument("--json", action="store_true", help="print the summary as JSON")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_compress)
    d = sub.add_parser("decompress", help="write a .qnt file back as an HF folder", parents=[lp],
                       description="Write a .qnt file back as a Hugging Face folder (config, tokenizer, "
                                   "model.safetensors) that transformers' from_pretrained loads unchanged. The folder "
                                   "is filled under a temporary name and renamed when complete.")
    d.add_argument("file", metavar="FILE.qnt", help="a file written by quantonium compress")
    d.add_argument("-o", "--outdir", required=True, help="a new (or empty) folder")
    d.add_argument("--threads", type=_positive_int, default=2, metavar="N", help="tensors decoded at once")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=cmd_decompress)
    i = sub.add_parser("inspect", help="per-tensor table of a .qnt file (name, shape, codec, bits, bpw, SNR)", parents=[lp],
                       description="Print what a .qnt file holds: the model, then per tensor its name, shape, codec, "
                                   "bits, bits per weight, SNR and gap to the Shannon bound. Nothing is decoded.")
    i.add_argument("file", metavar="FILE.qnt", help="a file written by quantonium compress")
    i.add_argument("--json", action="store_true", help="print the model, files and tensors as JSON")
    i.set_defaults(func=cmd_inspect)
    inv = sub.add_parser("inventory", help="parameter-inventory report (Markdown, JSON, PNG charts) with validation", parents=[lp],
                         description="Write the parameter-inventory report of one or more .qnt files (Markdown, PNG "
                                     "charts beside it, optionally JSON), validating every file while it is made "
                                     "(opens, checksums, decodes, RFT parameters, a forward pass). Exit status 1 if "
                                     "any check fails.")
    inv.add_argument("files", nargs="+", metavar="FILE.qnt", help=".qnt files")
    inv.add_argument("-o", "--outfile", required=True, help="report.md (charts are written beside it)")
    inv.add_argument("--json-out", metavar="PATH", help="also write the same numbers as JSON here")
    inv.add_argument("--json", nargs="?", const=True, default=None, metavar="PATH",
                     help="print the numbers as JSON on stdout instead of the summary line "
                          "(with a PATH: the old spelling of --json-out PATH, still accepted)")
    inv.add_argument("--no-forward", action="store_true", help="skip rebuilding each model and running a forward pass")
    inv.add_argument("--quiet", action="store_true", help="no progress bars")
    inv.set_defaults(func=cmd_inventory)
    ev = sub.add_parser("eval", help="perplexity / KL / top-1 (causal LMs) or embedding cosine (encoders) against the original",
                        parents=[lp],
                        description="Score a compressed model against its original: causal LMs by perplexity, mean KL "
                                    "and top-1 agreement over non-overlapping windows of a text; encoders by the cosine "
                                    "of mean-pooled sentence embeddings. The original must be the file's source "
                                    "(architecture, tensor names and shapes are checked first). The .qnt file is "
                                    "only read, unless --record.")
    ev.add_argument("original", help="the uncompressed model: folder, owner/name in the hub cache, .safetensors or .gguf")
    ev.add_argument("file", metavar="FILE.qnt", help="the .qnt file compressed from it")
    ev.add_argument("--text", metavar="FILE", help="evaluation text (default: the Lee corpus from gensim's test data)")
    ev.add_argument("--window", type=_positive_int, default=512, metavar="N",
                    help="tokens per window, no overlap (capped at the model's context)")
    ev.add_argument("--max-tokens", type=_positive_int, default=8192, metavar="N", help="tokens of the text scored at most")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    ev.add_argument("--record", action="store_true",
                    help="record the result in the .qnt file (rewritten atomically; the inventory and chat show it)")
    ev.add_argument("--no-record", action="store_true", help=argparse.SUPPRESS)  # the default since issue 12: a no-op
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(func=cmd_eval)
    cp = sub.add_parser("compare", help="our codecs and peer quantisers at matched bits: table, RD chart, JSON",
                        description="Run auto/direct/rft-dense/rft-spectral and the peers (RTN g32/g128, GGUF Q8_0/Q5_0/Q4_1/Q4_0, "
                                    "HQQ, optimum-quanto) on one model at the given bits; fidelity on the rebuilt model.")
    cp.add_argument("source", help="the uncompressed model: folder, owner/name in the hub cache, .safetensors or .gguf")
    cp.add_argument("--bits", default="2,3,4,5,6,8", help="bit counts, comma separated")
    from .compare import METHODS

    cp.add_argument("--methods", help=f"comma-separated subset of: {', '.join(METHODS)}; or the group fixed-rate "
                    "(RTN, GPTQ and the rotated fixed-rate methods); default: the codecs and peers without the rotations")
    cp.add_argument("--seeds", default="0", help="seeds of the rotated fixed-rate methods, comma separated")
    cp.add_argument("--text", metavar="FILE", help="evaluation text (default: the Lee corpus from gensim's test data)")
    cp.add_argument("--calibration", metavar="FILE", help="calibration text for auto's sensitivities (default: bundled Wikipedia prose)")
    cp.add_argument("--max-tokens", type=_positive_int, default=4096, metavar="N",
                    help="tokens scored / used for calibration, causal LMs")
    cp.add_argument("--threads", type=_positive_int, default=2, metavar="N", help="threads for encoding and torch")
    cp.add_argument("-o", "--outdir", help="write compare.md, compare.json and compare_rd.png here")
    cp.add_argument("--json", action="store_true", help="print the results as JSON")
    cp.set_defaults(func=cmd_compare)
    info = sub.add_parser("info", help="build report and a measured round trip of every transform",
                          description="Print the native core's build (FFTW, SIMD paths, compiler) and a round trip of "
                                      "every transform measured now against the numpy reference on seeded data.")
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    info.set_defaults(func=cmd_info)
    from .chat import add_subcommands as add_chat_subcommands

    add_chat_subcommands(sub)
    for name, sp in sub.choices.items():
        sp.epilog = EXAMPLES.get(name)
    return p


def _workers_alive() -> bool:
    """Whether threads other than this one still run (jobs in native code that cannot be interrupted)."""
    import threading

    me = threading.current_thread()
    return any(t is not me and t.is_alive() and not t.daemon for t in threading.enumerate())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _apply_limits(args)
        return int(args.func(args))
    except UsageError as e:
        print(f"quantonium {args.command}: error: {e} (see: quantonium {args.command} --help)", file=sys.stderr)
        return 2
    except CliError as e:
        print(f"quantonium: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Ctrl-C: the command's own clean-up (finally / except BaseException: temporaries removed) has run on the
        # way here. A job still inside native code cannot be interrupted and Python would wait for it when it exits:
        # exit now instead (os._exit), after flushing what was printed.
        done = "; no output written (temporaries removed)" if args.command in ("compress", "decompress") else ""
        print(f"quantonium: interrupted{done}", file=sys.stderr)
        if _workers_alive():
            import os

            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(130)
        return 130
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
