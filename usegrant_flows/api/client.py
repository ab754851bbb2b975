"""Clients of the UseGrant token API: :class:`UseGrantClient`, :class:`AsyncUseGrantClient`.

Both clients share one core (:class:`~usegrant_flows.api.core.ClientCore`) that validates
arguments, builds the request, parses the answer, maps errors and decides retries; the
sync and async classes only differ in how they wait and send
(:mod:`usegrant_flows.api.transport`). This module never imports Prefect.

Every attempt is bounded as a whole: connect, send, headers and the entire body must
be in within ``timeout`` seconds (never past the retry deadline), and a body over
64 KiB is refused unread. A slow or endless answer is a timeout, retried like one.

Retries follow :class:`RetryPolicy` (defaults: 5 attempts, 30 s in total, 0.5 s
initial backoff, 8 s maximum backoff, full jitter, ``Retry-After`` honoured). A call's
first retry is logged at WARNING on the ``usegrant_flows.api.client`` logger with the
status or error class, the attempt number ("attempt 2/5") and how far retries may go;
later retries log at DEBUG. Never the key or the token.

Example:
    >>> from usegrant_flows.api.client import UseGrantClient
    >>> with UseGrantClient(api_key="usegrant_example", base_url="http://127.0.0.1:8080") as c:
    ...     c.base_url
    'http://127.0.0.1:8080'
"""

from __future__ import annotations

import math
import threading
import time
from types import TracebackType
from uuid import UUID

import httpx
from pydantic import SecretStr

from usegrant_flows.api import transport
from usegrant_flows.api.core import (
    ClientBase,
    ClientCore,
    PreparedCall,
    RequestLimiter,
    check_max_connections,
)
from usegrant_flows.api.gate import KeyGate
from usegrant_flows.api.models import AccessToken
from usegrant_flows.api.retry import RetryPolicy, set_testing
from usegrant_flows.api.transport import CONNECTIONS_PER_ASYNC_POOL, USER_AGENT

__all__ = [
    "CONNECTIONS_PER_ASYNC_POOL",
    "USER_AGENT",
    "AsyncUseGrantClient",
    "KeyGate",
    "RequestLimiter",
    "RetryPolicy",
    "UseGrantClient",
    "set_testing",
]


class UseGrantClient(ClientBase):
    """Synchronous client of the UseGrant token API.

    One pooled :class:`httpx.Client` serves every call, from any number of threads; use
    the client as a context manager (or call :meth:`close`) to release its connections.

    Args:
        api_key: The API key; ``None`` reads :class:`~usegrant_flows.api.settings.UseGrantSettings`
            (``USEGRANT_API_KEY``, ``.env``, then the OS keyring).
        base_url: API base URL: https, or http to a loopback host only; ``None`` reads
            ``USEGRANT_BASE_URL`` (default ``https://sdk.usegrant.dev``).
        timeout: Seconds allowed for one HTTP attempt in all (> 0): connect, send, and
            the whole answer, however slowly it comes; ``None`` reads
            ``USEGRANT_TIMEOUT`` (default 10 s). Never longer than what is left of the
            retry deadline.
        retry: The retry policy; default :class:`RetryPolicy` (5 attempts, 30 s total,
            0.5 s initial and 8 s maximum backoff, full jitter).
        limiter: Called (``acquire()``) before every HTTP attempt, retries included
            (a request budget, see :mod:`usegrant_flows.quota.limiter`).
        gate: The API key's pause/stop circuit, consulted before every attempt: after a
            429 with ``Retry-After`` no request is sent until then; after a 401 every
            call fails with ``AuthenticationError`` without a request. Default: a gate
            of this client's own; pass one gate to several clients to share it.
        max_connections: Size of the connection pool (>= 1), default 10.

    Raises:
        ConfigurationError: For a missing or malformed key, base URL, timeout or policy.

    Example:
        >>> with UseGrantClient("usegrant_example", "https://sdk.usegrant.dev") as c:
        ...     c  # the repr never shows the key
        UseGrantClient(base_url='https://sdk.usegrant.dev', timeout=10.0)
    """

    def __init__(
        self,
        api_key: str | SecretStr | None = None,
        base_url: str | None = None,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        limiter: RequestLimiter | None = None,
        gate: KeyGate | None = None,
        max_connections: int = 10,
    ) -> None:
        self._core = ClientCore(api_key, base_url, timeout, retry, limiter, gate)
        self._size = check_max_connections(max_connections)
        # The pool is built on first use, like the async client's: building a client
        # costs nothing then, and the first pool of the process loads the CA bundle.
        self._built: httpx.Client | None = None
        self._lock = threading.Lock()

    @property
    def _http(self) -> httpx.Client:
        http = self._built
        if http is None:
            with self._lock:  # threads share the client: build one pool only
                if self._built is None:
                    core = self._core
                    self._built = transport.sync_pool(core.base_url, core.timeout, self._size)
                http = self._built
        return http

    def create_token(
        self,
        provider_id: str | UUID,
        client_id: str | UUID,
        *,
        expires_in: int | None = None,
        use_jwt_type: bool | None = None,
        audience_as_array: bool | None = None,
        force_default_domain: bool | None = None,
    ) -> AccessToken:
        """Mint an access token for a provider's client.

        Args:
            provider_id: The provider's UUID.
            client_id: The client's UUID.
            expires_in: Token lifetime in seconds, 1..172800 (48 h); ``None`` lets the
                API choose.
            use_jwt_type: True sets the JWT header ``typ`` to ``jwt`` (else ``at+jwt``).
            audience_as_array: True makes the ``aud`` claim an array.
            force_default_domain: True makes ``iss`` the provider's default domain.

        Returns:
            The token; its JWT stays a ``SecretStr``.

        Raises:
            ConfigurationError: Bad arguments; nothing was sent.
            UseGrantAPIError: An error answer (the subclass matches the status), after
                retries for 408/429/5xx.
            UseGrantConnectionError: The API could not be reached, or did not answer in
                full within the attempt's time (a slow or endless body), after retries.
            InvalidResponseError: A 2xx answer without a usable token: over 64 KiB, not
                UTF-8 JSON, nested too deeply, the wrong shape, a token that is not a
                bare JWT of at most 16 KiB, or a ``type`` other than ``Bearer``.
        """
        call = self._core.prepare(
            provider_id,
            client_id,
            expires_in,
            use_jwt_type,
            audience_as_array,
            force_default_domain,
        )
        token: AccessToken = self._core.retrying(call)(self._attempt, call)
        return token

    def _attempt(self, call: PreparedCall) -> AccessToken:
        core, gate = self._core, self._core.gate
        gate.wait(core.time_left(call), seen=call.pause_seen)
        if core.limiter is not None:
            queued = time.monotonic()
            core.limiter.acquire()
            call.waited += time.monotonic() - queued
            gate.wait(core.time_left(call), seen=call.pause_seen)  # a 429 may have come
        http = self._http
        request, deadline = core.build(http, call)
        try:
            answer = transport.send(http, request, deadline)
        except httpx.TransportError as exc:
            raise core.connection_error(exc) from exc
        return core.parse(answer, call)

    def close(self) -> None:
        """Close the connection pool (a later call builds a new one)."""
        with self._lock:
            http, self._built = self._built, None
        if http is not None:
            http.close()

    def __enter__(self) -> UseGrantClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncUseGrantClient(ClientBase):
    """Asynchronous client of the UseGrant token API, the mirror of :class:`UseGrantClient`.

    Concurrency is spread over several small httpx pools of at most 4 connections each,
    each built the first time it is needed; every attempt goes through the pool with the
    fewest requests in flight (the first pool, for one call at a time). A client belongs
    to the event loop it is first used on.

    Args:
        api_key: The API key; ``None`` reads :class:`~usegrant_flows.api.settings.UseGrantSettings`.
        base_url: API base URL (https, or http to a loopback host); ``None`` reads settings.
        timeout: Seconds allowed for one HTTP attempt in all (> 0); ``None`` reads settings.
        retry: The retry policy; default :class:`RetryPolicy`.
        limiter: Awaited (``aacquire()``) before every HTTP attempt, retries included.
        gate: The API key's pause/stop circuit (see :class:`UseGrantClient`).
        max_connections: Connections in total (>= 1), default 32 (8 pools of 4).

    Raises:
        ConfigurationError: For a missing or malformed key, base URL, timeout or policy.

    Example:
        >>> import asyncio
        >>> async def main():
        ...     async with AsyncUseGrantClient(api_key="usegrant_example",
        ...                                    base_url="https://sdk.usegrant.dev") as c:
        ...         return c.pool_count
        >>> asyncio.run(main())
        8
    """

    def __init__(
        self,
        api_key: str | SecretStr | None = None,
        base_url: str | None = None,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        limiter: RequestLimiter | None = None,
        gate: KeyGate | None = None,
        max_connections: int = 32,
    ) -> None:
        self._core = ClientCore(api_key, base_url, timeout, retry, limiter, gate)
        total = check_max_connections(max_connections)
        count = math.ceil(total / CONNECTIONS_PER_ASYNC_POOL)
        share, extra = divmod(total, count)
        self._sizes = [share + (i < extra) for i in range(count)]
        # Pools are built on first use: a client minting one token at a time only
        # ever needs the first, and building eight costs milliseconds each time.
        self._pools: list[httpx.AsyncClient | None] = [None] * count
        self._in_flight = [0] * count

    @property
    def pool_count(self) -> int:
        """How many httpx pools the connections are spread over."""
        return len(self._pools)

    async def create_token(
        self,
        provider_id: str | UUID,
        client_id: str | UUID,
        *,
        expires_in: int | None = None,
        use_jwt_type: bool | None = None,
        audience_as_array: bool | None = None,
        force_default_domain: bool | None = None,
    ) -> AccessToken:
        """Mint an access token for a provider's client.

        Same arguments, result and errors as :meth:`UseGrantClient.create_token`.
        """
        call = self._core.prepare(
            provider_id,
            client_id,
            expires_in,
            use_jwt_type,
            audience_as_array,
            force_default_domain,
        )
        token: AccessToken = await self._core.async_retrying(call)(self._attempt, call)
        return token

    async def _attempt(self, call: PreparedCall) -> AccessToken:
        core, gate = self._core, self._core.gate
        await gate.await_open(core.time_left(call), seen=call.pause_seen)
        if core.limiter is not None:
            queued = time.monotonic()
            await core.limiter.aacquire()
            call.waited += time.monotonic() - queued
            await gate.await_open(core.time_left(call), seen=call.pause_seen)  # a 429 may have come
        # The least busy pool; ties go to the lowest index, so pools fill in order.
        index = min(range(len(self._pools)), key=self._in_flight.__getitem__)
        pool = self._pools[index]
        if pool is None:
            pool = transport.async_pool(core.base_url, core.timeout, self._sizes[index])
            self._pools[index] = pool
        self._in_flight[index] += 1
        try:
            request, deadline = core.build(pool, call)
            answer = await transport.asend(pool, request, deadline)
        except (httpx.TransportError, TimeoutError) as exc:
            raise core.connection_error(exc) from exc
        finally:
            self._in_flight[index] -= 1
        return core.parse(answer, call)

    async def aclose(self) -> None:
        """Close every connection pool (a later call builds new ones)."""
        pools, self._pools = self._pools, [None] * len(self._pools)
        for pool in pools:
            if pool is not None:
                await pool.aclose()

    async def __aenter__(self) -> AsyncUseGrantClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
