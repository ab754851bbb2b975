"""What the sync and async clients share: checks, requests, deadlines, parsing, retries.

:class:`ClientCore` never does I/O itself; :mod:`usegrant_flows.api.client` wraps it in
:class:`~usegrant_flows.api.client.UseGrantClient` and its async mirror, which only
differ in how they wait and send. This module never imports Prefect.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from pydantic import SecretStr
from tenacity import AsyncRetrying, Retrying

from usegrant_flows.api import checks as _validation
from usegrant_flows.api.errors import (
    ConfigurationError,
    UseGrantAPIError,
    UseGrantConnectionError,
)
from usegrant_flows.api.gate import KeyGate
from usegrant_flows.api.models import AccessToken, TokenRequest
from usegrant_flows.api.retry import RetryPolicy, async_retrying, retrying
from usegrant_flows.api.settings import load_settings
from usegrant_flows.api.transport import Answer

__all__ = ["ClientCore", "PreparedCall", "RequestLimiter", "check_max_connections"]


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
class PreparedCall:
    """One ``create_token`` call: its request and the clock of its retry deadline.

    Attributes:
        path: The request path.
        body: The JSON body.
        started: ``time.monotonic()`` when the call began.
        waited: Seconds spent queued for the request budget: not part of the deadline.
        pause_seen: The gate's pause this call caused itself (its own retry wait
            covers it).
    """

    path: str
    body: dict[str, Any]
    started: float
    waited: float = 0.0
    pause_seen: float = 0.0


def check_max_connections(value: object) -> int:
    """Return ``value`` if it is an int >= 1, else raise :class:`ConfigurationError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError("max_connections must be an integer >= 1")
    return value


class ClientCore:
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
    ) -> PreparedCall:
        """Validate the arguments and return the call to make (no I/O)."""
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
        return PreparedCall(path=path, body=body, started=time.monotonic())

    def time_left(self, call: PreparedCall) -> float:
        """Seconds left of the call's retry deadline (budget waits excluded)."""
        return self.retry.deadline - (time.monotonic() - call.started - call.waited)

    def build(
        self, http: httpx.Client | httpx.AsyncClient, call: PreparedCall
    ) -> tuple[httpx.Request, float]:
        """Build one attempt's request and the ``time.monotonic()`` it must end by.

        The attempt gets ``timeout`` seconds in all (connect, send, headers and the
        whole body), never more than what is left of the retry deadline; time spent
        waiting for the request budget does not count against that deadline.
        """
        allowed = max(0.001, min(self.timeout, self.time_left(call)))
        request = http.build_request(
            "POST",
            call.path,
            json=call.body,
            headers={
                "Authorization": f"Bearer {self.api_key.get_secret_value()}",
                "Accept": "application/json",
            },
            timeout=allowed,
        )
        return request, time.monotonic() + allowed

    def connection_error(self, exc: Exception) -> UseGrantConnectionError:
        """Describe a transport failure or a timeout without anything secret in it."""
        host = httpx.URL(self.base_url).host
        return UseGrantConnectionError(
            f"Could not reach the UseGrant API at {host} ({type(exc).__name__})"
        )

    def parse(self, answer: Answer, call: PreparedCall) -> AccessToken:
        """Return the token of a 200/201 answer, or raise the matching error.

        Error answers also go to the key gate: a 429 with ``Retry-After`` pauses every
        request through it, a 401 stops them.
        """
        try:
            return _validation.parse_token_response(answer, self.api_key.get_secret_value())
        except UseGrantAPIError as exc:
            call.pause_seen = max(call.pause_seen, self.gate.observe(exc))
            raise

    def retrying(self, call: PreparedCall) -> Retrying:
        """Return a fresh tenacity ``Retrying`` for one sync call."""
        return retrying(self.retry, excluded=lambda: call.waited)

    def async_retrying(self, call: PreparedCall) -> AsyncRetrying:
        """Return a fresh tenacity ``AsyncRetrying`` for one async call."""
        return async_retrying(self.retry, excluded=lambda: call.waited)

    def describe(self, cls: type) -> str:
        """Return the client's repr: where it points, never its key."""
        return f"{cls.__name__}(base_url={self.base_url!r}, timeout={self.timeout})"


class ClientBase:
    """What both clients expose of their shared core (read-only) and their repr."""

    _core: ClientCore

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
