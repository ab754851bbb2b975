"""Issues 18 and 19: leases held while ``prefect server start`` restarts are not lost.

A server of its own (it is restarted; SQLite in its own ``PREFECT_HOME``). Two holders
claim targets of one fleet (``TargetLeases.claim``, what a rotation's batch does):

- the *dead* one is killed together with the server (a machine that rebooted): its
  claim (TTL 20 s) is never renewed nor deleted;
- the *surviving* one holds its claim through the restart and gives it back after.

Then a rotation of the whole fleet (``force``, so every target is due) must mint every
target: the survivor's at once, the dead holder's one TTL after its last write. Before
claims, a lease lived in the server's memory: after a restart its slot was never freed
and those targets were never rotated again.
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

from tests.e2e.conftest import (
    PREFECT_BIN,
    SERVER_START_TIMEOUT,
    PrefectServer,
    _server_env,
    _wait_until_up,
    free_port,
    kill_process_group,
)

BLOCK = "restart-credentials"
DEAD_TTL = 20.0  # seconds: the dead holder's claim TTL (its own, written in the claim)

HOLDER = """
import asyncio, sys, time
from usegrant_flows.rotation.lease import TargetLeases

async def main():
    names, ttl = sys.argv[1].split(","), float(sys.argv[2])
    leases = TargetLeases(timeout=30, enabled=True, ttl=ttl)
    async with leases.claim(names), leases.hold(names[0]):  # its first due target
        print("held", leases.api_calls, flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # until the test says so
    print("released", flush=True)
    await leases.aclose()

asyncio.run(main())
"""

RUN_FLOW = """
import asyncio, sys, time
from usegrant_flows.rotation.rotate_flow import rotate_targets
started = time.monotonic()
state = asyncio.run(
    rotate_targets(targets_file=sys.argv[1], force=True, concurrency=8, return_state=True)
)
print("STATE", state.type.value, f"{time.monotonic() - started:.1f}", state.message)
sys.exit(0 if state.is_completed() else 1)
"""


class Restartable:
    """``prefect server start`` on a fixed port and home, which the test can restart."""

    def __init__(self, home: Path) -> None:
        port = free_port()
        api_url = f"http://127.0.0.1:{port}/api"
        self.port = port
        self.server = PrefectServer(
            api_url=api_url,
            ui_url=f"http://127.0.0.1:{port}",
            home=home,
            env=_server_env(home, api_url),
            log_path=home / "server.log",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.server.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [PREFECT_BIN, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=str(self.server.home),
                env=self.server.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_until_up(self.proc, self.server, SERVER_START_TIMEOUT * 2)

    def kill(self) -> None:
        assert self.proc is not None
        kill_process_group(self.proc, grace=0)


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[Restartable]:
    home = tmp_path / "prefect-home"
    home.mkdir()
    server = Restartable(home)
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            kill_process_group(server.proc)


def identities(fleet: dict[str, Any], names: list[str]) -> str:
    by_name = {t["name"]: t for t in fleet["targets"]}
    provider = fleet["defaults"]["provider_id"]
    return ",".join(f"{n}:{provider}:{by_name[n]['client_id']}" for n in names)


def start_holder(
    server: PrefectServer, tmp_path: Path, names: str, ttl: float
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, names, str(ttl)],
        stdin=subprocess.PIPE,
        cwd=tmp_path,
        env={**server.env, "PREFECT_HOME": str(tmp_path / "holder-home")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("held"), line + proc.stdout.read()
    return proc


@pytest.mark.timeout(600)
def test_leases_held_through_a_server_restart_are_recovered_and_the_next_run_mints(
    restartable: Restartable, emulator: Any, tmp_path: Path
) -> None:
    from usegrant_flows.credentials import UseGrantCredentials
    from usegrant_flows.verify import verify_token

    server = restartable.server
    server.run_cli("block", "register", "-m", "usegrant_flows")
    block = UseGrantCredentials(
        api_key=SecretStr(emulator.api_key),
        base_url=emulator.base_url,
        max_requests_per_hour=100_000,
    )
    server.call(block.save, BLOCK, overwrite=True)
    provider = emulator.seed.providers[0]
    sinks = [tmp_path / "tokens" / f"r{i}.jwt" for i in range(20)]
    fleet = {
        "defaults": {"credentials": BLOCK, "provider_id": str(provider.id)},
        "targets": [
            {
                "name": f"r{i}",
                "client_id": str(provider.clients[i % len(provider.clients)].id),
                "sinks": [{"type": "file", "path": str(sink)}],
            }
            for i, sink in enumerate(sinks)
        ],
    }
    fleet_file = tmp_path / "fleet.json"
    fleet_file.write_text(json.dumps(fleet))

    dead = start_holder(server, tmp_path, identities(fleet, [f"r{i}" for i in range(10)]), DEAD_TTL)
    survivor = start_holder(
        server, tmp_path, identities(fleet, [f"r{i}" for i in range(10, 20)]), 60
    )
    restarted_at = time.monotonic()
    restartable.kill()  # the server goes down, and the dead holder's machine with it
    kill_process_group(dead, grace=0)
    restartable.start()
    out, _ = survivor.communicate("go\n", timeout=120)  # give its targets back now
    assert survivor.returncode == 0 and "released" in out, out

    emulator.reset_stats()
    after = subprocess.run(
        [sys.executable, "-c", RUN_FLOW, str(fleet_file)],
        cwd=tmp_path,
        env={**server.env, "PREFECT_HOME": str(tmp_path / "runner-home")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert after.returncode == 0, after.stdout[-3000:] + after.stderr[-3000:]
    assert emulator.stats()["tokens_issued"] == 20  # every target, the dead one's too
    for sink in sinks:
        verify_token(sink.read_text(), emulator.jwks_url)
    seconds = time.monotonic() - restarted_at
    print(f"restart to every target minted again: {seconds:.1f} s")  # for the report
    # Bounded: the dead claim's TTL after its last write, plus a server start and the
    # run itself, on a loaded machine. Forever, before claims.
    assert seconds < DEAD_TTL + 240, seconds
    claims = server.api(
        "POST", "/variables/filter", json={"variables": {"name": {"like_": "usegrant-claim-"}}}
    )
    assert claims == []  # the dead claim was deleted; nothing piles up
