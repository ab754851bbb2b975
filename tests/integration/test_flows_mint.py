"""mint_token, the ad-hoc flow of the UI: one target of a saved fleet, minted now.

Against the loopback emulator on the test harness. The run names a saved fleet block
and a target in it; the token goes to that target's sinks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.objects import State

from usegrant_flows.api.verify import verify_token
from usegrant_flows.credentials import UseGrantCredentials
from usegrant_flows.emulator import RunningEmulator
from usegrant_flows.rotation.fleet_block import UseGrantFleet
from usegrant_flows.rotation.mint_flow import mint_token
from usegrant_flows.sinks import FileTokenSink

pytestmark = pytest.mark.usefixtures("prefect_harness")

CREDENTIALS = "mint-emulator"
FLEET = "mint-fleet"


@pytest.fixture
async def credentials(emu: RunningEmulator) -> str:
    block = UseGrantCredentials(api_key=emu.api_key, base_url=emu.base_url)  # type: ignore[arg-type]
    await block.asave(CREDENTIALS, overwrite=True)
    return CREDENTIALS


def target(emu: RunningEmulator, name: str, sinks: list[Any], **fields: Any) -> dict[str, Any]:
    provider = emu.seed.providers[0]
    return {
        "name": name,
        "provider_id": provider.id,
        "client_id": provider.clients[0].id,
        "sinks": sinks,
        **fields,
    }


async def saved_fleet(*targets: dict[str, Any], credentials: str = CREDENTIALS) -> UseGrantFleet:
    fleet = UseGrantFleet.model_validate(
        {"defaults": {"credentials": credentials}, "targets": list(targets)}
    )
    await fleet.asave(FLEET, overwrite=True)
    return await UseGrantFleet.aload(FLEET)


async def run(fleet: UseGrantFleet, name: str, **parameters: Any) -> State:
    return await mint_token(fleet=fleet, target=name, **parameters, return_state=True)


async def markdown_of(state: State) -> str:
    async with get_client() as client:
        [artifact] = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    assert artifact.key == "usegrant-mint-token" and artifact.type == "markdown"
    return str(artifact.data)


async def test_mint_writes_a_verified_token_to_the_targets_sinks(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    path = tmp_path / "aws.jwt"
    sinks = [
        {"type": "file", "path": str(path)},
        {"type": "secret-block", "secret_block_name": "mint-aws-token"},
    ]
    fleet = await saved_fleet(target(emu, "aws", sinks, expires_in=900))
    state = await run(fleet, "aws", expires_in=600)
    assert state.is_completed(), state.message
    token = FileTokenSink(path=path).read()
    assert token is not None
    claims = verify_token(token, emu.jwks_url, audience=emu.seed.providers[0].clients[0].audience)
    assert claims["exp"] - claims["iat"] == 600
    secret = await Secret.aload("mint-aws-token")
    assert secret.get() == token.access_token.get_secret_value()


async def test_the_report_names_target_fingerprint_expiry_and_sinks(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    path = tmp_path / "aws.json"
    fleet = await saved_fleet(
        target(emu, "aws", [{"type": "file", "path": str(path), "format": "json"}])
    )
    text = await markdown_of(await run(fleet, "aws"))
    token = FileTokenSink(path=path, format="json").read()
    assert token is not None
    assert f"| fingerprint | `{token.fingerprint}` |" in text
    assert f"| written to | file {path} (json) |" in text
    assert token.expires_at.strftime("%Y-%m-%d %H:%M:%S UTC") in text
    assert token.access_token.get_secret_value() not in text


async def test_an_unknown_target_is_one_line_listing_the_fleets_names(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    fleet = await saved_fleet(
        target(emu, "aws", [{"type": "file", "path": str(tmp_path / "a.jwt")}]),
        target(emu, "gcp", [{"type": "file", "path": str(tmp_path / "g.jwt")}]),
    )
    state = await run(fleet, "azure")
    assert state.is_failed()
    assert state.message == "fleet 'mint-fleet' has no target 'azure'; its targets: aws, gcp"
    assert emu.stats()["token_calls"]["total"] == 0


async def test_a_fleet_given_inline_is_refused_before_any_request(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    inline = UseGrantFleet.model_validate(
        {"targets": [target(emu, "x", [{"type": "file", "path": str(tmp_path / "x.jwt")}])]}
    )
    state = await run(inline, "x")
    assert state.is_failed()
    assert "fleet must be a saved UseGrant Fleet block" in (state.message or "")
    assert emu.stats()["token_calls"]["total"] == 0
    assert not (tmp_path / "x.jwt").exists()


async def test_expires_in_may_only_shorten_the_targets_lifetime(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    fleet = await saved_fleet(
        target(emu, "aws", [{"type": "file", "path": str(tmp_path / "a.jwt")}], expires_in=900)
    )
    state = await run(fleet, "aws", expires_in=3600)
    assert state.is_failed()
    assert state.message == (
        "expires_in may only shorten target 'aws''s token lifetime: 1..899 seconds, "
        "or 0 for its own 900; got 3600"
    )
    assert emu.stats()["token_calls"]["total"] == 0


async def test_a_bad_key_fails_with_an_actionable_line(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    block = UseGrantCredentials(api_key="usegrant_wrong_key", base_url=emu.base_url)  # type: ignore[arg-type]
    await block.asave("mint-wrong-key", overwrite=True)
    path = tmp_path / "aws.jwt"
    fleet = await saved_fleet(
        target(emu, "aws", [{"type": "file", "path": str(path)}]), credentials="mint-wrong-key"
    )
    state = await run(fleet, "aws")
    assert state.is_failed()
    assert state.message == (
        "token for target aws not delivered: UseGrant rejected the API key "
        "(401): check the credentials block 'mint-wrong-key'"
    )
    assert not path.exists()
    assert "**What went wrong** (AuthenticationError)" in await markdown_of(state)


async def test_a_target_bound_to_a_work_queue_is_left_to_that_queue(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    fleet = await saved_fleet(
        target(emu, "host", [{"type": "file", "path": str(tmp_path / "h.jwt")}], work_queue="h1")
    )
    state = await run(fleet, "host")
    assert state.is_failed()
    assert "rotated on work queue 'h1'" in (state.message or "")
    assert emu.stats()["token_calls"]["total"] == 0


async def test_the_result_holds_no_token(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    path = tmp_path / "aws.jwt"
    fleet = await saved_fleet(target(emu, "aws", [{"type": "file", "path": str(path)}]))
    state = await run(fleet, "aws")
    result = await state.result()
    token = FileTokenSink(path=path).read()
    assert token is not None
    dumped = json.dumps(result.model_dump(mode="json"))
    assert token.access_token.get_secret_value() not in dumped
    assert result.fingerprint == token.fingerprint
