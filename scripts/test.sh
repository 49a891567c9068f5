#!/usr/bin/env bash
# The README's second command (and CI's): set everything up, run the whole test suite.
#
#   bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${QN_VENV:-.venv}
set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test: pytest collected no test; that is a failure here" >&2
  exit 1
fi
exit "$rc"
