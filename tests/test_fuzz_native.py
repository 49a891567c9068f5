"""A short, bounded pass of the libFuzzer harnesses of the native decoders
(fuzz/native; issue 11). The long runs are `bash scripts/fuzz.sh [SECONDS]`.

The harnesses are built with clang (installed by scripts/setup.sh) into
build/fuzz, incrementally, then each runs a fixed number of inputs from the
seeds of the real codecs with a fixed random seed: the pass is deterministic
for a given build (no flakiness), takes a few seconds per harness, and fails
on any finding (sanitizer report, failed check, uncaught exception).
Missing clang is a failure, not a skip: the set-up installs it.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.fuzz

# Inputs per harness: about 3-5 s each on this project's machines (2 shared cores).
RUNS = {"rans_decode": 40_000, "unpack_bits": 100_000, "dequantize_fixed": 40_000, "dequantize_uniform": 60_000}


def _runner():
    spec = importlib.util.spec_from_file_location("qn_fuzz_run", ROOT / "fuzz" / "native" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["qn_fuzz_run"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def fuzz_bin() -> Path:
    assert shutil.which("clang++"), "clang++ is missing: scripts/setup.sh installs clang (needed by the fuzz pass)"
    return _runner().build(quiet=True)


@pytest.mark.parametrize("harness", list(RUNS))
def test_short_fuzz_pass_finds_nothing(fuzz_bin, harness, tmp_path):
    run = _runner()
    run.write_seeds(tmp_path / "seeds")
    seeds = tmp_path / "seeds" / harness
    assert len(list(seeds.iterdir())) >= 5
    result = run.run_one(
        fuzz_bin, harness, seconds=60, corpus=tmp_path / "corpus", seeds=seeds, findings=tmp_path / "findings",
        max_runs=RUNS[harness], seed=1,
    )
    assert result.finding is None, result.line()
    assert result.runs >= RUNS[harness], result.line()  # it really ran (and was not cut by the time cap)
    assert result.coverage > 100, result.line()
