"""Two workers with their own Prefect homes, one Prefect server, one fleet: each target once.

The per-target file lock lives in a Prefect home, so two "hosts" (two processes, each
with its own ``PREFECT_HOME``) never see each other's locks. Started at the same moment
on the same fleet, outside any deployment (so no deployment concurrency limit applies),
they must still mint every target once: the per-target lease held in the Prefect server
is what keeps them apart. The emulator's latency widens the window in which both runs
would mint the same target.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.e2e.conftest import LOG_TAIL_CHARS, PrefectServer, kill_process_group

TARGETS = 30
BLOCK = "two-homes"
RUN_TIMEOUT = 300.0  # seconds

RUN_FLOW = """
import asyncio, sys
from usegrant_flows.rotation.rotate_flow import rotate_targets
state = asyncio.run(rotate_targets(targets_file=sys.argv[1], concurrency=8, return_state=True))
print("STATE", state.type.value, state.message)
sys.exit(0 if state.is_completed() else 1)
"""


@pytest.fixture
def slow_emulator(emulator: Any) -> Iterator[Any]:
    """The session emulator answering after 300 ms, counters zeroed."""
    emulator.set_faults(latency_ms=300)
    emulator.reset_stats()
    try:
        yield emulator
    finally:
        emulator.reset()


def write_fleet(path: Path, emulator: Any) -> list[Path]:
    provider = emulator.seed.providers[0]
    sinks = [path.parent / "tokens" / f"t{i}.jwt" for i in range(TARGETS)]
    targets = [
        {
            "name": f"t{i}",
            "provider_id": str(provider.id),
            "client_id": str(provider.clients[i % len(provider.clients)].id),
            "sinks": [{"type": "file", "path": str(sink)}],
        }
        for i, sink in enumerate(sinks)
    ]
    path.write_text(json.dumps({"defaults": {"credentials": BLOCK}, "targets": targets}))
    return sinks


def test_two_homes_rotating_one_fleet_at_once_mint_each_target_once(
    prefect_server: PrefectServer,
    registered_blocks: None,
    slow_emulator: Any,
    tmp_path: Path,
) -> None:
    from usegrant_flows.credentials import UseGrantCredentials
    from usegrant_flows.verify import verify_token

    block = UseGrantCredentials(
        api_key=SecretStr(slow_emulator.api_key),
        base_url=slow_emulator.base_url,
        max_requests_per_hour=100_000,
    )
    prefect_server.call(block.save, BLOCK, overwrite=True)
    fleet = tmp_path / "fleet.json"
    sinks = write_fleet(fleet, slow_emulator)

    runs = []
    for host in ("host-1", "host-2"):
        home = tmp_path / host / "prefect-home"
        home.mkdir(parents=True)
        log = tmp_path / f"{host}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-c", RUN_FLOW, str(fleet)],
                cwd=tmp_path / host,
                env={**prefect_server.env, "PREFECT_HOME": str(home)},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        runs.append((proc, log))
    for proc, log in runs:
        try:
            proc.wait(timeout=RUN_TIMEOUT)
        finally:
            kill_process_group(proc)
        assert proc.returncode == 0, log.read_text()[-LOG_TAIL_CHARS:]

    stats = slow_emulator.stats()
    assert stats["tokens_issued"] == TARGETS  # not one target minted twice
    for sink in sinks:
        verify_token(sink.read_text(), slow_emulator.jwks_url)
    # Each home kept its own file locks: the server's lease is what kept them apart.
    locks = [list((tmp_path / h / "prefect-home").rglob("*.lock")) for h in ("host-1", "host-2")]
    assert all(locks), "each run took its per-target file locks in its own home"
