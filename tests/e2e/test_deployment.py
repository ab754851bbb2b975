"""prefect.yaml for real: deploy from the package, run on a process worker, fail cleanly.

Uses the shared harness of tests/e2e/conftest.py: a real `prefect server start`, the
emulator, our blocks registered and a credentials block pointing at the emulator.
`prefect --no-prompt deploy --all` runs in an empty folder holding only a copy of
prefect.yaml: the entrypoints are module paths of the installed package, there is no
pull step, and the worker runs in another empty folder. The fleet is a UseGrant Fleet
block saved with `usegrant-flows fleet push`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import CLI_TIMEOUT, REPO_ROOT, PrefectServer
from usegrant_flows.api.verify import verify_token
from usegrant_flows.sinks import FileTokenSink

POOL = "usegrant-process"


FLEET_BLOCK = "e2e-deployment-fleet"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty folder holding only a copy of prefect.yaml: nothing else to deploy from."""
    folder = tmp_path_factory.mktemp("project")
    shutil.copy(REPO_ROOT / "prefect.yaml", folder / "prefect.yaml")
    return folder


@pytest.fixture(scope="module")
def deployed(
    prefect_server: PrefectServer, registered_blocks: None, project: Path
) -> PrefectServer:
    prefect_server.run_cli("work-pool", "create", POOL, "--type", "process", "--overwrite")
    prefect_server.run_cli("--no-prompt", "deploy", "--all", cwd=project)
    return prefect_server


def push_fleet(server: PrefectServer, fleet: Path, name: str) -> str:
    """Save a fleet file as a fleet block with the usegrant-flows CLI; return its output."""
    cli = Path(sys.executable).with_name("usegrant-flows")
    result = subprocess.run(
        [str(cli), "fleet", "push", str(fleet), "--name", name, "--overwrite"],
        env=server.env,
        cwd=fleet.parent,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stderr


def fleet_ref(name: str) -> dict[str, Any]:
    """A deployment parameter naming a saved fleet block by its slug."""
    return {"$ref": {"block_document_slug": f"usegrant-fleet/{name}"}}


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
    server: PrefectServer, folder: Path, parameters: dict[str, Any]
) -> dict[str, Any]:
    dep = deployment(server, "rotate-tokens")
    flow_run = server.api(
        "POST", f"/deployments/{dep['id']}/create_flow_run", json={"parameters": parameters}
    )
    server.start_worker(POOL, cwd=folder)  # an empty folder: the flow comes from the package
    return server.wait_for_flow_run(flow_run["id"])


def test_rotate_tokens_is_deployed_from_the_package_with_its_schedule_and_fleet_block(
    deployed: PrefectServer,
) -> None:
    dep = deployment(deployed, "rotate-tokens")
    assert dep["work_pool_name"] == POOL
    assert dep["entrypoint"] == "usegrant_flows.rotation.rotate_flow.rotate_tokens"
    assert dep["parameters"] == {"fleet": fleet_ref("usegrant")}
    assert dep["enforce_parameter_schema"]
    [schedule] = dep["schedules"]
    assert schedule["schedule"]["interval"] == 600 and schedule["active"]
    assert not dep["pull_steps"]  # nothing to pull: the workers have the package
    host = deployed.api("GET", "/deployments/name/rotate-tokens/rotate-tokens-on-host")
    assert host["entrypoint"] == "usegrant_flows.rotation.rotate_flow.rotate_tokens_on_host"
    assert not host["pull_steps"]
    assert host["parameters"] == {} and host["schedules"] == []


def test_rotate_tokens_runs_one_at_a_time_across_workers(deployed: PrefectServer) -> None:
    dep = deployment(deployed, "rotate-tokens")
    assert dep["global_concurrency_limit"]["limit"] == 1
    assert dep["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    assert deployment(deployed, "mint-token")["global_concurrency_limit"] is None
    # The children of a rotation run on it: a limit there would make them wait for
    # the slot their own parent holds.
    host = deployed.api("GET", "/deployments/name/rotate-tokens/rotate-tokens-on-host")
    assert host["global_concurrency_limit"] is None


def test_mint_token_is_deployed_without_schedule(deployed: PrefectServer) -> None:
    dep = deployment(deployed, "mint-token")
    assert dep["schedules"] == [] and dep["work_pool_name"] == POOL
    assert dep["entrypoint"] == "usegrant_flows.rotation.mint_flow.mint_token"
    properties = dep["parameter_openapi_schema"]["properties"]
    assert set(properties) == {"fleet", "target", "expires_in"}
    assert properties["expires_in"]["maximum"] == 172800


def test_a_worker_runs_the_deployment_and_the_tokens_verify_then_a_rejected_key_changes_nothing(
    deployed: PrefectServer, emulator: Any, credentials_block: str, tmp_path: Path
) -> None:
    fleet = write_fleet(tmp_path, emulator, credentials_block)
    assert "3 targets" in push_fleet(deployed, fleet, FLEET_BLOCK)
    worker_folder = tmp_path / "worker"
    worker_folder.mkdir()
    flow_run = run_deployment(deployed, worker_folder, {"fleet": fleet_ref(FLEET_BLOCK)})
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
    push_fleet(deployed, bigger, f"{FLEET_BLOCK}-bigger")
    emulator.set_faults(fail_rate=1.0, fail_status=401)
    try:
        failed = run_deployment(
            deployed,
            worker_folder,
            {"fleet": fleet_ref(f"{FLEET_BLOCK}-bigger"), "force": True},
        )
    finally:
        emulator.reset()
    assert failed["state"]["type"] == "FAILED"
    assert failed["state"]["message"] == (
        "1 of 4 targets failed: e2e-new (UseGrant rejected the API key (401): "
        f"check the credentials block '{credentials_block}')"
    )
    assert {name: path.read_bytes() for name, path in files.items()} == before
    assert not (tmp_path / "tokens" / "e2e-new.jwt").exists()
