#!/usr/bin/env bash
# Runs the tests that drive the native module under sanitizers (issue 11):
#
#   bash scripts/sanitize.sh          # both runs below
#   bash scripts/sanitize.sh asan     # AddressSanitizer + UndefinedBehaviorSanitizer
#   bash scripts/sanitize.sh tsan     # ThreadSanitizer
#   bash scripts/sanitize.sh asan -k fixed   # further arguments go to pytest
#
# asan: the extension is built with GCC's -fsanitize=address,undefined
#   (+ float-cast-overflow; every report is fatal: -fno-sanitize-recover=all)
#   into build/asan and the native test subset runs with libasan preloaded
#   into the (uninstrumented) Python interpreter. ASAN_OPTIONS=detect_leaks=0:
#   CPython does not free everything at exit, and LeakSanitizer would report
#   the interpreter's own allocations; memory errors are all still reported.
#   allocator_may_return_null=1: an allocation too large for any machine
#   (tests/test_native_limits.py asks for some) fails with MemoryError, as
#   without ASan, instead of aborting.
# tsan: the extension is built with -fsanitize=thread into build/tsan, and
#   tests/test_native_concurrency.py and tests/test_threads.py run with libtsan
#   preloaded and halt_on_error=1; scripts/tsan.supp lists the suppressions
#   (each with the reason why it is not a race of ours).
#
# Any sanitizer report fails the run (non-zero exit). Sets up what it needs:
# the Python environment (scripts/setup.sh, when there is none) and GCC's
# sanitizer runtimes (with g++). The sanitized builds are used only here:
# the tests import them from build/<name>/stage, never from the installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WHAT=${1:-all}
case "$WHAT" in all | asan | tsan) ;; *) echo "usage: bash scripts/sanitize.sh [all|asan|tsan] [pytest arguments]" >&2; exit 2 ;; esac
shift || true
VENV=${QN_VENV:-.venv}
[ -x "$VENV/bin/python" ] || bash scripts/setup.sh
PY=$(cd "$(dirname "$VENV/bin/python")" && pwd)/python
# pybind11's CMake files: the environment's, else the system Python's (as
# scripts/dev_build.sh), else pybind11 installed into the environment.
PYBIND11_DIR=$("$PY" -m pybind11 --cmakedir 2>/dev/null || python3 -m pybind11 --cmakedir 2>/dev/null ||
  { "$PY" -m pip install -q pybind11==3.1.0 >&2 && "$PY" -m pybind11 --cmakedir; })
export PATH="$(dirname "$PY"):$PATH" # pip's cmake and ninja

runtime() { g++ -print-file-name="$1"; }
# The runtime goes first; libstdc++ is preloaded beside it because Python does
# not link it, and the sanitizer's __cxa_throw interceptor must find it when
# it starts (else the first C++ exception aborts: "real___cxa_throw != 0").
preload() { echo "$(runtime "$1"):$(runtime libstdc++.so.6)"; }
if ! command -v g++ >/dev/null || [ ! -e "$(runtime libasan.so)" ] || [ ! -e "$(runtime libtsan.so)" ] ||
  [ ! -e "$(runtime libubsan.so)" ]; then
  echo "sanitize: installing g++ and its sanitizer runtimes" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends build-essential pkg-config libfftw3-dev libeigen3-dev >/dev/null
  major=$(g++ -dumpversion | cut -d. -f1)
  apt-get install -y -qq --no-install-recommends "libgcc-$major-dev" >/dev/null # libasan, libtsan, libubsan
fi

# build NAME FLAGS: the extension with FLAGS into build/NAME, staged as a
# package folder build/NAME/stage (quantonium_native with the sanitized
# _core, and quantonium from the source tree).
build() {
  local name=$1 flags=$2 dir="build/$1"
  cmake -S . -B "$dir" -G Ninja -DQN_BUILD_PYTHON=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_MODULE_LINKER_FLAGS="$flags" \
    -DPython_EXECUTABLE="$PY" -Dpybind11_DIR="$PYBIND11_DIR" >/dev/null
  cmake --build "$dir" >&2
  local stage="$dir/stage"
  rm -rf "$stage"
  mkdir -p "$stage/quantonium_native"
  ln -s "$ROOT/python/quantonium" "$stage/quantonium"
  for f in __init__.py _core.pyi py.typed; do ln -s "$ROOT/python/quantonium_native/$f" "$stage/quantonium_native/$f"; done
  ln -s "$ROOT/$dir/$(cd "$dir" && ls _core.*.so)" "$stage/quantonium_native/"
}

# check NAME LOG: fails if the log holds a sanitizer report. pytest runs with
# --capture=sys, so that what the sanitizers write to file descriptor 2 goes
# straight to the log, even when they end the process; a report in a child
# process that a test expected to fail would be caught here too.
check() {
  if grep -qE "ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|WARNING: ThreadSanitizer|ERROR: ThreadSanitizer|SUMMARY: (Address|Thread|UndefinedBehavior)Sanitizer" "$2"; then
    echo "sanitize $1: FAILED, sanitizer report in $2:" >&2
    grep -m5 -E "ERROR: AddressSanitizer|runtime error:|WARNING: ThreadSanitizer|SUMMARY:" "$2" >&2
    return 1
  fi
}

# run NAME PRELOAD TESTS...: pytest on the staged build, output in build/NAME/pytest.log.
run() {
  local name=$1 preload=$2
  shift 2
  local log="build/$name/pytest.log" start=$SECONDS rc=0
  local so
  so=$(LD_PRELOAD="$preload" PYTHONPATH="build/$name/stage" "$PY" -c "import quantonium_native as q; print(q._core.__file__)")
  case "$so" in "$ROOT/build/$name/stage/"*) ;; *) echo "sanitize $name: imported $so instead of the sanitized build" >&2; return 1 ;; esac
  LD_PRELOAD="$preload" PYTHONPATH="build/$name/stage" "$PY" -m pytest -q -p no:cacheprovider --capture=sys "$@" >"$log" 2>&1 || rc=$?
  tail -n 3 "$log"
  check "$name" "$log" || rc=1
  if [ "$rc" -ne 0 ]; then
    echo "sanitize $name: FAILED (exit $rc) after $((SECONDS - start)) s; log: $log" >&2
    return 1
  fi
  echo "sanitize $name: no report, $((SECONDS - start)) s of tests; log: $log"
}

status=0
if [ "$WHAT" = all ] || [ "$WHAT" = asan ]; then
  build asan "-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all -fno-omit-frame-pointer"
  export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:abort_on_error=1:strict_init_order=1:check_initialization_order=1:detect_stack_use_after_return=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  run asan "$(preload libasan.so)" \
    tests/test_native_limits.py tests/test_quant_native.py tests/test_phi_rft.py tests/test_real_rft.py \
    tests/test_canonical.py tests/test_errors.py tests/test_threads.py tests/test_native_concurrency.py \
    tests/test_properties.py tests/test_build_info.py tests/test_codecs.py tests/test_container.py \
    tests/test_hostile.py "$@" || status=1
  unset ASAN_OPTIONS UBSAN_OPTIONS
fi
if [ "$WHAT" = all ] || [ "$WHAT" = tsan ]; then
  build tsan "-fsanitize=thread"
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$ROOT/scripts/tsan.supp"
  run tsan "$(preload libtsan.so)" tests/test_native_concurrency.py tests/test_threads.py "$@" || status=1
  unset TSAN_OPTIONS
fi
exit $status
