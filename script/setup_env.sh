#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) on a fresh machine.
# Usage: source script/setup_env.sh [requirements-file]   (sets $PY to the venv's python)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQ="${1:-$ROOT/requirements.txt}"
VENV="${DASS_VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV" >&2
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
# Re-install only when the requirement files or the package metadata changed (hash stamp inside the venv).
HASH="$(cat "$ROOT"/requirements*.txt "$REQ" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
STAMP="$VENV/.dass-req-$(basename "$REQ")-$HASH"
if [ ! -f "$STAMP" ]; then
  echo "[setup] installing $(basename "$REQ") and the dass package (editable) into $VENV" >&2
  "$PY" -m pip install -q --disable-pip-version-check -r "$REQ"
  # the package itself, editable: `dass` on the PATH of the venv, imports without touching sys.path
  "$PY" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$ROOT"
  rm -f "$VENV"/.dass-req-"$(basename "$REQ")"-*
  touch "$STAMP"
fi
export PY
# OpenMP threads that spin at barriers make torch 10-30x slower when another process holds a core
# (measured, bench/RESULTS.md "Threads"): wait passively unless the caller chose otherwise.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
