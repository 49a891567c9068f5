"""The ``quantonium`` command: one command, subcommands.

Results go to stdout, progress and diagnostics to stderr; errors are one line
and a non-zero exit. Subcommands arrive with their issues (compress,
decompress, inspect, inventory, eval, compare, chat, serve, bench); today:

    quantonium info [--json]    build report and a measured round trip of every transform
"""

from __future__ import annotations

import argparse
import json
import sys
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="quantonium",
        description="Compress model weights with the Resonance Fourier Transform, and measure what it costs.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    info = sub.add_parser("info", help="build report and a measured round trip of every transform")
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    info.set_defaults(func=cmd_info)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as e:
        print(f"quantonium: error: {e}", file=sys.stderr)
        return 1
    except ImportError as e:
        print(f"quantonium: error: {e} (is the package installed? run: bash scripts/setup.sh)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
