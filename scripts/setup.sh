#!/usr/bin/env bash
# Installs everything selfsup needs into ./.venv (idempotent: a second run checks and returns).
#   bash scripts/setup.sh          # runtime + test dependencies
# As root it calls apt-get directly (containers, CI images); as another user through sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "setup: error: $*" >&2; exit 1; }

# Blender's Python module links against a few X11/GL libraries even when headless; Debian's
# chromium opens the report in the tests (headless) and lets kaleido export figures.
libs="libx11-6 libxrender1 libxfixes3 libxi6 libxkbcommon0 libsm6 libxext6 libgl1 libegl1 chromium"
missing=""
for p in $libs; do
  # installed means the status "install ok installed" (a removed package's config files leave "deinstall")
  status=$(dpkg -s "$p" 2>/dev/null || true)
  case "$status" in *"Status: install ok installed"*) ;; *) missing="$missing $p" ;; esac
done
missing=${missing# }
if [ -n "$missing" ]; then
  echo "setup: installing system libraries: $missing"
  command -v apt-get >/dev/null 2>&1 \
    || die "missing system packages: $missing (no apt-get here: install them with your package manager)"
  # As root run apt-get itself; otherwise through sudo. The environment variable goes through
  # env(1), so it is an argument of the command and not a word the shell tries to run.
  asroot=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "missing system packages: $missing (not root and no sudo: ask an admin to apt-get install them)"
    asroot=(sudo)
  fi
  log=$(mktemp "${TMPDIR:-/tmp}/selfsup-apt.XXXXXX")
  "${asroot[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$log" 2>&1 \
    || die "apt-get update failed, so these system packages are still missing: $missing (apt's output: $log)"
  # shellcheck disable=SC2086  # $missing is a list of package names
  "${asroot[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >>"$log" 2>&1 \
    || die "apt-get install failed, so these system packages are still missing: $missing (apt's output: $log)"
  rm -f "$log"
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv || die "could not create .venv with $PY"

# The Python install is skipped when the venv was built from these exact files and still imports.
stamp=.venv/.selfsup-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c 'import selfsup' 2>/dev/null; then
  echo "setup: up to date (.venv matches pyproject.toml)"
  exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,export]'
echo "$want" > "$stamp"
echo "setup: done ($(.venv/bin/python -c 'import selfsup,sys; print(sys.version.split()[0])'))"
