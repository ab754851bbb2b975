"""rotate_targets end to end on the test harness's API, against the loopback emulator."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.client.schemas.objects import State

from usegrant_flows.api.models import AccessToken
from usegrant_flows.api.verify import verify_token
from usegrant_flows.credentials import UseGrantCredentials
from usegrant_flows.emulator import RunningEmulator
from usegrant_flows.rotation.rotate_flow import rotate_targets
from usegrant_flows.sinks import FileTokenSink

pytestmark = pytest.mark.usefixtures("prefect_harness")

CREDENTIALS = "rotation-emulator"
UNKNOWN_CLIENT = "20000000-0000-4000-8000-0000000000ff"


@pytest.fixture
async def credentials(emu: RunningEmulator) -> str:
    block = UseGrantCredentials(api_key=emu.api_key, base_url=emu.base_url)  # type: ignore[arg-type]
    await block.asave(CREDENTIALS, overwrite=True)
    return CREDENTIALS


def fleet(emu: RunningEmulator, folder: Path, credentials: str) -> list[dict[str, Any]]:
    provider = emu.seed.providers[0]
    return [
        {
            "name": f"t-{client.name}",
            "provider_id": str(provider.id),
            "client_id": str(client.id),
            "credentials": credentials,
            "expires_in": 900,
            "sinks": [{"type": "file", "path": str(folder / f"{client.name}.jwt")}],
        }
        for client in provider.clients
    ]


def read_file_token(path: Path) -> AccessToken:
    token = FileTokenSink(path=path).read()
    assert token is not None
    return token


def token_calls(emu: RunningEmulator) -> int:
    return int(emu.stats()["token_calls"]["total"])


async def run(**parameters: Any) -> State:
    return await rotate_targets(**parameters, return_state=True)


async def test_every_target_gets_a_token_that_verifies_against_jwks(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    state = await run(targets=fleet(emu, tmp_path, credentials))
    assert state.is_completed(), state.message
    for client in emu.seed.providers[0].clients:
        path = tmp_path / f"{client.name}.jwt"
        claims = verify_token(read_file_token(path), emu.jwks_url, audience=client.audience)
        assert claims["exp"] - claims["iat"] == 900
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_an_immediate_second_run_skips_every_target_with_zero_api_calls(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    targets = fleet(emu, tmp_path, credentials)
    await run(targets=targets)
    emu.reset_stats()
    state = await run(targets=targets)
    assert {r.action.value for r in await state.result()} == {"fresh"}
    assert token_calls(emu) == 0


async def test_a_failed_target_fails_the_run_by_name_and_the_others_are_delivered(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    targets = fleet(emu, tmp_path, credentials)
    bad = {
        **targets[0],
        "name": "unknown-client",
        "client_id": UNKNOWN_CLIENT,
        "sinks": [{"type": "file", "path": str(tmp_path / "unknown.jwt")}],
    }
    state = await run(targets=[*targets, bad])
    assert state.is_failed()
    assert state.message is not None
    assert state.message.startswith("1 of 4 targets failed: unknown-client (UseGrant does not know")
    assert UNKNOWN_CLIENT in state.message and "Traceback" not in state.message
    for client in emu.seed.providers[0].clients:
        verify_token(read_file_token(tmp_path / f"{client.name}.jwt"), emu.jwks_url)
    assert not (tmp_path / "unknown.jwt").exists()


async def test_a_rejected_key_leaves_every_token_file_byte_for_byte(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    targets = fleet(emu, tmp_path, credentials)
    await run(targets=targets)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    emu.set_faults(fail_rate=1.0, fail_status=401)
    state = await run(targets=targets, force=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    results = await state.result()
    assert {r.action.value for r in results} == {"failed_but_valid"}
    # Completed, but named apart from a clean run in the UI, with the targets named.
    assert (state.is_completed(), state.name) == (True, "Degraded")
    assert state.message is not None and state.message.startswith("3 of 3 targets failed_but_valid")
    assert results[0].reason == (
        f"UseGrant rejected the API key (401): check the credentials block '{credentials}'"
    )


async def test_a_rejected_key_with_no_token_to_fall_back_on_fails_the_run(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    emu.set_faults(fail_rate=1.0, fail_status=401)
    state = await run(targets=fleet(emu, tmp_path, credentials)[:1])
    assert state.is_failed()
    assert state.message == (
        "1 of 1 targets failed: t-aws (UseGrant rejected the API key (401): "
        f"check the credentials block '{credentials}')"
    )
    assert list(tmp_path.iterdir()) == []


async def test_a_missing_credentials_block_is_named(emu: RunningEmulator, tmp_path: Path) -> None:
    state = await run(targets=fleet(emu, tmp_path, "no-such-block")[:1])
    assert state.is_failed()
    assert "credentials block 'no-such-block' not found" in (state.message or "")
    assert token_calls(emu) == 0


async def test_targets_come_from_a_yaml_fleet_file(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    provider = emu.seed.providers[0]
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(
        f"defaults:\n  credentials: {credentials}\n  provider_id: {provider.id}\n"
        f"targets:\n  - name: aws\n    client_id: {provider.clients[0].id}\n"
        "    sinks: [{type: file, path: tokens/aws.jwt, format: json}]\n"
    )
    state = await run(targets_file=str(fleet_file))
    assert state.is_completed(), state.message
    verify_token(read_file_token_json(tmp_path / "tokens" / "aws.jwt"), emu.jwks_url)


def read_file_token_json(path: Path) -> AccessToken:
    token = FileTokenSink(path=path, format="json").read()
    assert token is not None
    return token


async def test_no_targets_fails_the_run_with_a_clear_message_and_artifact() -> None:
    state = await run()
    assert state.is_failed()
    assert state.message == "no targets: give `targets`, `targets_file` or `fleet_block`"
    async with get_client() as client:
        [artifact] = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    assert "no targets: give `targets`, `targets_file` or `fleet_block`" in str(artifact.data)


async def test_a_saved_sink_block_is_named_by_slug_and_name(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    await FileTokenSink(path=tmp_path / "saved.jwt").asave("rotation-saved-sink", overwrite=True)
    slug = FileTokenSink.get_block_type_slug()
    target = {**fleet(emu, tmp_path, credentials)[0], "sinks": [f"{slug}/rotation-saved-sink"]}
    state = await run(targets=[target])
    assert state.is_completed(), state.message
    verify_token(read_file_token(tmp_path / "saved.jwt"), emu.jwks_url)


async def test_a_block_that_is_not_a_sink_is_refused_before_any_mint(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    target = {
        **fleet(emu, tmp_path, credentials)[0],
        "sinks": [f"usegrant-credentials/{credentials}"],
    }
    state = await run(targets=[target])
    assert state.is_failed()
    assert f"block 'usegrant-credentials/{credentials}' is not a token sink" in (
        state.message or ""
    )
    assert token_calls(emu) == 0


async def test_targets_are_batched_into_few_tasks(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    targets = [
        {
            **fleet(emu, tmp_path, credentials)[0],
            "name": f"t{i}",
            "sinks": [{"type": "file", "path": str(tmp_path / f"t{i}.jwt")}],
        }
        for i in range(7)
    ]
    state = await run(targets=targets, batch_size=3)
    assert state.is_completed(), state.message
    # Task runs reach the API through Prefect's event pipeline, a moment after the
    # flow returns: poll (bounded) until all three are there.
    names: list[str] = []
    async with get_client() as client:
        for _ in range(100):
            task_runs = await client.read_task_runs(
                task_run_filter=TaskRunFilter(
                    flow_run_id=TaskRunFilterFlowRunId(any_=[state.state_details.flow_run_id])
                )
            )
            names = sorted(t.name for t in task_runs)
            if len(names) >= 3:
                break
            await asyncio.sleep(0.1)
    assert names == [
        "rotate 1-3 of 7",
        "rotate 4-6 of 7",
        "rotate 7-7 of 7",
    ]


async def test_the_table_artifact_has_a_row_per_target_and_no_token(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    state = await run(targets=fleet(emu, tmp_path, credentials))
    flow_run_id = state.state_details.flow_run_id
    async with get_client() as client:
        [artifact] = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    assert artifact.key == "usegrant-rotation" and artifact.type == "table"
    rows = artifact.data if isinstance(artifact.data, list) else json.loads(str(artifact.data))
    assert sorted(row["target"] for row in rows) == ["t-aws", "t-azure", "t-gcp"]
    assert {row["action"] for row in rows} == {"minted"}
    for client_ in emu.seed.providers[0].clients:
        token = read_file_token(tmp_path / f"{client_.name}.jwt")
        secret = token.access_token.get_secret_value()
        assert secret not in str(artifact.data) and secret.split(".")[1] not in str(artifact.data)
        assert token.fingerprint in str(artifact.data)


async def test_overlapping_runs_mint_each_target_once(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    emu.set_faults(latency_ms=300)
    targets = fleet(emu, tmp_path, credentials)
    first, second = await asyncio.gather(run(targets=targets), run(targets=targets))
    assert first.is_completed() and second.is_completed()
    assert emu.stats()["tokens_issued"] == len(targets)
    actions = sorted(r.action.value for r in [*await first.result(), *await second.result()])
    assert actions == ["fresh"] * 3 + ["minted"] * 3


async def test_the_python_flow_run_is_named_rotate_targets(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    state = await run(targets=fleet(emu, tmp_path, credentials)[:1])
    async with get_client() as client:
        [flow_run] = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
        flow = await client.read_flow(flow_run.flow_id)
    assert flow.name == "rotate-targets" and isinstance(flow_run.id, UUID)


# --- verification before push, against the real emulator -----------------------------


def fetches(emu: RunningEmulator, route: str) -> int:
    return int(emu.stats()["by_route"].get(route, 0))


async def test_full_verification_discovers_the_emulators_keys_once_per_run(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    before = (
        fetches(emu, "GET /.well-known/openid-configuration"),
        fetches(emu, "GET /.well-known/jwks"),
    )
    state = await run(targets=fleet(emu, tmp_path, credentials), force=True)
    assert state.is_completed(), state.message
    results = await state.result()
    assert {r.action.value for r in results} == {"minted"}
    # Three targets of one issuer: one discovery, one JWKS fetch (the process's cache).
    assert fetches(emu, "GET /.well-known/openid-configuration") == before[0] + 1
    assert fetches(emu, "GET /.well-known/jwks") == before[1] + 1


async def test_a_jwks_url_without_the_signing_key_keeps_the_old_tokens(
    emu: RunningEmulator, credentials: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from usegrant_flows.emulator import run_emulator
    from usegrant_flows.rotation import lease

    # The targets must verify at once for their unknown-kid refetches to collapse into
    # one; per-target leases (tested elsewhere) would spread them over a slow server.
    monkeypatch.setattr(lease, "prefect_api_configured", lambda: False)

    targets = fleet(emu, tmp_path, credentials)
    assert (await run(targets=targets)).is_completed()
    before = {t["name"]: Path(t["sinks"][0]["path"]).read_bytes() for t in targets}
    emu.reset_stats()
    with run_emulator() as stranger:  # another issuer: its JWKS lacks our tokens' kid
        block = UseGrantCredentials(
            api_key=emu.api_key,  # type: ignore[arg-type]
            base_url=emu.base_url,
            jwks_url=stranger.jwks_url,
        )
        await block.asave("rotation-foreign-jwks", overwrite=True)
        pinned = [{**t, "credentials": "rotation-foreign-jwks"} for t in targets]
        state = await run(targets=pinned, force=True)
        assert fetches(emu, "GET /.well-known/jwks") == 0
        refetched = int(stranger.stats()["by_route"]["GET /.well-known/jwks"])
    results = await state.result()
    assert {r.action.value for r in results} == {"failed_but_valid"}
    assert all("is not in the JWKS" in (r.reason or "") for r in results)
    assert refetched == 2  # the first fetch, then one refetch for the unknown kid
    after = {t["name"]: Path(t["sinks"][0]["path"]).read_bytes() for t in targets}
    assert after == before  # nothing was written


async def test_claims_mode_needs_no_key_fetch(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    targets = [{**t, "verify": "claims"} for t in fleet(emu, tmp_path, credentials)]
    state = await run(targets=targets)
    assert state.is_completed(), state.message
    assert fetches(emu, "GET /.well-known/jwks") == 0


async def test_a_fifo_at_a_token_path_fails_the_target_without_a_request(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    import os

    [first, *_] = fleet(emu, tmp_path, credentials)
    os.mkfifo(first["sinks"][0]["path"])
    state = await asyncio.wait_for(run(targets=[first]), 120)  # a hang fails, never waits
    assert state.is_failed()
    assert "named pipe (FIFO)" in (state.message or "")
    assert token_calls(emu) == 0


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("expired_rate", "expires at"),
        ("bad_signature_rate", "signature does not verify"),
        ("alg_none_rate", "algorithm 'none' is refused"),
        ("oversize_rate", ""),  # refused by the client's body cap or by the 16 KiB check
        ("nested_rate", ""),
        ("garbage_rate", ""),
    ],
)
async def test_a_hostile_emulator_token_is_written_nowhere(
    emu: RunningEmulator, credentials: str, tmp_path: Path, fault: str, reason: str
) -> None:
    [first, *_] = fleet(emu, tmp_path, credentials)
    assert (await run(targets=[first])).is_completed()
    path = Path(first["sinks"][0]["path"])
    before = path.read_bytes()
    emu.set_faults(**{fault: 1.0})
    state = await run(targets=[first], force=True)
    [result] = await state.result()
    assert result.action.value == "failed_but_valid"
    assert reason in (result.reason or "")
    assert path.read_bytes() == before


async def test_claims_mode_accepts_the_emulators_rogue_signature_but_not_its_expired_token(
    emu: RunningEmulator, credentials: str, tmp_path: Path
) -> None:
    [first, *_] = fleet(emu, tmp_path, credentials)
    target = {**first, "verify": "claims"}
    emu.set_faults(bad_signature_rate=1.0)
    [signed_by_a_rogue] = await (await run(targets=[target], force=True)).result()
    assert signed_by_a_rogue.action.value == "minted"
    emu.set_faults(bad_signature_rate=0.0, expired_rate=1.0)
    [expired] = await (await run(targets=[target], force=True)).result()
    assert expired.action.value == "failed_but_valid"
