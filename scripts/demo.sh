#!/usr/bin/env bash
# The README's main job: install usegrant-flows in a local virtual environment (created
# when missing) and run the end-to-end demo: a local UseGrant emulator, a temporary
# Prefect API, two rotation runs. Output goes to ./demo/ (tokens mode 0600). Arguments
# go to `usegrant-flows demo` (a folder other than ./demo/).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# Install (editable) only when pyproject.toml changed since the last install: code
# changes need no reinstall, and pip costs ~10 s and a network round trip every run.
stamp=.venv/.usegrant-flows-demo-installed
wanted="$(cksum < pyproject.toml)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ] \
  || ! .venv/bin/python -c "import usegrant_flows.cli.demo" >/dev/null 2>&1; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
  printf '%s\n' "$wanted" > "$stamp"
fi
exec .venv/bin/python -m usegrant_flows.cli demo "$@"
