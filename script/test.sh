#!/usr/bin/env bash
# The test command: sets up .venv (with test dependencies) and runs the whole test suite on CPU.
# Usage: bash script/test.sh [pytest args...]   (-m "not slow": skip the end-to-end and child-process tests)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source script/setup_env.sh "$ROOT/requirements-dev.txt"
set +e
"$PY" -m pytest -q -p no:cacheprovider --durations=20 "$@" tests
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
