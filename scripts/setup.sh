#!/usr/bin/env bash
# Installs everything selfsup needs into ./.venv (idempotent; a second run is quick).
#   bash scripts/setup.sh          # runtime + test dependencies
set -euo pipefail
cd "$(dirname "$0")/.."

# Blender's Python module links against a few X11/GL libraries even when headless; Debian's
# chromium opens the report in the tests (headless) and lets kaleido export figures.
libs="libx11-6 libxrender1 libxfixes3 libxi6 libxkbcommon0 libsm6 libxext6 libgl1 libegl1 chromium"
missing=""
for p in $libs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "setup: installing system libraries:$missing"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,export]'
echo "setup: done ($(.venv/bin/python -c 'import selfsup,sys; print(sys.version.split()[0])'))"
