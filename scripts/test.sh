#!/usr/bin/env bash
# Sets up everything the tests need on a fresh machine, then runs linters, type checks
# and the whole test suite. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'

# Debian packages the tests drive: Chromium for the browser test (no browser download at
# run time); PostgreSQL and Redis for the production-topology test, which starts its own
# servers on loopback (it skips, saying so, only when they cannot be installed).
packages=()
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || packages+=(postgresql)
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
if [ "${#packages[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  if $sudo apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null; then
    # The packages start their own servers; the tests start theirs on free ports.
    $sudo service redis-server stop >/dev/null 2>&1 || true
    $sudo service postgresql stop >/dev/null 2>&1 || true
  else
    echo "could not install ${packages[*]}: the tests that need them will skip" >&2
  fi
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy usegrant_flows
.venv/bin/python -m pytest "$@"
