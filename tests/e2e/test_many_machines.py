"""Issue 14: rotations on many machines, with one Prefect server and two "hosts".

Each host is a process worker started from its own empty folder with its own
``PREFECT_HOME`` and ``HOME``, running the package installed from the built wheel
(``wheel_env``): host 1 polls the queues ``default`` and ``host-1``, host 2 polls
``host-2``. ``prefect.yaml`` is deployed from a third empty folder (module entrypoints,
no pull step) and the fleet is pushed with ``usegrant-flows fleet push``: target A
writes a file in host 1's folder (queue host-1), target B in host 2's (queue host-2),
target C writes a Secret block and has no queue (the parent run rotates it).

Where a target was rotated is proven by its lock file: the runner takes a per-target
file lock under ``$PREFECT_HOME/usegrant-flows/locks`` of the process that mints it,
and each host has its own ``PREFECT_HOME``.

Every wait is bounded; the workers run under ``timeout`` and are stopped at the end.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.conftest import REPO_ROOT, PrefectServer, kill_process_group, tail

POOL = "usegrant-process"  # prefect.yaml's pool
FLEET_BLOCK = "e2e-many-machines"
SECRET_BLOCK = "e2e-mm-target-c"
RUN_TIMEOUT = 480.0  # seconds for two rotations end to end on a loaded 2-core machine
WORKER_LIFETIME = 1500  # seconds: the workers stop by themselves after this at the latest
QUEUE_BOUND = 240.0  # queue_timeout_seconds of the rotations that must succeed
NO_WORKER_BOUND = 20.0  # queue_timeout_seconds of the rotation whose queue has no worker
ARTIFACT = "usegrant-rotation"  # the parent's table artifact
TIMELINE = REPO_ROOT / "test-outputs" / "many-machines-timeline.json"


@dataclass
class Host:
    """One simulated machine: its folder, its environment and its worker."""

    name: str
    folder: Path
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def lock_file(self, target: str) -> Path:
        """The lock file a rotation of ``target`` on this host leaves behind."""
        digest = hashlib.sha256(target.encode()).hexdigest()[:32]
        return Path(self.env["PREFECT_HOME"]) / "usegrant-flows" / "locks" / f"{digest}.lock"


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def make_host(base: Path, name: str, venv_env: dict[str, str], server: PrefectServer) -> Host:
    folder = base / name
    (folder / "work").mkdir(parents=True)
    env = {
        **venv_env,
        "HOME": str(folder),
        "PREFECT_HOME": str(folder / "prefect-home"),
        "PREFECT_API_URL": server.api_url,
        "PREFECT_WORKER_QUERY_SECONDS": "2",  # poll often: the test waits for pickups
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_CLI_PROMPT": "false",
        "PYTHONUNBUFFERED": "1",
    }
    return Host(name=name, folder=folder, env=env, log=folder / "worker.log")


def start_worker(host: Host, python: Path, queues: list[str]) -> None:
    args = ["timeout", "-s", "TERM", str(WORKER_LIFETIME), str(python), "-m", "prefect"]
    args += ["worker", "start", "--pool", POOL, "--type", "process"]
    args += ["--install-policy", "never", "--name", f"worker-{host.name}"]
    for queue in queues:
        args += ["--work-queue", queue]
    with host.log.open("wb") as log:
        host.process = subprocess.Popen(
            args,
            cwd=host.folder / "work",
            env=host.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture(scope="module")
def hosts(
    prefect_server: PrefectServer,
    registered_blocks: None,
    wheel_env: tuple[Path, dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Host]]:
    """Deploy prefect.yaml from an empty folder; start one worker per host."""
    venv, venv_env = wheel_env
    python = venv / "bin" / "python"
    base = tmp_path_factory.mktemp("machines")
    prefect_server.run_cli("work-pool", "create", POOL, "--type", "process", "--overwrite")
    deployer = make_host(base, "deployer", venv_env, prefect_server)
    shutil.copy(REPO_ROOT / "prefect.yaml", deployer.folder / "work" / "prefect.yaml")
    run(
        [str(python), "-m", "prefect", "--no-prompt", "deploy", "--all"],
        cwd=deployer.folder / "work",
        env=deployer.env,
    )
    pause_schedules(prefect_server)
    # A worker polling a queue that does not exist gets a 404 for all its queues (and
    # says nothing at INFO level): create them first, as docs/many-machines.md says.
    for queue in ("host-1", "host-2"):
        prefect_server.run_cli("work-queue", "create", queue, "--pool", POOL)
    machines = {
        "host-1": make_host(base, "host-1", venv_env, prefect_server),
        "host-2": make_host(base, "host-2", venv_env, prefect_server),
    }
    try:
        start_worker(machines["host-1"], python, ["default", "host-1"])
        start_worker(machines["host-2"], python, ["host-2"])
        yield machines
    finally:
        for host in machines.values():
            if host.process is not None:
                kill_process_group(host.process)


def pause_schedules(server: PrefectServer) -> None:
    """Stop the 10-minute schedule: only the runs this test starts may rotate."""
    dep = server.api("GET", "/deployments/name/rotate-tokens/rotate-tokens")
    for schedule in dep["schedules"]:
        server.api(
            "PATCH", f"/deployments/{dep['id']}/schedules/{schedule['id']}", json={"active": False}
        )
    runs = server.api(
        "POST",
        "/flow_runs/filter",
        json={
            "flow_runs": {
                "deployment_id": {"any_": [dep["id"]]},
                "state": {"type": {"any_": ["SCHEDULED"]}},
            }
        },
    )
    for flow_run in runs:
        server.api("DELETE", f"/flow_runs/{flow_run['id']}")


def write_fleet(folder: Path, emulator: Any, credentials: str, hosts: dict[str, Host]) -> Path:
    provider = emulator.seed.providers[0]
    a, b, c = provider.clients[:3]
    fleet = {
        "defaults": {"credentials": credentials, "provider_id": str(provider.id)},
        "targets": [
            {
                "name": "mm-a",
                "client_id": str(a.id),
                "work_queue": "host-1",
                "sinks": [{"type": "file", "path": str(hosts["host-1"].folder / "tokens/a.jwt")}],
            },
            {
                "name": "mm-b",
                "client_id": str(b.id),
                "work_queue": "host-2",
                "sinks": [{"type": "file", "path": str(hosts["host-2"].folder / "tokens/b.jwt")}],
            },
            {
                "name": "mm-c",
                "client_id": str(c.id),
                "sinks": [{"type": "secret-block", "secret_block_name": SECRET_BLOCK}],
            },
        ],
    }
    path = folder / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet))
    return path


def api(server: PrefectServer, method: str, path: str, **kwargs: Any) -> Any:
    """``server.api`` that retries a 503 (SQLite busy on a loaded machine) for up to 60 s."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return server.api(method, path, **kwargs)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 503 or time.monotonic() > deadline:
                raise
            time.sleep(1)


def start_rotation(server: PrefectServer, parameters: dict[str, Any]) -> str:
    dep = api(server, "GET", "/deployments/name/rotate-tokens/rotate-tokens")
    flow_run = api(
        server,
        "POST",
        f"/deployments/{dep['id']}/create_flow_run",
        json={"parameters": parameters},
    )
    return str(flow_run["id"])


def children_of(server: PrefectServer, parent_id: str) -> list[dict[str, Any]]:
    task_runs = server.api(
        "POST", "/task_runs/filter", json={"task_runs": {"flow_run_id": {"any_": [parent_id]}}}
    )
    ids = [t["id"] for t in task_runs]
    if not ids:
        return []
    runs: list[dict[str, Any]] = server.api(
        "POST",
        "/flow_runs/filter",
        json={"flow_runs": {"parent_task_run_id": {"any_": ids}}},
    )
    return runs


def artifact_rows(server: PrefectServer, flow_run_id: str, key: str) -> list[dict[str, Any]]:
    artifacts = server.api(
        "POST",
        "/artifacts/filter",
        json={
            "artifacts": {"key": {"any_": [key]}},
            "flow_runs": {"id": {"any_": [flow_run_id]}},
            "sort": "CREATED_DESC",
            "limit": 1,
        },
    )
    assert artifacts, f"flow run {flow_run_id} has no {key} artifact"
    data = artifacts[0]["data"]
    rows: list[dict[str, Any]] = json.loads(data) if isinstance(data, str) else data
    return rows


def wait_all(server: PrefectServer, ids: list[str], hosts: dict[str, Host]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + RUN_TIMEOUT
    done: list[dict[str, Any]] = []
    for flow_run_id in ids:
        try:
            done.append(
                server.wait_for_flow_run(flow_run_id, timeout=max(deadline - time.monotonic(), 1))
            )
        except AssertionError as exc:
            logs = "\n".join(f"--- {h.name}\n{tail(h.log, 3000)}" for h in hosts.values())
            raise AssertionError(f"{exc}\n{logs}") from None
    return done


def wait_for_lines(hosts: dict[str, Host], text: str, count: int) -> list[str]:
    """Wait up to 30 s for ``count`` worker log lines holding ``text``; return them."""
    deadline = time.monotonic() + 30
    while True:
        lines = [
            line.strip()
            for host in hosts.values()
            for line in host.log.read_text(errors="replace").splitlines()
            if text in line
        ]
        if len(lines) >= count or time.monotonic() > deadline:
            assert len(lines) == count, lines
            return lines
        time.sleep(1)


def timeline(server: PrefectServer, parents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for parent in parents:
        for run in [parent, *children_of(server, parent["id"])]:
            rows.append(
                {
                    "flow_run": run["name"],
                    "parent": parent["name"],
                    "deployment": "rotate-tokens" if run is parent else "rotate-tokens-on-host",
                    "work_queue": run["work_queue_name"],
                    "created": run["created"],
                    "start": run["start_time"],
                    "end": run["end_time"],
                    "state": run["state"]["name"],
                }
            )
    return rows


@pytest.mark.timeout(1200)
def test_each_token_lands_on_its_host_once_and_two_rotations_at_once_mint_nothing_twice(
    prefect_server: PrefectServer,
    hosts: dict[str, Host],
    emulator: Any,
    credentials_block: str,
    wheel_env: tuple[Path, dict[str, str]],
    tmp_path: Path,
) -> None:
    venv, _ = wheel_env
    fleet = write_fleet(tmp_path, emulator, credentials_block, hosts)
    push = [str(venv / "bin" / "usegrant-flows"), "fleet", "push", str(fleet)]
    out = run(
        [*push, "--name", FLEET_BLOCK, "--overwrite"],
        cwd=tmp_path,
        env=hosts["host-1"].env,
    )
    assert "3 targets (work queues: host-1, host-2)" in out
    emulator.reset_stats()
    parameters = {
        "fleet": {"$ref": {"block_document_slug": f"usegrant-fleet/{FLEET_BLOCK}"}},
        "queue_timeout_seconds": QUEUE_BOUND,
    }
    started = time.monotonic()
    ids = [start_rotation(prefect_server, parameters) for _ in range(2)]
    first, second = wait_all(prefect_server, ids, hosts)
    elapsed = time.monotonic() - started

    assert first["state"]["type"] == "COMPLETED", first["state"]
    assert second["state"]["type"] == "COMPLETED", second["state"]
    actions = [
        {row["target"]: row["action"] for row in artifact_rows(prefect_server, r["id"], ARTIFACT)}
        for r in (first, second)
    ]
    # The deployment's limit made the second wait (ENQUEUE); it found everything fresh.
    assert sorted([actions[0], actions[1]], key=lambda a: "minted" not in a.values()) == [
        {"mm-a": "minted", "mm-b": "minted", "mm-c": "minted"},
        {"mm-a": "fresh", "mm-b": "fresh", "mm-c": "fresh"},
    ]
    provider = emulator.seed.providers[0]
    by_client = emulator.stats()["by_client"]
    mints = {str(c.id): by_client.get(str(c.id), {}).get("total", 0) for c in provider.clients[:3]}
    assert list(mints.values()) == [1, 1, 1], mints

    host1, host2 = hosts["host-1"], hosts["host-2"]
    assert (host1.folder / "tokens" / "a.jwt").is_file()
    assert (host2.folder / "tokens" / "b.jwt").is_file()
    assert not (host1.folder / "tokens" / "b.jwt").exists()
    assert not (host2.folder / "tokens" / "a.jwt").exists()
    # Who rotated what: each host's own PREFECT_HOME holds the lock files it took.
    assert host1.lock_file("mm-a").exists() and not host2.lock_file("mm-a").exists()
    assert host2.lock_file("mm-b").exists() and not host1.lock_file("mm-b").exists()
    assert host1.lock_file("mm-c").exists()  # the parent ran on host 1 (queue default)

    for parent in (first, second):
        children = children_of(prefect_server, parent["id"])
        assert sorted(c["work_queue_name"] for c in children) == ["host-1", "host-2"]
        assert all(c["state"]["type"] == "COMPLETED" for c in children)
        for child in children:
            rows = artifact_rows(prefect_server, child["id"], "usegrant-rotation-part")
            expected = {"host-1": "mm-a", "host-2": "mm-b"}[child["work_queue_name"]]
            assert [row["target"] for row in rows] == [expected]
            assert all("eyJ" not in json.dumps(row) for row in rows)  # never a JWT

    # Steady state: a forced rotation leases each child's target with
    # three API calls (write and read the claim, delete it); each run logs what its leases cost.
    [forced] = wait_all(
        prefect_server, [start_rotation(prefect_server, {**parameters, "force": True})], hosts
    )
    assert forced["state"]["type"] == "COMPLETED", forced["state"]
    by_client = emulator.stats()["by_client"]
    assert [by_client[client]["total"] for client in mints] == [2, 2, 2]
    # Each run that minted its one target logs the same cost: the first rotation's three
    # runs (parent, two children) and the forced rotation's three. The second rotation's
    # runs found everything fresh ("0 taken").
    lease_lines = wait_for_lines(hosts, "target leases: 1 taken, 3 Prefect API calls", 6)
    TIMELINE.parent.mkdir(parents=True, exist_ok=True)
    TIMELINE.write_text(
        json.dumps(
            {
                "seconds": round(elapsed, 1),
                "mints": mints,
                "runs": timeline(prefect_server, [first, second, forced]),
                "steady_state_leases": lease_lines,
            },
            indent=2,
        )
    )


@pytest.mark.timeout(600)
def test_a_queue_without_a_worker_is_reported_within_the_bound(
    prefect_server: PrefectServer,
    hosts: dict[str, Host],
    emulator: Any,
    credentials_block: str,
    wheel_env: tuple[Path, dict[str, str]],
    tmp_path: Path,
) -> None:
    provider = emulator.seed.providers[0]
    target = {
        "name": "mm-nobody",
        "provider_id": str(provider.id),
        "client_id": str(provider.clients[0].id),
        "credentials": credentials_block,
        "work_queue": "host-nobody",
        "sinks": [{"type": "secret-block", "secret_block_name": "e2e-mm-nobody"}],
    }
    fleet = tmp_path / "nobody.yaml"
    fleet.write_text(json.dumps({"targets": [target]}))
    venv, _ = wheel_env
    push = [str(venv / "bin" / "usegrant-flows"), "fleet", "push", str(fleet)]
    run([*push, "--name", "mm-nobody", "--overwrite"], cwd=tmp_path, env=hosts["host-1"].env)
    flow_run_id = start_rotation(
        prefect_server,
        {
            "fleet": {"$ref": {"block_document_slug": "usegrant-fleet/mm-nobody"}},
            "queue_timeout_seconds": NO_WORKER_BOUND,
        },
    )
    [done] = wait_all(prefect_server, [flow_run_id], hosts)
    assert done["state"]["type"] == "FAILED"
    message = done["state"]["message"]
    assert message.startswith("1 of 1 targets failed: mm-nobody (no worker picked up work ")
    assert f"queue 'host-nobody' within {NO_WORKER_BOUND:g} s" in message
    run_seconds = time.mktime(
        time.strptime(done["end_time"][:19], "%Y-%m-%dT%H:%M:%S")
    ) - time.mktime(time.strptime(done["start_time"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert run_seconds < NO_WORKER_BOUND + 30, run_seconds
    [child] = children_of(prefect_server, flow_run_id)
    assert child["work_queue_name"] == "host-nobody"
    assert child["state"]["type"] == "CANCELLED"


#: The crashed holder's claim TTL, in seconds: short, so the test does not wait the
#: default 60 s; the claim carries its TTL, and staleness is judged by it.
CRASH_TTL = 15.0

CRASH_HOLDER = f"""
import asyncio, os, sys, time
from usegrant_flows.rotation.lease import TargetLeases

async def main():
    leases = TargetLeases(timeout=30, enabled=True, ttl={CRASH_TTL})
    async with leases.hold("mm-crash:p:c"):
        print("held", time.time(), flush=True)  # the claim was written just before
        os._exit(9)  # a worker killed mid-mint: no release, no clean-up

asyncio.run(main())
"""

CRASH_WAITER = """
import asyncio, time
from usegrant_flows.rotation.lease import TargetLeases

async def main():
    leases = TargetLeases(timeout=150, enabled=True)
    async with leases.hold("mm-crash:p:c"):
        print(time.time(), flush=True)
    await leases.aclose()

asyncio.run(main())
"""


@pytest.mark.timeout(400)
def test_a_crashed_holder_frees_its_target_when_the_lease_expires(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    python = Path(sys.executable)
    env = {**prefect_server.env, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    held = subprocess.run(
        [str(python), "-c", CRASH_HOLDER],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert held.returncode == 9 and "held" in held.stdout, held.stdout + held.stderr
    held_at = float(held.stdout.split()[-1])
    waited = subprocess.run(
        [str(python), "-c", CRASH_WAITER],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert waited.returncode == 0, waited.stdout + waited.stderr
    seconds = float(waited.stdout.split()[-1]) - held_at
    print(f"a crashed holder's target was free again {seconds:.1f} s after it held it")
    # Not before the claim's TTL ran out (the claim was written a moment before the
    # holder said so: 2 s of slack); no later than the TTL plus the waiter's polling
    # and slack for a loaded machine.
    assert CRASH_TTL - 2 < seconds < CRASH_TTL + 60, seconds
