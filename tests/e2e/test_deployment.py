"""prefect.yaml for real: deploy from a clean checkout, run on a process worker, fail cleanly.

Uses the shared harness of tests/e2e/conftest.py: a real `prefect server start`, the
emulator, our blocks registered and a credentials block pointing at the emulator. The
checkout is a fresh `git clone` of this repository (committed files only), so the test
proves `prefect --no-prompt deploy --all` works from a clean checkout and that the pull
step makes the flow runs work in it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import REPO_ROOT, PrefectServer
from usegrant_flows.api.verify import verify_token
from usegrant_flows.sinks import FileTokenSink

POOL = "usegrant-process"


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("checkout") / "usegrant-flows"
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(REPO_ROOT), str(target)],
        check=True,
        timeout=60,
    )
    return target


@pytest.fixture(scope="module")
def deployed(
    prefect_server: PrefectServer, registered_blocks: None, checkout: Path
) -> PrefectServer:
    prefect_server.run_cli("work-pool", "create", POOL, "--type", "process", "--overwrite")
    prefect_server.run_cli("--no-prompt", "deploy", "--all", cwd=checkout)
    return prefect_server


def deployment(server: PrefectServer, name: str) -> dict[str, Any]:
    result: dict[str, Any] = server.api("GET", f"/deployments/name/{name}/{name}")
    return result


def write_fleet(
    folder: Path, emulator: Any, credentials: str, *, extra: tuple[str, ...] = ()
) -> Path:
    provider = emulator.seed.providers[0]
    targets = [
        {
            "name": f"e2e-{client.name}",
            "client_id": str(client.id),
            "sinks": [{"type": "file", "path": f"tokens/{client.name}.jwt"}],
        }
        for client in provider.clients
    ]
    targets += [
        {
            "name": name,
            "client_id": str(provider.clients[0].id),
            "sinks": [{"type": "file", "path": f"tokens/{name}.jwt"}],
        }
        for name in extra
    ]
    fleet = {
        "defaults": {
            "credentials": credentials,
            "provider_id": str(provider.id),
            "expires_in": 1200,
        },
        "targets": targets,
    }
    path = folder / f"fleet-{len(targets)}.yaml"
    path.write_text(yaml.safe_dump(fleet))
    return path


def run_deployment(
    server: PrefectServer, checkout: Path, parameters: dict[str, Any]
) -> dict[str, Any]:
    dep = deployment(server, "rotate-tokens")
    flow_run = server.api(
        "POST", f"/deployments/{dep['id']}/create_flow_run", json={"parameters": parameters}
    )
    server.start_worker(POOL, env={"PYTHONPATH": str(checkout)}, cwd=checkout)
    return server.wait_for_flow_run(flow_run["id"])


def test_rotate_tokens_is_deployed_with_its_schedule_and_fleet_file(
    deployed: PrefectServer, checkout: Path
) -> None:
    dep = deployment(deployed, "rotate-tokens")
    assert dep["work_pool_name"] == POOL
    assert dep["parameters"] == {"targets_file": "flows/fleet.example.yaml"}
    [schedule] = dep["schedules"]
    assert schedule["schedule"]["interval"] == 600 and schedule["active"]
    assert dep["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(checkout)}}
    ]


def test_rotate_tokens_runs_one_at_a_time_across_workers(deployed: PrefectServer) -> None:
    dep = deployment(deployed, "rotate-tokens")
    assert dep["global_concurrency_limit"]["limit"] == 1
    assert dep["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    assert deployment(deployed, "mint-token")["global_concurrency_limit"] is None


def test_mint_token_is_deployed_without_schedule(deployed: PrefectServer) -> None:
    dep = deployment(deployed, "mint-token")
    assert dep["schedules"] == [] and dep["work_pool_name"] == POOL
    assert dep["parameter_openapi_schema"]["properties"]["expires_in"]["maximum"] == 172800


def test_a_worker_runs_the_deployment_and_the_tokens_verify_then_a_rejected_key_changes_nothing(
    deployed: PrefectServer, checkout: Path, emulator: Any, credentials_block: str, tmp_path: Path
) -> None:
    fleet = write_fleet(tmp_path, emulator, credentials_block)
    flow_run = run_deployment(deployed, checkout, {"targets_file": str(fleet)})
    assert flow_run["state"]["type"] == "COMPLETED", flow_run["state"]
    files = {
        client.name: tmp_path / "tokens" / f"{client.name}.jwt"
        for client in emulator.seed.providers[0].clients
    }
    for client in emulator.seed.providers[0].clients:
        token = FileTokenSink(path=files[client.name]).read()
        assert token is not None
        verify_token(token, emulator.jwks_url, audience=client.audience)
    before = {name: path.read_bytes() for name, path in files.items()}

    bigger = write_fleet(tmp_path, emulator, credentials_block, extra=["e2e-new"])
    emulator.set_faults(fail_rate=1.0, fail_status=401)
    try:
        failed = run_deployment(deployed, checkout, {"targets_file": str(bigger), "force": True})
    finally:
        emulator.reset()
    assert failed["state"]["type"] == "FAILED"
    assert failed["state"]["message"] == (
        "1 of 4 targets failed: e2e-new (UseGrant rejected the API key (401): "
        f"check the credentials block '{credentials_block}')"
    )
    assert {name: path.read_bytes() for name, path in files.items()} == before
    assert not (tmp_path / "tokens" / "e2e-new.jwt").exists()
