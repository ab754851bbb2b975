"""mint_token, the ad-hoc flow of the UI, against the loopback emulator on the test harness."""

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
from usegrant_flows.rotation.mint_flow import mint_token
from usegrant_flows.sinks import FileTokenSink

pytestmark = pytest.mark.usefixtures("prefect_harness")

CREDENTIALS = "mint-emulator"


@pytest.fixture
async def credentials(emu: RunningEmulator) -> str:
    block = UseGrantCredentials(api_key=emu.api_key, base_url=emu.base_url)  # type: ignore[arg-type]
    await block.asave(CREDENTIALS, overwrite=True)
    return CREDENTIALS


def ids(emu: RunningEmulator) -> dict[str, Any]:
    provider = emu.seed.providers[0]
    return {"provider_id": provider.id, "client_id": provider.clients[0].id}


async def run(**parameters: Any) -> State:
    return await mint_token(**parameters, return_state=True)


async def markdown_of(state: State) -> str:
    async with get_client() as client:
        [artifact] = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    assert artifact.key == "usegrant-mint-token" and artifact.type == "markdown"
    return str(artifact.data)


async def test_mint_writes_a_verified_token_to_a_file_and_a_secret_block(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    path = tmp_path / "aws.jwt"
    state = await run(
        **ids(emu),
        expires_in=600,
        credentials_block=credentials,
        file_path=str(path),
        secret_block_name="mint-aws-token",
    )
    assert state.is_completed(), state.message
    token = FileTokenSink(path=path).read()
    assert token is not None
    claims = verify_token(token, emu.jwks_url, audience=emu.seed.providers[0].clients[0].audience)
    assert claims["exp"] - claims["iat"] == 600
    secret = await Secret.aload("mint-aws-token")
    assert secret.get() == token.access_token.get_secret_value()


async def test_the_report_names_client_fingerprint_expiry_and_sinks(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    path = tmp_path / "aws.json"
    state = await run(
        **ids(emu), credentials_block=credentials, file_path=str(path), file_format="json"
    )
    text = await markdown_of(state)
    token = FileTokenSink(path=path, format="json").read()
    assert token is not None
    assert f"| fingerprint | `{token.fingerprint}` |" in text
    assert f"`{ids(emu)['client_id']}`: minted" in text
    assert f"| written to | file {path} (json) |" in text
    assert token.expires_at.strftime("%Y-%m-%d %H:%M:%S UTC") in text
    assert token.access_token.get_secret_value() not in text


async def test_token_options_reach_the_token(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    path = tmp_path / "aws.jwt"
    await run(
        **ids(emu),
        credentials_block=credentials,
        file_path=str(path),
        use_jwt_type=True,
        audience_as_array=True,
    )
    token = FileTokenSink(path=path).read()
    assert token is not None
    assert token.header()["typ"] == "jwt" and isinstance(token.claims()["aud"], list)


async def test_a_bad_key_fails_with_an_actionable_line_and_keeps_the_file(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    block = UseGrantCredentials(api_key="usegrant_wrong_key", base_url=emu.base_url)  # type: ignore[arg-type]
    await block.asave("mint-wrong-key", overwrite=True)
    path = tmp_path / "aws.jwt"
    state = await run(**ids(emu), credentials_block="mint-wrong-key", file_path=str(path))
    assert state.is_failed()
    assert state.message == (
        f"token for client {ids(emu)['client_id']} not delivered: UseGrant rejected the API key "
        "(401): check the credentials block 'mint-wrong-key'"
    )
    assert not path.exists()
    assert "**What went wrong** (AuthenticationError)" in await markdown_of(state)


async def test_an_unknown_client_is_named_in_the_failure(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    unknown = "20000000-0000-4000-8000-0000000000ff"
    state = await run(
        provider_id=ids(emu)["provider_id"],
        client_id=unknown,
        credentials_block=credentials,
        file_path=str(tmp_path / "x.jwt"),
    )
    assert state.is_failed()
    assert unknown in (state.message or "") and "404" in (state.message or "")


async def test_rate_limit_says_until_when(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    emu.set_faults(rate_limit=1, rate_window=3600)
    await run(**ids(emu), credentials_block=credentials, file_path=str(tmp_path / "a.jwt"))
    state = await run(**ids(emu), credentials_block=credentials, file_path=str(tmp_path / "b.jwt"))
    assert state.is_failed()
    assert "rate limited until " in (state.message or "") and "(429)" in (state.message or "")


async def test_without_a_sink_nothing_is_minted(emu: RunningEmulator, credentials: str) -> None:
    state = await run(**ids(emu), credentials_block=credentials)
    assert state.is_failed()
    assert state.message == "no sink: give file_path, secret_block_name or webhook_block_name"
    assert emu.stats()["token_calls"]["total"] == 0


async def test_an_expiry_over_48_hours_is_refused_before_any_request(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    state = await run(
        **ids(emu),
        expires_in=172801,
        credentials_block=credentials,
        file_path=str(tmp_path / "a.jwt"),
    )
    assert state.is_failed()
    assert "expires_in" in (state.message or "") and "172800" in (state.message or "")
    assert emu.stats()["token_calls"]["total"] == 0


async def test_the_result_holds_no_token(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    path = tmp_path / "aws.jwt"
    state = await run(**ids(emu), credentials_block=credentials, file_path=str(path))
    result = await state.result()
    token = FileTokenSink(path=path).read()
    assert token is not None
    dumped = json.dumps(result.model_dump(mode="json"))
    assert token.access_token.get_secret_value() not in dumped
    assert result.fingerprint == token.fingerprint
