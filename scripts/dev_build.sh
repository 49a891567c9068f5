#!/usr/bin/env bash
# Developers' incremental build: compiles the native module into build/dev
# (CMake + Ninja, warnings as errors) and links it into python/quantonium_native,
# so that the source tree runs without reinstalling:
#
#   bash scripts/dev_build.sh                     # after scripts/setup.sh once
#   PYTHONPATH=python .venv/bin/python -m pytest tests/test_codecs.py
#
# Extra arguments are passed to CMake's configure step (e.g. -DQN_BUILD_BENCHMARKS=ON).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${QN_VENV:-.venv}
PY=$(cd "$(dirname "$VENV/bin/python")" && pwd)/python
PYBIND11_DIR=$("$PY" -m pybind11 --cmakedir 2>/dev/null || python3 -m pybind11 --cmakedir)
cmake -S . -B build/dev -G Ninja -DQN_BUILD_PYTHON=ON -DQN_WERROR=ON -DCMAKE_BUILD_TYPE=Release \
  -DPython_EXECUTABLE="$PY" -Dpybind11_DIR="$PYBIND11_DIR" "$@" >/dev/null
cmake --build build/dev -j"$(nproc)"
so=$(cd build/dev && ls _core.*.so)
ln -sf "../../build/dev/$so" "python/quantonium_native/$so"
echo "dev_build: python/quantonium_native/$so -> build/dev/$so (use PYTHONPATH=python)" >&2
