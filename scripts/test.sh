#!/usr/bin/env bash
# Install the project with its dev dependencies (apt packages too when run as root) and run
# the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=""
  command -v chromium >/dev/null || need="$need chromium"
  command -v ffmpeg >/dev/null || need="$need ffmpeg"
  command -v slurmctld >/dev/null || need="$need slurm-wlm munge"  # tests/test_slurm.py
  if [ -n "$need" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
  fi
fi
scripts/setup.sh --dev
exec .venv/bin/python -m pytest "$@"
