"""Builds the libFuzzer harnesses of fuzz/native, seeds them and runs each for
a set time; prints one summary line per harness and exits non-zero on a
finding (a crash, a sanitizer report, a failed check, a leak, a timeout).

    python fuzz/native/run.py [--seconds 60] [--harness NAME ...]

scripts/fuzz.sh installs clang first and calls this; tests/test_fuzz_native.py
uses the same functions for the short pass of the test suite. Everything goes
under build/fuzz (gitignored): the CMake build, seeds/<harness> (rewritten
each run from the real codecs, see seeds.py), corpus/<harness> (what the
fuzzer found interesting, kept between runs) and findings/ (reproducers).
Reproduce a finding with: build/fuzz/fuzz/native/fuzz_<harness> <file>.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "fuzz"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from seeds import HARNESSES, write_seeds  # noqa: E402


def tool(name: str) -> str:
    """A build tool from the Python environment (pip's cmake/ninja) or PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"fuzz: {name} was not found (scripts/setup.sh installs it)")
    return found


def build(build_dir: Path = BUILD, quiet: bool = True) -> Path:
    """Configures (once) and builds the harnesses with clang; returns their folder."""
    clang = shutil.which("clang++")
    if clang is None:
        raise SystemExit("fuzz: clang++ was not found; scripts/setup.sh (or scripts/fuzz.sh) installs clang")
    out = subprocess.DEVNULL if quiet else None
    if not (build_dir / "CMakeCache.txt").exists():
        subprocess.run(
            [tool("cmake"), "-S", str(ROOT), "-B", str(build_dir), "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={tool('ninja')}",
             f"-DCMAKE_CXX_COMPILER={clang}", "-DQN_BUILD_FUZZERS=ON", "-DQN_WERROR=ON", "-DCMAKE_BUILD_TYPE=Release"],
            check=True, stdout=out,
        )
    subprocess.run([tool("cmake"), "--build", str(build_dir), "--target", "qn_fuzzers"], check=True, stdout=out)
    return build_dir / "fuzz" / "native"


@dataclass
class Result:
    harness: str
    seconds: float
    runs: int
    coverage: int
    corpus: int
    finding: str | None  # None: no finding; else what was found and where the reproducer is

    def line(self) -> str:
        head = f"fuzz_{self.harness}: {self.seconds:.0f} s, {self.runs:,} runs, coverage {self.coverage} edges, corpus {self.corpus}"
        return f"{head}: FINDING {self.finding}" if self.finding else f"{head}: no finding"


def run_one(bin_dir: Path, harness: str, seconds: int, corpus: Path, seeds: Path, findings: Path,
            max_runs: int | None = None, seed: int | None = None) -> Result:
    corpus.mkdir(parents=True, exist_ok=True)
    findings.mkdir(parents=True, exist_ok=True)
    args = [str(bin_dir / f"fuzz_{harness}"), f"-max_total_time={seconds}", "-print_final_stats=1",
            "-timeout=20", "-rss_limit_mb=4096", f"-artifact_prefix={findings}/{harness}-", str(corpus), str(seeds)]
    if max_runs is not None:
        args.insert(1, f"-runs={max_runs}")
    if seed is not None:
        args.insert(1, f"-seed={seed}")
    t0 = time.monotonic()
    proc = subprocess.run(args, capture_output=True, text=True, errors="replace")
    elapsed = time.monotonic() - t0
    log = proc.stderr + proc.stdout
    (findings.parent / f"{harness}.log").write_text(log)

    def stat(pattern: str) -> int:
        m = re.findall(pattern, log)
        return int(m[-1]) if m else 0

    finding = None
    if proc.returncode != 0:
        report = re.search(r"(ERROR: \w+Sanitizer.*|runtime error:.*|qnfuzz: .*|==\d+== ERROR: libFuzzer: .*|ERROR: libFuzzer: .*)", log)
        artifact = re.search(r"Test unit written to (\S+)", log)
        finding = (report.group(1).strip() if report else f"exit code {proc.returncode}") + (
            f" (reproducer {artifact.group(1)}; log {findings.parent / (harness + '.log')})" if artifact else ""
        )
    return Result(harness, elapsed, stat(r"stat::number_of_executed_units: (\d+)"), stat(r"cov: (\d+)"),
                  stat(r"corp: (\d+)/"), finding)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60, help="time per harness (default 60)")
    ap.add_argument("--harness", nargs="*", choices=HARNESSES, default=list(HARNESSES))
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    bin_dir = build(quiet=False)
    print(f"fuzz: harnesses built in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    write_seeds(BUILD / "seeds")
    results = []
    for h in args.harness:
        r = run_one(bin_dir, h, args.seconds, BUILD / "corpus" / h, BUILD / "seeds" / h, BUILD / "findings")
        print(r.line(), flush=True)
        results.append(r)
    bad = [r for r in results if r.finding]
    print(f"fuzz: {len(results) - len(bad)} of {len(results)} harnesses without a finding")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
