"""A successful command prints no traceback.

``prefect block register -m usegrant_flows`` without a server runs on Prefect's embedded
API, a new SQLite database. Prefect's anonymous telemetry service writes its session to
that database while the command registers the blocks: on a loaded machine one of them
waits past SQLite's lock timeout and ~150 lines of "database is locked" traceback follow
a successful registration. ``PREFECT_SERVER_ANALYTICS_ENABLED=false`` (``prefect config
set``, as docs/cli.md says; the README's server starts with ``--analytics-off``) turns
that service off.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PREFECT = [sys.executable, "-m", "prefect"]


def test_block_register_on_the_embedded_api_prints_no_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        HOME=str(tmp_path),
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
    )
    subprocess.run(
        [*PREFECT, "config", "set", "PREFECT_SERVER_ANALYTICS_ENABLED=false"],
        cwd=tmp_path, env=env, capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    result = subprocess.run(
        [*PREFECT, "block", "register", "-m", "usegrant_flows"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Successfully registered" in output
    assert "Traceback" not in output and "ERROR" not in output, output[-3000:]
