#!/usr/bin/env bash
# Fuzzes the Python reader with atheris (libFuzzer) for a set time:
# quantonium.open / QntFile + every read, and every codec's decoder
# (tests/fuzz/fuzz_qnt.py). Seeds are made by the real writer and encoders.
#
#   bash scripts/fuzz_python.sh [SECONDS]      # default 300
#
# Everything goes to build/fuzz/python: seeds/, corpus/ (kept between runs),
# findings/ (an input that crashed, hung, ran out of memory or raised anything
# but the reader's one-line error). Exit status non-zero when there is a
# finding: turn it into a test in tests/test_fuzz.py (REGRESSIONS).
# Uses $QN_VENV (default .venv); with a source tree built by dev_build.sh,
# run it with PYTHONPATH=python.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-300}
VENV=${QN_VENV:-.venv}
OUT=build/fuzz/python
mkdir -p "$OUT/corpus" "$OUT/findings"
"$VENV/bin/python" -c "import atheris" 2>/dev/null || {
  echo "fuzz_python: atheris is not installed (bash scripts/setup.sh installs it on x86-64)" >&2
  exit 1
}
"$VENV/bin/python" tests/fuzz/fuzz_qnt.py --make-seeds "$OUT/seeds"
exec "$VENV/bin/python" tests/fuzz/fuzz_qnt.py -max_total_time="$SECS" -rss_limit_mb=3072 -timeout=30 \
  -artifact_prefix="$OUT/findings/" "$OUT/corpus" "$OUT/seeds"
