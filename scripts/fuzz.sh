#!/usr/bin/env bash
# Fuzzes the native decoders (rANS decode, unpack_bits, dequantize_fixed,
# dequantize_uniform) with libFuzzer + AddressSanitizer + UndefinedBehaviorSanitizer:
#
#   bash scripts/fuzz.sh [SECONDS]      # each harness for SECONDS (default 60)
#
# Installs clang and its runtime (libFuzzer, sanitizers) if missing, sets up
# the Python environment if there is none (scripts/setup.sh: the seeds are made
# by the real codecs), builds fuzz/native into build/fuzz, writes the seed
# corpora and runs each harness in turn. One summary line per harness; the
# exit code is non-zero if any harness found something (its reproducer is in
# build/fuzz/findings/, the full log beside it). The corpus grown by earlier
# runs (build/fuzz/corpus/) is kept and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
bash scripts/clang_packages.sh
VENV=${QN_VENV:-.venv}
[ -x "$VENV/bin/python" ] || bash scripts/setup.sh
PY="$VENV/bin/python"
# The seeds need quantonium_native: this tree's build if there is one
# (scripts/dev_build.sh), else the one setup.sh installed.
if compgen -G "python/quantonium_native/_core.*.so" >/dev/null; then
  export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$PY" fuzz/native/run.py --seconds "$SECONDS_EACH"
