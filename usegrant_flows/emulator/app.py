"""The emulator's ASGI app: UseGrant's token route, JWKS, discovery and control routes.

Routes:
    ``POST /v1/providers/{providerId}/clients/{clientId}/tokens``
        Mints a signed ES256 JWT, as the real API does (see ``CONTRACT.md``).
    ``GET /.well-known/jwks``
        The public keys of every provider.
    ``GET /.well-known/openid-configuration``
        Discovery for one provider: the one named by ``?provider=<uuid>``, else the one
        whose domain is the request's ``Host``, else the first one.
    ``GET /_emulator/stats``, ``DELETE /_emulator/stats``, ``POST /_emulator/reset``
        Read or reset the request counters.
    ``GET /_emulator/faults``, ``POST /_emulator/faults``
        Read or change the faults (JSON with :class:`Faults` field names, plus
        ``random_seed``); unknown names or bad values get 400.

Checks of a token request, in order: injected faults (drop, fail), API key (401), rate
limit (429), path UUIDs (400), body (400), provider and client (404). Error bodies are
``{"code", "message"}`` with codes ``BAD_REQUEST``, ``UNAUTHORIZED``, ``NOT_FOUND``,
``TOO_MANY_REQUESTS``, ``INTERNAL_SERVER_ERROR`` (the real codes are not documented).

Body rules (a JavaScript backend's view of JSON): no body, or an empty one, is an
empty request; otherwise it must be a JSON object. ``expiresIn`` must be a number
with an integral value in 1..172800 seconds (``3600.0`` is accepted: JavaScript cannot
tell it from ``3600``; ``1.5``, ``"3600"`` and booleans are 400). The three flags must
be booleans. ``null`` is refused for every field (clients must leave unset fields out).
Unknown fields are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
import random
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from usegrant_flows.api.models import MAX_EXPIRES_IN, format_js_datetime
from usegrant_flows.emulator.faults import Faults, RequestStats, SlidingWindowLimiter
from usegrant_flows.emulator.keys import ALGORITHM, SigningKey
from usegrant_flows.emulator.seed import Seed, SeedClient, SeedProvider
from usegrant_flows.errors import ConfigurationError

__all__ = ["DROP_EXTENSION", "TOKEN_ROUTE", "EmulatorState", "create_app"]

#: The ASGI scope extension (set by the emulator's server) that drops a connection.
DROP_EXTENSION = "usegrant.emulator.drop"
#: The route template of the token endpoint, as used in the stats.
TOKEN_ROUTE = "POST /v1/providers/{providerId}/clients/{clientId}/tokens"  # noqa: S105
_DEFAULT_EXPIRES_IN = 3600
_FLAGS = ("useJwtType", "audienceAsArray", "forceDefaultDomain")
_PROXY_STATUSES = frozenset({502, 503, 504})
_ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    429: "TOO_MANY_REQUESTS",
    500: "INTERNAL_SERVER_ERROR",
}


class EmulatorState:
    """Seed, keys, faults, limiter and counters shared by the app and its owner.

    Every method is thread-safe: the app runs in the server's event loop while tests
    read stats and change faults from their own thread.

    Args:
        seed: What to serve.
        faults: Initial faults.
        random_seed: Seed of the random draws behind ``fail_rate`` and ``drop_rate``.
    """

    def __init__(self, seed: Seed, faults: Faults, random_seed: int | None = None) -> None:
        self.seed = seed
        self.keys: dict[uuid.UUID, SigningKey] = {
            provider.id: SigningKey.generate() for provider in seed.providers
        }
        self._api_keys = [key.get_secret_value().encode() for key in seed.api_keys]
        self._lock = threading.Lock()
        self._faults = faults
        self._random = random.Random(random_seed)  # noqa: S311 - fault injection, not crypto
        self._limiter = SlidingWindowLimiter()
        self._stats = RequestStats(time.monotonic())

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._faults

    def set_faults(self, *, random_seed: int | None = None, **changes: Any) -> Faults:
        """Change some faults; unnamed ones keep their value.

        Args:
            random_seed: When given, re-seed the random draws.
            **changes: :class:`Faults` fields.

        Returns:
            The faults now in force.

        Raises:
            ConfigurationError: An unknown name or a value out of range.
        """
        with self._lock:
            try:
                faults = Faults.model_validate({**self._faults.model_dump(), **changes})
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in err['loc']) or 'faults'}: {err['msg']}"
                    for err in exc.errors(include_input=False)
                )
                raise ConfigurationError(f"invalid emulator faults: {problems}") from None
            self._faults = faults
            if random_seed is not None:
                self._random.seed(random_seed)
            return faults

    def draw(self) -> float:
        """Return the next random number in [0, 1) of the fault draws."""
        with self._lock:
            return self._random.random()

    def is_api_key(self, presented: str) -> bool:
        """Tell whether ``presented`` is one of the seed's API keys (constant time)."""
        raw = presented.encode()
        return any(hmac.compare_digest(raw, key) for key in self._api_keys)

    def admit(self, api_key: str) -> int | None:
        """Apply the rate limit; return ``None`` or the seconds of ``Retry-After``."""
        with self._lock:
            limit = self._faults.rate_limit
            if limit is None:
                return None
            return self._limiter.acquire(
                api_key, limit=limit, window=self._faults.rate_window, now=time.monotonic()
            )

    def token_call(self) -> None:
        """Count the arrival of a token request."""
        with self._lock:
            self._stats.token_call(time.monotonic())

    def answered(self, route: str, outcome: str, client_id: str | None = None) -> None:
        """Count how a request ended (see :meth:`RequestStats.answered`)."""
        with self._lock:
            self._stats.answered(route, outcome, client_id)

    def stats(self) -> dict[str, Any]:
        """Return the counters as JSON-ready data (see :meth:`RequestStats.snapshot`)."""
        with self._lock:
            return self._stats.snapshot(self._faults.rate_window)

    def reset_stats(self) -> None:
        """Zero the counters and the per-window call log, and empty the rate limiter."""
        with self._lock:
            self._stats = RequestStats(time.monotonic())
            self._limiter.clear()

    def jwks(self) -> dict[str, Any]:
        """Return the JWK set of every provider's public key."""
        return {"keys": [key.public_jwk() for key in self.keys.values()]}


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    code = _ERROR_CODES.get(status, f"HTTP_{status}")
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


def _proxy_page(status: int) -> Response:
    page = (
        f"<html><head><title>{status}</title></head>"
        f"<body><center><h1>{status} Service Temporarily Unavailable</h1></center>"
        "<hr><center>emulated proxy</center></body></html>"
    )
    return HTMLResponse(page, status_code=status)


def _injected_failure(status: int) -> Response:
    if status in _PROXY_STATUSES:
        return _proxy_page(status)
    if status == 429:
        return _error(429, "Rate limit exceeded (injected)", {"Retry-After": "1"})
    return _error(status, f"Injected failure {status}")


def _parse_body(raw: bytes) -> dict[str, Any] | str:
    """Return the validated options, or a message saying what is wrong."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return "Request body is not valid JSON"
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    options: dict[str, Any] = {}
    if "expiresIn" in body:
        value = body["expiresIn"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "expiresIn must be a number (seconds)"
        if not math.isfinite(value) or value != int(value):
            return "expiresIn must be a whole number of seconds"
        if not 1 <= value <= MAX_EXPIRES_IN:
            return f"expiresIn must be between 1 and {MAX_EXPIRES_IN} seconds"
        options["expiresIn"] = int(value)
    for flag in _FLAGS:
        if flag in body:
            if not isinstance(body[flag], bool):
                return f"{flag} must be a boolean"
            options[flag] = body[flag]
    return options


def _mint(
    state: EmulatorState, provider: SeedProvider, client: SeedClient, options: dict[str, Any]
) -> dict[str, str]:
    issued_at = int(time.time())
    expires_at = issued_at + int(options.get("expiresIn", _DEFAULT_EXPIRES_IN))
    audience: str | list[str] = client.audience
    if options.get("audienceAsArray") is True:
        audience = [client.audience]
    claims = {
        "iss": provider.issuer(force_default_domain=options.get("forceDefaultDomain") is True),
        "sub": client.subject,
        "aud": audience,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": expires_at,
        "jti": str(uuid.uuid4()),
    }
    typ = "jwt" if options.get("useJwtType") is True else "at+jwt"
    token = state.keys[provider.id].sign(claims, typ=typ)
    return {
        "accessToken": token,
        "expiresAt": format_js_datetime(datetime.fromtimestamp(expires_at, tz=timezone.utc)),
        "type": "Bearer",
    }


async def _drop(request: Request) -> None:
    """Close the connection without an answer (needs the emulator's server protocol)."""
    drop: Callable[[], None] | None = request.scope.get("extensions", {}).get(DROP_EXTENSION)
    if drop is None:
        raise RuntimeError("drop_rate needs the emulator's server (run_emulator or serve)")
    drop()

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    # Wait for the server to notice, so that it writes no 500 after the close.
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(disconnected(), timeout=5.0)


def _bearer_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return key.strip()


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def create_app(state: EmulatorState) -> Starlette:
    """Build the ASGI app over ``state``.

    Args:
        state: The seed, keys, faults and counters to serve.

    Returns:
        A Starlette app. ``drop_rate`` needs the server of :mod:`.server`.
    """

    async def latency() -> None:
        delay = state.faults.latency_ms / 1000.0
        if delay > 0:
            await asyncio.sleep(delay)

    async def create_token(request: Request) -> Response:
        client_param = request.path_params["client_id"]
        state.token_call()
        await latency()
        response = await _token_answer(request)
        if response is None:
            # Count first: the client may read the stats as soon as it sees the drop.
            state.answered(TOKEN_ROUTE, "dropped", client_param)
            await _drop(request)
            return Response(status_code=204)  # never written: the connection is gone
        state.answered(TOKEN_ROUTE, str(response.status_code), client_param)
        return response

    async def _token_answer(request: Request) -> Response | None:
        # Read the body first: closing a socket with unread input would send a reset.
        raw_body = await request.body()
        draw = state.draw()
        faults = state.faults
        if draw < faults.drop_rate:
            return None
        if draw < faults.drop_rate + faults.fail_rate:
            return _injected_failure(faults.fail_status)
        api_key = _bearer_key(request)
        if api_key is None or not state.is_api_key(api_key):
            return _error(401, "Missing, invalid or expired API key")
        retry_after = state.admit(api_key)
        if retry_after is not None:
            return _error(429, "Rate limit exceeded", {"Retry-After": str(retry_after)})
        provider_id = _as_uuid(request.path_params["provider_id"])
        client_id = _as_uuid(request.path_params["client_id"])
        if provider_id is None or client_id is None:
            return _error(400, "providerId and clientId must be UUIDs")
        options = _parse_body(raw_body)
        if isinstance(options, str):
            return _error(400, options)
        provider = state.seed.provider(provider_id)
        if provider is None:
            return _error(404, "Provider not found")
        client = next((c for c in provider.clients if c.id == client_id), None)
        if client is None:
            return _error(404, "Client not found")
        return JSONResponse(_mint(state, provider, client, options), status_code=201)

    async def jwks(request: Request) -> Response:
        await latency()
        state.answered("GET /.well-known/jwks", "200")
        return JSONResponse(state.jwks())

    async def discovery(request: Request) -> Response:
        await latency()
        provider = _discovered_provider(request)
        if provider is None:
            state.answered("GET /.well-known/openid-configuration", "404")
            return _error(404, "Provider not found")
        base = str(request.base_url).rstrip("/")
        state.answered("GET /.well-known/openid-configuration", "200")
        return JSONResponse(
            {
                "issuer": provider.issuer(),
                "jwks_uri": f"{base}/.well-known/jwks",
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": [ALGORITHM],
                "grant_types_supported": ["client_credentials"],
                "claims_supported": ["iss", "sub", "aud", "iat", "nbf", "exp", "jti"],
            }
        )

    def _discovered_provider(request: Request) -> SeedProvider | None:
        wanted = request.query_params.get("provider")
        if wanted is not None:
            provider_id = _as_uuid(wanted)
            return state.seed.provider(provider_id) if provider_id else None
        host = request.headers.get("host", "").split(":")[0]
        for provider in state.seed.providers:
            if host in (provider.default_domain, provider.custom_domain):
                return provider
        return state.seed.providers[0] if state.seed.providers else None

    async def read_stats(request: Request) -> Response:
        return JSONResponse(state.stats())

    async def reset_stats(request: Request) -> Response:
        state.reset_stats()
        return Response(status_code=204)

    async def read_faults(request: Request) -> Response:
        return JSONResponse(state.faults.model_dump())

    async def change_faults(request: Request) -> Response:
        try:
            changes = json.loads(await request.body() or b"{}")
        except ValueError:
            return _error(400, "Request body is not valid JSON")
        if not isinstance(changes, dict):
            return _error(400, "Request body must be a JSON object")
        try:
            faults = state.set_faults(**changes)
        except (ConfigurationError, TypeError) as exc:
            return _error(400, str(exc))
        return JSONResponse(faults.model_dump())

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "Internal server error"
        headers = exc.headers if isinstance(exc, HTTPException) else None
        return _error(status, str(detail), headers)

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        HTTPException: http_error
    }
    return Starlette(
        routes=[
            Route(
                "/v1/providers/{provider_id}/clients/{client_id}/tokens",
                create_token,
                methods=["POST"],
            ),
            Route("/.well-known/jwks", jwks, methods=["GET"]),
            Route("/.well-known/jwks.json", jwks, methods=["GET"]),
            Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
            Route("/_emulator/stats", read_stats, methods=["GET"]),
            Route("/_emulator/stats", reset_stats, methods=["DELETE"]),
            Route("/_emulator/reset", reset_stats, methods=["POST"]),
            Route("/_emulator/faults", read_faults, methods=["GET"]),
            Route("/_emulator/faults", change_faults, methods=["POST"]),
        ],
        exception_handlers=handlers,
    )
