#!/usr/bin/env bash
# The test command: sets up .venv (with test dependencies) and runs the whole test suite on CPU.
# Usage: bash script/test.sh [pytest args...]   (-m "not slow": skip the end-to-end and child-process tests)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source script/setup_env.sh "$ROOT/requirements-dev.txt"
# One worker process per core, at most two (DASS_TEST_WORKERS overrides; 1 = in this process): each test
# file runs whole in one worker, so its module fixtures are built once; conftest.py gives each worker one
# torch thread, so the workers do not compete for the cores.
WORKERS="${DASS_TEST_WORKERS:-$("$PY" -c 'import os; print(min(2, os.cpu_count() or 1))')}"
PAR=()
if [ "$WORKERS" -gt 1 ]; then PAR=(-n "$WORKERS" --dist loadfile); fi
set +e
"$PY" -m pytest -q -p no:cacheprovider --durations=20 "${PAR[@]}" "$@" tests
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
