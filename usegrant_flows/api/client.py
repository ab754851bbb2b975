"""Clients of the UseGrant token API: :class:`UseGrantClient`, :class:`AsyncUseGrantClient`.

Both clients share one core (:class:`_ClientCore`) that validates arguments, builds the
request, parses the answer, maps errors and decides retries; the sync and async classes
only differ in how they send. This module never imports Prefect.

Retries follow :class:`RetryPolicy` (defaults: 5 attempts, 30 s in total, 0.5 s
initial backoff, 8 s maximum backoff, full jitter, ``Retry-After`` honoured). Each
retry is logged at WARNING on the ``usegrant_flows.api.client`` logger with the status or
error class and the attempt number ("attempt 2/5"); never the key or the token.

Example:
    >>> from usegrant_flows.api.client import UseGrantClient
    >>> with UseGrantClient(api_key="usegrant_example", base_url="http://127.0.0.1:8080") as c:
    ...     c.base_url
    'http://127.0.0.1:8080'
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol
from uuid import UUID

import httpx
from pydantic import SecretStr
from tenacity import AsyncRetrying, Retrying

from usegrant_flows._version import __version__
from usegrant_flows.api import checks as _validation
from usegrant_flows.api.errors import (
    ConfigurationError,
    InvalidResponseError,
    UseGrantAPIError,
    UseGrantConnectionError,
)
from usegrant_flows.api.gate import KeyGate
from usegrant_flows.api.models import AccessToken, TokenRequest
from usegrant_flows.api.retry import (
    RetryPolicy,
    async_retrying,
    retrying,
    set_testing,
)
from usegrant_flows.api.settings import load_settings

__all__ = [
    "AsyncUseGrantClient",
    "KeyGate",
    "RequestLimiter",
    "RetryPolicy",
    "UseGrantClient",
    "set_testing",
]

#: The ``User-Agent`` header sent with every request.
USER_AGENT = f"usegrant-flows/{__version__}"
#: Connections per httpx pool in the async client: httpx's AsyncClient slows down
#: sharply with many connections in one pool (32 in one: ~330 req/s; 8 pools of 4:
#: ~1,300 req/s on our 2-core machines).
CONNECTIONS_PER_ASYNC_POOL = 4


class RequestLimiter(Protocol):
    """Something that paces requests (a quota budget, say).

    The clients call :meth:`acquire` (sync) or :meth:`aacquire` (async) before every
    HTTP attempt, retries included; the call may block until a request is allowed.
    """

    def acquire(self) -> None:
        """Block until one more request may be sent."""

    async def aacquire(self) -> None:
        """Wait until one more request may be sent."""


@dataclass
class _PreparedRequest:
    path: str
    body: dict[str, Any]
    started: float  # time.monotonic() when the call began
    # Seconds spent waiting for the request budget: not part of the retry deadline.
    waited: float = 0.0
    # The gate's pause this call caused itself: its own retry wait covers it.
    pause_seen: float = 0.0


def _check_max_connections(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError("max_connections must be an integer >= 1")
    return value


class _ClientCore:
    """Everything the sync and async clients share; it never does I/O itself."""

    def __init__(
        self,
        api_key: str | SecretStr | None,
        base_url: str | None,
        timeout: float | None,
        retry: RetryPolicy | None,
        limiter: RequestLimiter | None,
        gate: KeyGate | None,
    ) -> None:
        if api_key is None or base_url is None or timeout is None:
            settings = load_settings()
            if api_key is None:
                api_key = settings.require_api_key()
            base_url = settings.base_url if base_url is None else base_url
            timeout = settings.timeout if timeout is None else timeout
        self.api_key = _validation.check_api_key(api_key)
        self.base_url = _validation.check_base_url(base_url)
        self.timeout = _validation.check_timeout(timeout)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError("retry must be a RetryPolicy or None")
        self.retry = retry or RetryPolicy()
        self.limiter = limiter
        if gate is not None and not isinstance(gate, KeyGate):
            raise ConfigurationError("gate must be a KeyGate or None")
        self.gate = gate if gate is not None else KeyGate()

    def prepare(
        self,
        provider_id: object,
        client_id: object,
        expires_in: object,
        use_jwt_type: object,
        audience_as_array: object,
        force_default_domain: object,
    ) -> _PreparedRequest:
        """Validate the arguments and return the request to send (no I/O)."""
        provider = _validation.check_uuid("provider_id", provider_id)
        client = _validation.check_uuid("client_id", client_id)
        body = TokenRequest(
            expires_in=_validation.check_expires_in(expires_in),
            use_jwt_type=_validation.check_flag("use_jwt_type", use_jwt_type),
            audience_as_array=_validation.check_flag("audience_as_array", audience_as_array),
            force_default_domain=_validation.check_flag(
                "force_default_domain", force_default_domain
            ),
        ).to_body()
        path = f"/v1/providers/{provider}/clients/{client}/tokens"
        return _PreparedRequest(path=path, body=body, started=time.monotonic())

    def time_left(self, prepared: _PreparedRequest) -> float:
        """Seconds left of the call's retry deadline."""
        return self.retry.deadline - (time.monotonic() - prepared.started - prepared.waited)

    def build(
        self, http: httpx.Client | httpx.AsyncClient, prepared: _PreparedRequest
    ) -> httpx.Request:
        """Build one attempt's request; its timeout never outlasts the retry deadline.

        Time spent waiting for the request budget does not count against the deadline:
        a mint queued behind the quota still gets its full timeout and retries.
        """
        remaining = self.time_left(prepared)
        timeout = max(0.001, min(self.timeout, remaining))
        return http.build_request(
            "POST",
            prepared.path,
            json=prepared.body,
            headers={
                "Authorization": f"Bearer {self.api_key.get_secret_value()}",
                "Accept": "application/json",
            },
            timeout=timeout,
        )

    def connection_error(self, exc: httpx.HTTPError) -> UseGrantConnectionError:
        """Describe a transport failure without anything secret in it."""
        host = httpx.URL(self.base_url).host
        return UseGrantConnectionError(
            f"Could not reach the UseGrant API at {host} ({type(exc).__name__})"
        )

    def parse(self, response: httpx.Response, prepared: _PreparedRequest) -> AccessToken:
        """Return the token of a 200/201 answer, or raise the matching error.

        Error answers also go to the key gate: a 429 with ``Retry-After`` pauses every
        request through it, a 401 stops them.
        """
        try:
            return _validation.parse_token_response(response, self.api_key.get_secret_value())
        except UseGrantAPIError as exc:
            prepared.pause_seen = max(prepared.pause_seen, self.gate.observe(exc))
            raise

    def retrying(self, prepared: _PreparedRequest) -> Retrying:
        """Return a fresh tenacity ``Retrying`` for one sync call."""
        return retrying(self.retry, excluded=lambda: prepared.waited)

    def async_retrying(self, prepared: _PreparedRequest) -> AsyncRetrying:
        """Return a fresh tenacity ``AsyncRetrying`` for one async call."""
        return async_retrying(self.retry, excluded=lambda: prepared.waited)

    def describe(self, cls: type) -> str:
        """Return the client's repr: where it points, never its key."""
        return f"{cls.__name__}(base_url={self.base_url!r}, timeout={self.timeout})"


class _ClientBase:
    """What both clients expose of their shared core (read-only) and their repr."""

    _core: _ClientCore

    @property
    def base_url(self) -> str:
        """The API base URL, without a trailing slash."""
        return self._core.base_url

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy in force."""
        return self._core.retry

    @property
    def limiter(self) -> RequestLimiter | None:
        """The request limiter consulted before every attempt, if any."""
        return self._core.limiter

    @property
    def gate(self) -> KeyGate:
        """The key's pause/stop circuit this client consults."""
        return self._core.gate

    def __repr__(self) -> str:
        return self._core.describe(type(self))


class UseGrantClient(_ClientBase):
    """Synchronous client of the UseGrant token API.

    One pooled :class:`httpx.Client` serves every call; use the client as a context
    manager (or call :meth:`close`) to release its connections.

    Args:
        api_key: The API key; ``None`` reads :class:`~usegrant_flows.api.settings.UseGrantSettings`
            (``USEGRANT_API_KEY``, ``.env``, then the OS keyring).
        base_url: API base URL: https, or http to a loopback host only; ``None`` reads
            ``USEGRANT_BASE_URL`` (default ``https://sdk.usegrant.dev``).
        timeout: Seconds allowed for one HTTP attempt (> 0); ``None`` reads
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
        self._core = _ClientCore(api_key, base_url, timeout, retry, limiter, gate)
        size = _check_max_connections(max_connections)
        self._http = httpx.Client(
            base_url=self._core.base_url,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            timeout=self._core.timeout,
        )

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
            UseGrantConnectionError: The API could not be reached, after retries.
            InvalidResponseError: A 2xx answer without a usable token.
        """
        prepared = self._core.prepare(
            provider_id,
            client_id,
            expires_in,
            use_jwt_type,
            audience_as_array,
            force_default_domain,
        )
        token: AccessToken = self._core.retrying(prepared)(self._attempt, prepared)
        return token

    def _attempt(self, prepared: _PreparedRequest) -> AccessToken:
        gate = self._core.gate
        gate.wait(self._core.time_left(prepared), seen=prepared.pause_seen)
        if self._core.limiter is not None:
            queued = time.monotonic()
            self._core.limiter.acquire()
            prepared.waited += time.monotonic() - queued
            gate.wait(
                self._core.time_left(prepared), seen=prepared.pause_seen
            )  # a 429 may have come meanwhile
        try:
            response = self._http.send(self._core.build(self._http, prepared))
        except httpx.TransportError as exc:
            raise self._core.connection_error(exc) from exc
        except httpx.DecodingError:
            raise InvalidResponseError("UseGrant API answer could not be decoded") from None
        return self._core.parse(response, prepared)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> UseGrantClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncUseGrantClient(_ClientBase):
    """Asynchronous client of the UseGrant token API, the mirror of :class:`UseGrantClient`.

    Concurrency is spread over several small httpx pools of at most 4 connections each;
    every attempt goes through the pool with the fewest requests in flight.

    Args:
        api_key: The API key; ``None`` reads :class:`~usegrant_flows.api.settings.UseGrantSettings`.
        base_url: API base URL (https, or http to a loopback host); ``None`` reads settings.
        timeout: Seconds allowed for one HTTP attempt (> 0); ``None`` reads settings.
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
        self._core = _ClientCore(api_key, base_url, timeout, retry, limiter, gate)
        total = _check_max_connections(max_connections)
        count = math.ceil(total / CONNECTIONS_PER_ASYNC_POOL)
        share, extra = divmod(total, count)
        self._pools = [
            httpx.AsyncClient(
                base_url=self._core.base_url,
                headers={"User-Agent": USER_AGENT},
                limits=httpx.Limits(
                    max_connections=share + (i < extra),
                    max_keepalive_connections=share + (i < extra),
                ),
                timeout=self._core.timeout,
            )
            for i in range(count)
        ]
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
        prepared = self._core.prepare(
            provider_id,
            client_id,
            expires_in,
            use_jwt_type,
            audience_as_array,
            force_default_domain,
        )
        token: AccessToken = await self._core.async_retrying(prepared)(self._attempt, prepared)
        return token

    async def _attempt(self, prepared: _PreparedRequest) -> AccessToken:
        gate = self._core.gate
        await gate.await_open(self._core.time_left(prepared), seen=prepared.pause_seen)
        if self._core.limiter is not None:
            queued = time.monotonic()
            await self._core.limiter.aacquire()
            prepared.waited += time.monotonic() - queued
            await gate.await_open(
                self._core.time_left(prepared), seen=prepared.pause_seen
            )  # a 429 may have come
        index = min(range(len(self._pools)), key=self._in_flight.__getitem__)
        pool = self._pools[index]
        self._in_flight[index] += 1
        try:
            response = await pool.send(self._core.build(pool, prepared))
        except httpx.TransportError as exc:
            raise self._core.connection_error(exc) from exc
        except httpx.DecodingError:
            raise InvalidResponseError("UseGrant API answer could not be decoded") from None
        finally:
            self._in_flight[index] -= 1
        return self._core.parse(response, prepared)

    async def aclose(self) -> None:
        """Close every connection pool."""
        for pool in self._pools:
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
