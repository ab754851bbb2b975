"""The quota in rotate_targets: plan before minting, budget lines in the artifact, a stopped key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.objects import State

from usegrant_flows.credentials import UseGrantCredentials
from usegrant_flows.emulator import RunningEmulator
from usegrant_flows.rotation.rotate_flow import rotate_targets

pytestmark = pytest.mark.usefixtures("prefect_harness")


async def save_block(emu: RunningEmulator, name: str, **fields: Any) -> str:
    block = UseGrantCredentials(api_key=emu.api_key, base_url=emu.base_url, **fields)  # type: ignore[arg-type]
    await block.asave(name, overwrite=True)
    return name


def fleet(emu: RunningEmulator, folder: Path, credentials: str, n: int) -> list[dict[str, Any]]:
    provider = emu.seed.providers[0]
    clients = provider.clients
    return [
        {
            "name": f"q-{i}",
            "provider_id": str(provider.id),
            "client_id": str(clients[i % len(clients)].id),
            "credentials": credentials,
            "expires_in": 3600,
            "sinks": [{"type": "file", "path": str(folder / f"q-{i}.jwt")}],
        }
        for i in range(n)
    ]


async def artifact_description(state: State) -> str:
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    return "\n".join(a.description or "" for a in artifacts)


async def test_a_fleet_over_its_budget_is_refused_before_any_request(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    credentials = await save_block(emu, "quota-small", max_requests_per_hour=10)

    state = await rotate_targets(targets=fleet(emu, tmp_path, credentials, 20), return_state=True)

    assert state.is_failed()
    message = state.message or ""
    assert "mints/h on credentials 'quota-small' (20 targets)" in message
    assert "budget sustains 9/h" in message
    assert "raise expires_in (now 3600 s)" in message
    assert emu.stats()["token_calls"]["total"] == 0
    assert not any(tmp_path.iterdir())


async def test_the_rotation_artifact_shows_the_budget_used_and_left(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    credentials = await save_block(emu, "quota-roomy", max_requests_per_hour=1000)

    state = await rotate_targets(targets=fleet(emu, tmp_path, credentials, 4), return_state=True)

    assert state.is_completed(), state.message
    description = await artifact_description(state)
    assert "credentials 'quota-roomy': 4 targets need 6 mints/h of 891/h sustained" in description
    assert "885/h left" in description


async def test_a_rejected_key_stops_the_whole_rotation_after_one_request(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    credentials = await save_block(emu, "quota-rejected")
    emu.set_faults(fail_rate=1.0, fail_status=401)

    state = await rotate_targets(
        targets=fleet(emu, tmp_path, credentials, 12), concurrency=1, return_state=True
    )

    assert state.is_failed()
    assert emu.stats()["token_calls"]["total"] == 1
