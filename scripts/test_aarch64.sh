#!/usr/bin/env bash
# Cross-builds the native extension for 64-bit ARM (aarch64) and runs the
# native test subset on it under user-mode emulation (QEMU), on an x86-64
# Debian machine, as root:
#
#   bash scripts/test_aarch64.sh [pytest arguments]     # ~25 min on 2 cores
#
# What it does (idempotent: a second run only rebuilds what changed):
#  1. apt: Debian's cross compiler (g++-aarch64-linux-gnu), qemu-user-static,
#     and through multiarch (dpkg --add-architecture arm64) the arm64 FFTW,
#     Python headers and runtime libraries, installed beside the host's.
#  2. An aarch64 Python: Debian's own interpreter binary, the one file that
#     multiarch cannot install beside the host's python3 (python3:arm64 would
#     replace python3:amd64 and everything that depends on it), is taken from
#     its package (apt-get download + dpkg-deb -x) into build/aarch64/; its
#     standard library is the multiarch one. It runs as a virtual environment,
#     build/aarch64/venv, whose packages (numpy, pytest, hypothesis, ml_dtypes:
#     the versions of the x86-64 environment, pinned below) are PyPI's aarch64
#     wheels, installed by pip with --platform.
#  3. Cross-compiles the extension with warnings as errors
#     (cmake/aarch64-linux-gnu.cmake) into build/aarch64/build.
#  4. Runs the native tests (NATIVE_TESTS below: the ones that need only
#     numpy, ml_dtypes, quantonium_native and the numpy references) with that
#     Python under qemu-aarch64, emulating a Cortex-A72 (ARMv8.0-A: NEON,
#     nothing newer; QN_QEMU_CPU=max or another core overrides it). The tests
#     compare against the numpy references to the tolerances they use on x86-64.
#
# Not part of scripts/test.sh or CI: emulation is slow, and nothing here runs
# on real ARM hardware.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
A=$ROOT/build/aarch64
start=$SECONDS
# pip's "Location ... is ignored" warnings (local package mirrors that this
# machine does not have) are noise; everything else goes to stderr.
quiet() { { grep -v "^WARNING: Location" || true; } >&2; }
say() { echo "test_aarch64: $*" >&2; }

# The tests under emulation, and the ones left out (with the reason).
NATIVE_TESTS=(
  tests/test_errors.py
  tests/test_build_info.py
  tests/test_real_rft.py
  tests/test_quant_native.py
  tests/test_entropy.py
  tests/test_canonical.py
  tests/test_phi_rft.py
  tests/test_threads.py
  tests/test_properties.py
  # codecs, rate allocation and the .qnt container: numpy, ml_dtypes and the
  # native kernels end to end (no torch)
  tests/test_codecs.py
  tests/test_allocation.py
  tests/test_container.py
  tests/test_hostile.py
)
DESELECT=(
  # the canonical basis at n = 1024 (O(n^3) in Eigen): 8.5 min under emulation;
  # the bases at n <= 256 are checked against the reference, and every basis is
  # checked unitary when it is built
  tests/test_canonical.py::test_the_largest_allowed_size_is_unitary
)
# Python packages of the aarch64 environment: the versions the x86-64 tests run with.
ARM_REQUIREMENTS=(numpy==2.4.6 pytest==9.2.0 hypothesis==6.170.17 ml_dtypes==0.6.0)
# Build tools on the host (CMake >= 4.1 asks the target's Python through the emulator).
HOST_REQUIREMENTS=(cmake==4.4.5 ninja==1.13.2 pybind11==3.1.0)
export QEMU_CPU=${QN_QEMU_CPU:-cortex-a72}

# --- 1. system packages -------------------------------------------------------
if [ "$(dpkg --print-architecture)" != amd64 ]; then
  say "this script cross-builds from an x86-64 (amd64) Debian machine; this one is $(dpkg --print-architecture)" 
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
need_update=0
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  say "adding the arm64 architecture to dpkg (multiarch)"
  dpkg --add-architecture arm64
  need_update=1
fi
# The Debian release's default Python (python3.11 on Debian 12): the arm64
# headers and standard library must be of that version.
PYV=$(py3versions -d 2>/dev/null || true)
if [ -z "$PYV" ]; then
  say "py3versions (Debian's python3-minimal) is missing: cannot tell which Python the arm64 packages are for"
  exit 1
fi
APT_PACKAGES=(g++-aarch64-linux-gnu qemu-user-static pkg-config libeigen3-dev
              libfftw3-dev:arm64 "lib$PYV-dev:arm64" "lib$PYV-stdlib:arm64" libstdc++6:arm64)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if ((need_update)) || ! apt-cache show libfftw3-dev:arm64 >/dev/null 2>&1; then apt-get update -qq; fi
  if ! apt-cache show libfftw3-dev:arm64 >/dev/null 2>&1; then
    say "the apt sources serve no arm64 packages (libfftw3-dev:arm64 is unknown). Debian's mirrors carry"
    say "arm64; a source restricted to 'Architectures: amd64', or Ubuntu (arm64 is on ports.ubuntu.com),"
    say "needs an arm64 entry. Nothing was installed."
    exit 1
  fi
  say "installing system packages: ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- host build tools -----------------------------------------------------------
HOST=$A/host-venv
if [ ! -x "$HOST/bin/python" ]; then
  say "creating $HOST (host build tools)"
  "${PYTHON:-python3}" -m venv "$HOST"
fi
if [ "$(cat "$HOST/.requirements" 2>/dev/null)" != "${HOST_REQUIREMENTS[*]}" ]; then
  "$HOST/bin/python" -m pip install -q "${HOST_REQUIREMENTS[@]}" 2>&1 | quiet
  echo "${HOST_REQUIREMENTS[*]}" >"$HOST/.requirements"
fi

# --- 2. the aarch64 Python ------------------------------------------------------
pyver=$(dpkg-query -W -f='${Version}' "lib$PYV-stdlib:arm64")
PYROOT=$A/python-root
if [ "$(cat "$PYROOT/.version" 2>/dev/null)" != "$PYV-minimal:arm64=$pyver" ]; then
  say "fetching Debian's aarch64 interpreter ($PYV-minimal:arm64 $pyver)"
  rm -rf "$PYROOT" "$A/deb"
  mkdir -p "$A/deb"
  (cd "$A/deb" && apt-get download -qq "$PYV-minimal:arm64=$pyver" 2>&1 | { grep -v "unsandboxed" || true; } >&2)
  dpkg-deb -x "$A/deb/$PYV-minimal_"*_arm64.deb "$PYROOT"
  echo "$PYV-minimal:arm64=$pyver" >"$PYROOT/.version"
fi
PYBIN=$PYROOT/usr/bin/$PYV
# A virtual environment whose interpreter is a launcher script: qemu's -0 makes
# the launcher the program's argv[0], so Python takes it for sys.executable and
# finds pyvenv.cfg beside it, and subprocesses of the tests come back through it.
VENV=$A/venv
SITE=$VENV/lib/$PYV/site-packages
mkdir -p "$VENV/bin" "$SITE"
printf 'home = /usr/bin\ninclude-system-site-packages = false\nversion = %s\n' \
  "$(qemu-aarch64-static "$PYBIN" -c 'import platform; print(platform.python_version())')" >"$VENV/pyvenv.cfg"
cat >"$VENV/bin/python" <<EOF
#!/bin/sh
# The aarch64 Python of scripts/test_aarch64.sh, under user-mode emulation.
export QEMU_CPU="\${QEMU_CPU:-$QEMU_CPU}"
exec qemu-aarch64-static -0 "\$0" "$PYBIN" "\$@"
EOF
chmod +x "$VENV/bin/python"
if [ "$(cat "$SITE/.requirements" 2>/dev/null)" != "${ARM_REQUIREMENTS[*]}" ]; then
  say "installing the aarch64 wheels: ${ARM_REQUIREMENTS[*]}"
  pytag=$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
  "$HOST/bin/python" -m pip install -q --upgrade --no-warn-conflicts --target "$SITE" \
    --only-binary=:all: --implementation cp --python-version "$pytag" --abi "cp$pytag" \
    --platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 \
    "${ARM_REQUIREMENTS[@]}" 2>&1 | quiet
  echo "${ARM_REQUIREMENTS[*]}" >"$SITE/.requirements"
fi

# --- 3. cross-compile -------------------------------------------------------------
say "cross-compiling for aarch64 (warnings are errors) into build/aarch64/build"
t0=$SECONDS
PYBIND11_DIR=$("$HOST/bin/python" -m pybind11 --cmakedir)
"$HOST/bin/cmake" -S . -B "$A/build" -G Ninja -DCMAKE_MAKE_PROGRAM="$HOST/bin/ninja" \
  -DCMAKE_TOOLCHAIN_FILE="$ROOT/cmake/aarch64-linux-gnu.cmake" -DCMAKE_BUILD_TYPE=Release \
  -DQN_BUILD_PYTHON=ON -DQN_WERROR=ON -DPython_EXECUTABLE="$PYBIN" \
  -DPYBIND11_USE_CROSSCOMPILING=ON -Dpybind11_DIR="$PYBIND11_DIR" >/dev/null
"$HOST/bin/cmake" --build "$A/build"
build_s=$((SECONDS - t0))
so=$(cd "$A/build" && ls _core.cpython-*-aarch64-linux-gnu.so)

# The package as the tests import it: the sources, this build's module, and the
# project's metadata (quantonium.__version__ is read from it, as when installed).
STAGE=$A/stage
rm -rf "$STAGE"
mkdir -p "$STAGE/quantonium_native"
for f in python/quantonium_native/*; do
  case "$f" in *.so) ;; *) ln -s "$ROOT/$f" "$STAGE/quantonium_native/" ;; esac
done
ln -s "$A/build/$so" "$STAGE/quantonium_native/$so"
ln -s "$ROOT/python/quantonium" "$STAGE/quantonium"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)
mkdir -p "$STAGE/quantonium-$version.dist-info"
printf 'Metadata-Version: 2.1\nName: quantonium\nVersion: %s\n' "$version" >"$STAGE/quantonium-$version.dist-info/METADATA"

# --- 4. the native tests under emulation --------------------------------------------
export PYTHONPATH=$STAGE
"$VENV/bin/python" - <<'EOF'
import platform, quantonium_native as qn
info = qn.build_info()
print(f"test_aarch64: {platform.machine()} under qemu, {info['compiler']}, {info['fftw_version']}, "
      f"SIMD {info['simd_selected']} (compiled {info['simd_compiled']}), rANS kernels {info['rans_kernels']}")
assert platform.machine() == "aarch64" and info["simd_selected"] == "neon", info
EOF
deselect=()
for t in "${DESELECT[@]}"; do deselect+=(--deselect "$t"); done
say "running ${#NATIVE_TESTS[@]} test files under qemu-aarch64 (CPU model $QEMU_CPU); left out: ${DESELECT[*]}"
t0=$SECONDS
set +e
"$VENV/bin/python" -m pytest -q -p no:cacheprovider --durations=10 "${deselect[@]}" "${NATIVE_TESTS[@]}" "$@"
rc=$?
set -e
say "build ${build_s} s, tests $((SECONDS - t0)) s, total $((SECONDS - start)) s"
if [ "$rc" -eq 5 ]; then
  say "pytest collected no test; that is a failure here"
  exit 1
fi
exit "$rc"
