#!/usr/bin/env bash
# Builds a binary wheel of this checkout and repairs it with auditwheel, which
# copies the shared libraries it needs (FFTW) into the wheel: see the README's
# "Licence" section for what that means.
#
#   bash scripts/build_wheel.sh [OUTDIR]      # default OUTDIR: wheelhouse/
#
# Needs the set-up (scripts/setup.sh) for auditwheel and patchelf. Wheels for
# distribution are built by cibuildwheel in manylinux_2_28 images
# ([tool.cibuildwheel] in pyproject.toml); this command builds one for this
# machine's glibc.
set -euo pipefail
cd "$(dirname "$0")/.."
# pip's "Location ... is ignored" warnings (local package mirrors that this
# machine does not have) are noise; everything else goes to stderr.
quiet() { { grep -v "^WARNING: Location" || true; } >&2; }
OUT=$(realpath -m "${1:-wheelhouse}")
VENV=${QN_VENV:-.venv}
PY="$VENV/bin/python"
# auditwheel needs patchelf >= 0.14.5: the one pip put in the environment.
export PATH="$(realpath "$VENV")/bin:$PATH"
raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT
"$PY" -m pip wheel -q --no-deps -w "$raw" -Cbuild-dir=build/wheel . 2>&1 | quiet
whl=$(ls "$raw"/quantonium-*.whl)
mkdir -p "$OUT"
"$VENV/bin/auditwheel" repair -w "$OUT" "$whl" >&2
ls "$OUT"/quantonium-*manylinux*.whl
