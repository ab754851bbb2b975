"""One API client per credentials and event loop, shared by its callers.

Building a client per call throws away its connections: every call pays a new TCP (and
TLS) handshake. Two sharers live here:

* :class:`ClientPool`: a rotation asks it for the client of a credentials block (or of
  the ``USEGRANT_*`` settings), so connections are reused across targets, and every
  target of one key shares its request budget and its gate (a 429 pauses, a 401 stops
  them all).
* :func:`task_client` / :func:`atask_client`: the clients of the ``create_access_token``
  tasks, one per credentials (key, base URL, timeout, and what picks the request budget:
  block name and budget) per process (sync: thread-safe) or per event loop (async).
  Sync clients are closed at interpreter exit; async ones when their loop shuts its
  async generators down (``asyncio.run`` does), and dropped with the loop otherwise.
  A client whose gate a 401 stopped is replaced on the next call, so a rejected key
  fails the call that met it, and the next task run tries again as it always did.

Async clients are bound to the event loop they were made on.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Hashable
from typing import TypeVar

from usegrant_flows.api.client import AsyncUseGrantClient, UseGrantClient
from usegrant_flows.api.settings import load_settings
from usegrant_flows.credentials import UseGrantCredentials, aload_credentials
from usegrant_flows.quota.budget import DEFAULT_BUDGET, local_limiter

__all__ = ["ClientPool", "atask_client", "close_task_clients", "task_client"]

_Client = TypeVar("_Client", UseGrantClient, AsyncUseGrantClient)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _recipe(
    credentials: UseGrantCredentials | None, kind: type[_Client]
) -> tuple[Hashable, Callable[[], _Client]]:
    """Return the identity of the client ``credentials`` call for, and how to build it.

    The identity holds everything the client is built from: the key (as a digest),
    base URL and timeout, and what decides its request budget (the block's name, its
    budget, and whether a Prefect server coordinates it: see ``QuotaLimiter``).
    """
    if credentials is None:
        settings = load_settings()
        key = settings.require_api_key()
        url, timeout = settings.base_url, settings.timeout

        def from_settings() -> _Client:
            limiter = local_limiter(key.get_secret_value(), DEFAULT_BUDGET)
            return kind(api_key=key, base_url=url, timeout=timeout, limiter=limiter)

        return ("settings", _digest(key.get_secret_value()), url, timeout), from_settings
    from usegrant_flows.quota.limiter import prefect_api_configured  # Prefect's concurrency API

    name = getattr(credentials, "_block_document_name", None)
    identity = (
        "block",
        _digest(credentials.api_key.get_secret_value()),
        credentials.base_url,
        credentials.timeout,
        name,
        credentials.budget(),
        name is not None and prefect_api_configured(),
    )
    if kind is UseGrantClient:
        return identity, credentials.get_client  # type: ignore[return-value]
    return identity, credentials.get_async_client  # type: ignore[return-value]


_sync_clients: dict[Hashable, UseGrantClient] = {}
_sync_lock = threading.Lock()


def task_client(credentials: UseGrantCredentials | None) -> UseGrantClient:
    """Return this process's shared sync client for ``credentials`` (``None``: settings).

    Raises:
        ConfigurationError: For a missing or malformed key or base URL.
    """
    identity, build = _recipe(credentials, UseGrantClient)
    stale: UseGrantClient | None = None
    with _sync_lock:
        client = _sync_clients.get(identity)
        if client is None or client.gate.stopped:
            stale, client = client, build()
            _sync_clients[identity] = client
    if stale is not None:
        stale.close()
    return client


def close_task_clients() -> None:
    """Close and forget every shared sync client (at exit; tests call it too)."""
    with _sync_lock:
        clients = list(_sync_clients.values())
        _sync_clients.clear()
    for client in clients:
        client.close()


atexit.register(close_task_clients)


class _LoopClients:
    """The shared async clients of one event loop, closed when the loop shuts down."""

    def __init__(self) -> None:
        self.clients: dict[Hashable, AsyncUseGrantClient] = {}
        # Suspended in the loop; asyncio.run's shutdown_asyncgens() closes it, which
        # closes the clients on their own loop. Held here so that only that close
        # (never garbage collection) ends it.
        self.closer: AsyncIterator[None] | None = None

    async def close_at_shutdown(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            clients = list(self.clients.values())
            self.clients.clear()
            for client in clients:
                with contextlib.suppress(Exception):
                    await client.aclose()


_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClients] = (
    weakref.WeakKeyDictionary()
)
_async_lock = threading.Lock()


async def atask_client(credentials: UseGrantCredentials | None) -> AsyncUseGrantClient:
    """Return the running loop's shared async client for ``credentials`` (``None``: settings).

    Raises:
        ConfigurationError: For a missing or malformed key or base URL.
    """
    identity, build = _recipe(credentials, AsyncUseGrantClient)
    loop = asyncio.get_running_loop()
    with _async_lock:  # several threads may each run a loop
        entry = _async_clients.get(loop)
        if entry is None:
            entry = _async_clients[loop] = _LoopClients()
    if entry.closer is None:
        entry.closer = entry.close_at_shutdown()
        await entry.closer.__anext__()  # registers it with the loop's async generators
    client = entry.clients.get(identity)
    if client is not None and not client.gate.stopped:
        return client
    fresh = entry.clients[identity] = build()
    if client is not None:
        await client.aclose()
    return fresh


class ClientPool:
    """One :class:`AsyncUseGrantClient` per API key and base URL, per event loop.

    Targets naming the same credentials block share its client, and so its connection
    pools and the key's request budget (the block's quota limiter, attached by
    ``get_async_client``) and its gate (a 429 pauses, a 401 stops every target of the
    key in this run); two blocks holding the same key and URL share one client too.
    ``None`` means ``UseGrantSettings``, with an in-process budget of UseGrant's
    default 1000 requests per hour.
    """

    def __init__(self) -> None:
        self._by_key: dict[tuple[int, str], AsyncUseGrantClient] = {}
        self._by_name: dict[tuple[int, str | None], AsyncUseGrantClient] = {}
        self._lock = asyncio.Lock()

    async def get(self, credentials: str | None) -> AsyncUseGrantClient:
        """Return the shared client for a credentials block name (``None``: settings).

        Raises:
            ConfigurationError: When the block does not exist or holds bad settings.
        """
        loop = id(asyncio.get_running_loop())
        client = self._by_name.get((loop, credentials))
        if client is not None:
            return client
        async with self._lock:
            client = self._by_name.get((loop, credentials))
            if client is None:
                client = await self._create(loop, credentials)
                self._by_name[(loop, credentials)] = client
        return client

    async def _create(self, loop: int, credentials: str | None) -> AsyncUseGrantClient:
        if credentials is None:
            api_key = load_settings().require_api_key()
            client = AsyncUseGrantClient(
                api_key=api_key, limiter=local_limiter(api_key.get_secret_value(), DEFAULT_BUDGET)
            )
            key = f"settings:{client.base_url}"
        else:
            block = await aload_credentials(credentials)
            secret = block.api_key.get_secret_value().encode()
            key = f"{block.base_url}:{hashlib.sha256(secret).hexdigest()}"
            existing = self._by_key.get((loop, key))
            if existing is not None:
                return existing
            client = block.get_async_client()
        return self._by_key.setdefault((loop, key), client)

    async def aclose(self) -> None:
        """Close every client."""
        clients = {id(c): c for c in self._by_key.values()}
        self._by_key.clear()
        self._by_name.clear()
        for client in clients.values():
            await client.aclose()
