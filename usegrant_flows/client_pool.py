"""One API client per credentials and event loop, shared by the callers of a pool.

Building a client costs connection pools (and TLS set-up on first use); a client per
call throws that away. A rotation asks its pool for the client of a credentials block
(or of the ``USEGRANT_*`` settings), so connections are reused across targets, and every
target of one key shares its request budget and its gate (a 429 pauses, a 401 stops
them all). Clients are bound to the event loop they were made on.
"""

from __future__ import annotations

import asyncio
import hashlib

from usegrant_flows.api.client import AsyncUseGrantClient
from usegrant_flows.api.settings import load_settings
from usegrant_flows.credentials import aload_credentials
from usegrant_flows.quota.budget import DEFAULT_BUDGET, local_limiter

__all__ = ["ClientPool"]


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
