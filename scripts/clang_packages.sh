#!/usr/bin/env bash
# Installs Debian's clang and the matching compiler runtime (libFuzzer,
# AddressSanitizer, UndefinedBehaviorSanitizer) if missing. Used by
# scripts/setup.sh (the test suite's short fuzz pass) and scripts/fuzz.sh.
# Debian 12 ships clang 14, whose runtime is the package libclang-rt-14-dev;
# older releases ship it inside libclang-common-<version>-dev.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
have_fuzzer() {
  command -v clang++ >/dev/null &&
    [ -e "$(clang++ -print-resource-dir 2>/dev/null)/lib/linux/libclang_rt.fuzzer-$(uname -m).a" ]
}
have_fuzzer && exit 0
echo "clang_packages: installing clang and its runtime (libFuzzer, sanitizers)" >&2
apt-get update -qq
command -v clang++ >/dev/null || apt-get install -y -qq --no-install-recommends clang >/dev/null
major=$(clang++ -dumpversion | cut -d. -f1)
if apt-cache show "libclang-rt-$major-dev" >/dev/null 2>&1; then
  apt-get install -y -qq --no-install-recommends "libclang-rt-$major-dev" >/dev/null
else
  apt-get install -y -qq --no-install-recommends "libclang-common-$major-dev" >/dev/null
fi
have_fuzzer || {
  echo "clang_packages: clang $major is installed but libFuzzer's runtime was not found" >&2
  exit 1
}
