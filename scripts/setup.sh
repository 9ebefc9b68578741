#!/usr/bin/env bash
# Create .venv and install the project's Python dependencies (idempotent: fast when done).
# Usage: scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)${1:-}
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  if [ "${1:-}" = "--dev" ]; then
    .venv/bin/python -m pip install -q -r requirements.txt -r requirements-dev.txt
  else
    .venv/bin/python -m pip install -q -r requirements.txt
  fi
  touch "$stamp"
fi
