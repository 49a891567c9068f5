#!/usr/bin/env bash
# The README's first command: set everything up, then run the main job.
#
# Until the model pipeline lands (issue 4), the main job is the native core's
# report: build information, a measured round trip of every transform against
# the numpy reference, and the transform benchmark (native vs numpy reference
# vs raw FFTW, n = 1024).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${QN_VENV:-.venv}
"$VENV/bin/quantonium" info
"$VENV/bin/python" bench/compare_numpy.py --quick
