#!/usr/bin/env bash
# The README's main job: install usegrant-flows in a local virtual environment (created
# when missing) and run the end-to-end demo: a local UseGrant emulator, Prefect's
# embedded API, two rotation runs. Output goes to ./demo/ (tokens mode 0600).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
if [ -x .venv/bin/usegrant-flows ] && .venv/bin/usegrant-flows demo --help >/dev/null 2>&1; then
  exec .venv/bin/usegrant-flows demo "$@"
fi
exec .venv/bin/python -m usegrant_flows.cli.demo "$@"
