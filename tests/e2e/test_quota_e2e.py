"""Two rotations at once on a real Prefect server share one API key's budget, and never get a 429.

The emulator enforces the same budget as the credentials block (a sliding window of
``BUDGET`` calls per ``WINDOW`` seconds); the fleet needs more calls than one window
holds, so some targets are delivered in the next window.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.e2e.conftest import LOG_TAIL_CHARS, REPO_ROOT, PrefectServer, kill_process_group

#: Calls allowed per window, by the block and by the emulator.
BUDGET = 10
#: The window, in seconds (the real API's is 3600).
WINDOW = 5.0
#: Targets per flow run; two runs at once need 24 calls: over two windows' worth.
TARGETS_PER_RUN = 12
BLOCK = "quota-e2e"
RUN_TIMEOUT = 240.0  # seconds

RUN_FLOW = """
import asyncio, sys
from usegrant_flows.rotation.rotate_flow import rotate_targets
state = asyncio.run(rotate_targets(targets_file=sys.argv[1], return_state=True))
print("STATE", state.type.value, state.message)
sys.exit(0 if state.is_completed() else 1)
"""


@pytest.fixture
def limited_emulator(emulator: Any) -> Iterator[Any]:
    """The session emulator limited to BUDGET calls per WINDOW, counters zeroed."""
    emulator.set_faults(rate_limit=BUDGET, rate_window=WINDOW)
    emulator.reset_stats()
    try:
        yield emulator
    finally:
        emulator.reset()


def write_fleet(path: Path, emulator: Any, run: str) -> list[Path]:
    provider = emulator.seed.providers[0]
    clients = provider.clients
    sinks = []
    targets = []
    for i in range(TARGETS_PER_RUN):
        sink = path.parent / f"{run}-{i}.jwt"
        sinks.append(sink)
        targets.append(
            {
                "name": f"{run}-{i}",
                "provider_id": str(provider.id),
                "client_id": str(clients[i % len(clients)].id),
                "sinks": [{"type": "file", "path": str(sink)}],
            }
        )
    path.write_text(json.dumps({"defaults": {"credentials": BLOCK}, "targets": targets}))
    return sinks


def test_two_rotations_at_once_stay_within_the_shared_budget_and_get_no_429(
    prefect_server: PrefectServer,
    registered_blocks: None,
    limited_emulator: Any,
    tmp_path: Path,
) -> None:
    from usegrant_flows.credentials import UseGrantCredentials

    block = UseGrantCredentials(
        api_key=SecretStr(limited_emulator.api_key),
        base_url=limited_emulator.base_url,
        max_requests_per_hour=BUDGET,
        quota_window_seconds=WINDOW,
    )
    prefect_server.call(block.save, BLOCK, overwrite=True)
    applied = subprocess.run(
        [sys.executable, "-m", "usegrant_flows.cli", "quota", "apply", BLOCK],
        cwd=REPO_ROOT,
        env=prefect_server.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert applied.returncode == 0, applied.stderr[-LOG_TAIL_CHARS:]
    assert f"usegrant-quota-{BLOCK}: {BUDGET} requests per {WINDOW:g} s" in applied.stdout

    sinks: list[Path] = []
    runs = []
    started = time.monotonic()
    for run in ("run-a", "run-b"):
        fleet = tmp_path / f"{run}.json"
        sinks += write_fleet(fleet, limited_emulator, run)
        log = (tmp_path / f"{run}.log").open("w")
        runs.append(
            (
                subprocess.Popen(
                    [sys.executable, "-c", RUN_FLOW, str(fleet)],
                    cwd=REPO_ROOT,
                    env=prefect_server.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                ),
                tmp_path / f"{run}.log",
            )
        )
    for proc, log_path in runs:
        try:
            proc.wait(timeout=RUN_TIMEOUT)
        finally:
            kill_process_group(proc)
        assert proc.returncode == 0, log_path.read_text()[-LOG_TAIL_CHARS:]
    elapsed = time.monotonic() - started

    stats = limited_emulator.stats()
    calls = stats["token_calls"]
    print(
        f"\n{calls['total']} calls in {elapsed:.1f} s; per {WINDOW:g} s window: "
        f"{calls['per_window']}; most in any window: {calls['max_in_any_window']} "
        f"(budget {BUDGET})"
    )
    assert all(sink.stat().st_size > 0 for sink in sinks)  # every target delivered
    assert stats["tokens_issued"] == 2 * TARGETS_PER_RUN
    assert stats["by_status"].get("429", 0) == 0
    assert calls["max_in_any_window"] <= BUDGET
    assert len(calls["per_window"]) >= 2  # the fleet did not fit one window
