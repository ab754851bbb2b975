"""create_access_token / acreate_access_token in real flows against the emulator."""

from __future__ import annotations

import logging
import time
from typing import Any
from uuid import UUID

import pytest
from prefect import flow
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.states import Failed

from usegrant_flows.api.errors import (
    AuthenticationError,
    ConfigurationError,
    ServerError,
    UseGrantConnectionError,
)
from usegrant_flows.api.models import AccessToken
from usegrant_flows.credentials import UseGrantCredentials
from usegrant_flows.emulator import RunningEmulator
from usegrant_flows.tasks import (
    TASK_RETRIES,
    acreate_access_token,
    create_access_token,
    retry_if_transient,
)

pytestmark = pytest.mark.usefixtures("prefect_harness")

# No waiting between task runs in tests; the client's waits are zeroed by set_testing.
sync_task = create_access_token.with_options(retry_delay_seconds=0)
async_task = acreate_access_token.with_options(retry_delay_seconds=0)


def _ids(emu: RunningEmulator) -> dict[str, str]:
    provider = emu.seed.providers[0]
    return {"provider_id": str(provider.id), "client_id": str(provider.clients[0].id)}


def _credentials(emu: RunningEmulator, api_key: str | None = None) -> UseGrantCredentials:
    return UseGrantCredentials(api_key=api_key or emu.api_key, base_url=emu.base_url)  # type: ignore[arg-type]


def _token_calls(emu: RunningEmulator) -> int:
    return int(emu.stats()["token_calls"]["total"])


def _run_count(task_run_id: UUID) -> int:
    """The task run's run count once the API has its final state.

    Prefect 3 records task runs from events, written a moment after the flow returns:
    poll (bounded) instead of reading once.
    """
    with get_client(sync_client=True) as client:
        for _ in range(100):
            try:
                task_run = client.read_task_run(task_run_id)
            except ObjectNotFound:
                task_run = None
            if task_run is not None and task_run.state is not None and task_run.state.is_final():
                return task_run.run_count
            time.sleep(0.1)
    raise AssertionError(f"task run {task_run_id} has no final state after 10 s")


def _failed_sync_run(emu: RunningEmulator, api_key: str | None = None, **kwargs: Any) -> UUID:
    credentials = _credentials(emu, api_key)

    @flow
    def mint() -> UUID:
        state = sync_task(credentials, **kwargs, return_state=True)
        assert state.is_failed()
        return state.state_details.task_run_id

    return mint()


# both forms


def test_sync_task_in_a_sync_flow_returns_a_token(emu: RunningEmulator) -> None:
    @flow
    def mint() -> AccessToken:
        return create_access_token(_credentials(emu), **_ids(emu), expires_in=600)

    token = mint()
    assert isinstance(token, AccessToken)
    assert token.claims()["exp"] - token.claims()["iat"] == 600
    assert _token_calls(emu) == 1


async def test_async_task_in_an_async_flow_returns_a_token(emu: RunningEmulator) -> None:
    @flow
    async def mint() -> AccessToken:
        return await acreate_access_token(_credentials(emu), **_ids(emu), expires_in=900)

    token = await mint()
    assert isinstance(token, AccessToken)
    assert token.claims()["exp"] - token.claims()["iat"] == 900


def test_token_options_reach_the_api(emu: RunningEmulator) -> None:
    @flow
    def mint() -> AccessToken:
        return create_access_token(
            _credentials(emu), **_ids(emu), use_jwt_type=True, audience_as_array=True
        )

    token = mint()
    assert token.header()["typ"] == "jwt"
    assert isinstance(token.claims()["aud"], list)


def test_without_credentials_the_settings_are_used(
    emu: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USEGRANT_API_KEY", emu.api_key)
    monkeypatch.setenv("USEGRANT_BASE_URL", emu.base_url)

    @flow
    def mint() -> AccessToken:
        return create_access_token(None, **_ids(emu))

    assert isinstance(mint(), AccessToken)
    assert _token_calls(emu) == 1


def test_the_log_names_fingerprint_jti_and_expiry_but_not_the_token(
    emu: RunningEmulator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO)
    # Prefect's logging config stops propagation at "prefect"; let caplog see the records.
    monkeypatch.setattr(logging.getLogger("prefect"), "propagate", True)

    @flow
    def mint() -> AccessToken:
        return create_access_token(_credentials(emu), **_ids(emu))

    token = mint()
    minted = [r.getMessage() for r in caplog.records if "Minted" in r.getMessage()]
    assert minted == [
        f"Minted UseGrant access token fingerprint={token.fingerprint} jti={token.jti} "
        f"expires_at={token.expires_at.isoformat()}"
    ]
    assert token.access_token.get_secret_value() not in caplog.text
    assert emu.api_key not in caplog.text


# Prefect-level retries: transient errors only


def test_a_401_fails_the_task_run_at_once(emu: RunningEmulator) -> None:
    task_run_id = _failed_sync_run(emu, api_key="usegrant_not_a_known_key", **_ids(emu))
    assert _run_count(task_run_id) == 1
    assert _token_calls(emu) == 1


def test_bad_input_fails_the_task_run_without_any_request(emu: RunningEmulator) -> None:
    task_run_id = _failed_sync_run(emu, **_ids(emu), expires_in=0)
    assert _run_count(task_run_id) == 1
    assert _token_calls(emu) == 0


def test_a_persistent_503_is_retried_by_client_and_task(emu: RunningEmulator) -> None:
    emu.set_faults(fail_rate=1.0, fail_status=503)
    task_run_id = _failed_sync_run(emu, **_ids(emu))
    client_attempts = _credentials(emu).get_client().retry.max_attempts
    assert _run_count(task_run_id) == 1 + TASK_RETRIES
    assert _token_calls(emu) == (1 + TASK_RETRIES) * client_attempts


async def test_the_async_task_fails_a_401_at_once(emu: RunningEmulator) -> None:
    @flow
    async def mint() -> UUID:
        state = await async_task(
            _credentials(emu, "usegrant_not_a_known_key"), **_ids(emu), return_state=True
        )
        assert state.is_failed()
        return state.state_details.task_run_id

    task_run_id = await mint()
    assert _run_count(task_run_id) == 1
    assert _token_calls(emu) == 1


def test_a_task_retry_succeeds_once_the_outage_ends(emu: RunningEmulator) -> None:
    emu.set_faults(fail_rate=1.0, fail_status=503)

    def outage_over_then_retry(task: Any, task_run: Any, state: Any) -> bool:
        emu.set_faults(fail_rate=0.0)
        return retry_if_transient(task, task_run, state)

    healing = sync_task.with_options(retry_condition_fn=outage_over_then_retry)

    @flow
    def mint() -> tuple[AccessToken, UUID]:
        state = healing(_credentials(emu), **_ids(emu), return_state=True)
        return state.result(), state.state_details.task_run_id

    token, task_run_id = mint()
    assert isinstance(token, AccessToken)
    assert _run_count(task_run_id) == 2


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ServerError(503), True),
        (UseGrantConnectionError("timed out"), True),
        (AuthenticationError(401), False),
        (ConfigurationError("expires_in"), False),
        (ValueError("other"), False),
    ],
)
def test_retry_condition_follows_is_transient(error: Exception, expected: bool) -> None:
    state: Any = Failed(data=error)
    assert retry_if_transient(create_access_token, None, state) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize("task", [create_access_token, acreate_access_token])
def test_tasks_never_cache_nor_persist_results(task: Any) -> None:
    assert task.cache_policy is NO_CACHE
    assert task.persist_result is False
    assert task.retry_condition_fn is retry_if_transient
