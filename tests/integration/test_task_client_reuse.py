"""The token tasks share one client per credentials, so task runs reuse its connections.

Sync: one client per process (thread-safe), closed at exit. Async: one per event loop,
closed when the loop shuts down. A 401 replaces the client on the next call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from prefect import flow

from usegrant_flows.api.client import AsyncUseGrantClient, UseGrantClient
from usegrant_flows.client_pool import close_task_clients, task_client
from usegrant_flows.credentials import UseGrantCredentials
from usegrant_flows.emulator import RunningEmulator
from usegrant_flows.tasks import acreate_access_token, create_access_token

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _ids(emu: RunningEmulator) -> dict[str, str]:
    provider = emu.seed.providers[0]
    return {"provider_id": str(provider.id), "client_id": str(provider.clients[0].id)}


def _credentials(emu: RunningEmulator, api_key: str | None = None) -> UseGrantCredentials:
    return UseGrantCredentials(api_key=api_key or emu.api_key, base_url=emu.base_url)  # type: ignore[arg-type]


def _token_calls(emu: RunningEmulator) -> int:
    return int(emu.stats()["token_calls"]["total"])


@pytest.fixture(autouse=True)
def fresh_task_clients() -> Iterator[None]:
    close_task_clients()
    yield
    close_task_clients()


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every client the credentials block builds, in order."""
    clients: list[Any] = []
    get_client, get_async_client = (
        UseGrantCredentials.get_client,
        UseGrantCredentials.get_async_client,
    )

    def spy(self: UseGrantCredentials, **kwargs: Any) -> UseGrantClient:
        clients.append(get_client(self, **kwargs))
        return clients[-1]  # type: ignore[no-any-return]

    def async_spy(self: UseGrantCredentials, **kwargs: Any) -> AsyncUseGrantClient:
        clients.append(get_async_client(self, **kwargs))
        return clients[-1]  # type: ignore[no-any-return]

    monkeypatch.setattr(UseGrantCredentials, "get_client", spy)
    monkeypatch.setattr(UseGrantCredentials, "get_async_client", async_spy)
    return clients


def _connections(client: UseGrantClient) -> int:
    return len(client._http._transport._pool.connections)  # type: ignore[attr-defined]


def _async_connections(client: AsyncUseGrantClient) -> list[int]:
    return [
        len(pool._transport._pool.connections)  # type: ignore[attr-defined]
        for pool in client._pools
        if pool is not None
    ]


def test_the_sync_task_reuses_one_client_and_one_connection(
    emu: RunningEmulator, built: list[Any]
) -> None:
    credentials = _credentials(emu)

    @flow
    def mint_twice() -> list[str]:
        return [create_access_token(credentials, **_ids(emu)).fingerprint for _ in range(2)]

    fingerprints = mint_twice()

    assert len(set(fingerprints)) == 2
    assert _token_calls(emu) == 2
    assert len(built) == 1
    assert task_client(credentials) is built[0]
    assert _connections(built[0]) == 1


def test_the_sync_client_is_shared_across_flow_runs(emu: RunningEmulator, built: list[Any]) -> None:
    credentials = _credentials(emu)

    @flow
    def mint() -> str:
        return create_access_token(credentials, **_ids(emu)).fingerprint

    mint()
    mint()

    assert len(built) == 1
    assert _connections(built[0]) == 1


async def test_the_async_task_reuses_one_client_and_one_connection(
    emu: RunningEmulator, built: list[Any]
) -> None:
    credentials = _credentials(emu)

    @flow
    async def mint_twice() -> list[str]:
        return [(await acreate_access_token(credentials, **_ids(emu))).fingerprint for _ in "ab"]

    fingerprints = await mint_twice()

    assert len(set(fingerprints)) == 2
    assert len(built) == 1
    assert _async_connections(built[0]) == [1]


def test_async_clients_are_closed_with_their_event_loop(
    emu: RunningEmulator, built: list[Any]
) -> None:
    credentials = _credentials(emu)

    @flow
    async def mint() -> str:
        return (await acreate_access_token(credentials, **_ids(emu))).fingerprint

    asyncio.run(mint())
    asyncio.run(mint())

    # One client per loop, each closed (its pools released) when asyncio.run ended.
    assert len(built) == 2
    assert all(client._pools == [None] * client.pool_count for client in built)


def test_different_timeouts_keys_or_budgets_get_different_clients(emu: RunningEmulator) -> None:
    base = _credentials(emu)
    slower = UseGrantCredentials(api_key=emu.api_key, base_url=emu.base_url, timeout=20)  # type: ignore[arg-type]
    other = _credentials(emu, "usegrant_some_other_key")
    smaller = UseGrantCredentials(
        api_key=emu.api_key,  # type: ignore[arg-type]
        base_url=emu.base_url,
        max_requests_per_hour=10,
    )

    clients = [task_client(c) for c in (base, slower, other, smaller)]

    assert len({id(client) for client in clients}) == 4
    # Each keeps the request budget its credentials declare.
    assert [client.limiter.budget.requests for client in clients] == [1000, 1000, 1000, 10]  # type: ignore[union-attr]
    assert task_client(_credentials(emu)) is task_client(base)


def test_after_a_401_the_next_call_gets_a_fresh_client(
    emu: RunningEmulator, built: list[Any]
) -> None:
    credentials = _credentials(emu, "usegrant_not_a_known_key")
    sync_task = create_access_token.with_options(retries=0)

    @flow
    def mint_twice() -> list[bool]:
        states = [sync_task(credentials, **_ids(emu), return_state=True) for _ in range(2)]
        return [state.is_failed() for state in states]

    assert mint_twice() == [True, True]
    # Both calls reached the API: the first 401 did not stop the second call unsent.
    assert _token_calls(emu) == 2
    assert len(built) == 2
    assert built[0].gate.stopped
