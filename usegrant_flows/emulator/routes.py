"""The emulator's route handlers, as methods of :class:`Routes` over one state.

Checks of a token request, in order: injected proxy faults (drop, fail), API key (401),
rate limit (429), path UUIDs (400), body (400, see :mod:`.tokens`), provider and client
(404); then a sound ``201`` or a hostile fault's answer (see :mod:`.faults`).
"""

from __future__ import annotations

import asyncio
import json
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.emulator.answers import drop, error, injected_failure
from usegrant_flows.emulator.hostile import hostile_answer
from usegrant_flows.emulator.keys import ALGORITHM
from usegrant_flows.emulator.seed import SeedProvider
from usegrant_flows.emulator.state import EmulatorState
from usegrant_flows.emulator.tokens import TokenOrder, parse_options

__all__ = ["DISCOVERY_ROUTE", "JWKS_ROUTE", "TOKEN_ROUTE", "Routes"]

#: The route template of the token endpoint, as used in the stats.
TOKEN_ROUTE = "POST /v1/providers/{providerId}/clients/{clientId}/tokens"  # noqa: S105
#: The JWKS route, as used in the stats.
JWKS_ROUTE = "GET /.well-known/jwks"
#: The discovery route, as used in the stats.
DISCOVERY_ROUTE = "GET /.well-known/openid-configuration"


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


class Routes:
    """The route handlers (Starlette endpoints) over one :class:`EmulatorState`.

    Args:
        state: The seed, keys, faults and counters to serve.
    """

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def _latency(self) -> None:
        delay = self.state.faults.latency_ms / 1000.0
        if delay > 0:
            await asyncio.sleep(delay)

    async def create_token(self, request: Request) -> Response:
        """``POST /v1/providers/{providerId}/clients/{clientId}/tokens``: mint a token."""
        state = self.state
        client_param = request.path_params["client_id"]
        state.token_call()
        await self._latency()
        # Read the body first: closing a socket with unread input would send a reset.
        raw_body = await request.body()
        fault = state.draw_fault()
        if fault == "drop":
            # Count first: the client may read the stats as soon as it sees the drop.
            state.answered(TOKEN_ROUTE, "dropped", client_param, fault)
            await drop(request)
            return Response(status_code=204)  # never written: the connection is gone
        if fault == "fail":
            response = injected_failure(state.faults.fail_status)
            state.answered(TOKEN_ROUTE, str(response.status_code), client_param, fault)
            return response
        checked = self._check(request, raw_body)
        if isinstance(checked, Response):
            state.answered(TOKEN_ROUTE, str(checked.status_code), client_param)
            return checked
        if fault is None:
            response = JSONResponse(checked.signed(state.keys[checked.provider.id]), 201)
        else:
            response = hostile_answer(fault, state, checked)
        state.answered(TOKEN_ROUTE, str(response.status_code), client_param, fault)
        return response

    def _check(self, request: Request, raw_body: bytes) -> TokenOrder | Response:
        state = self.state
        api_key = _bearer_key(request)
        if api_key is None or not state.is_api_key(api_key):
            return error(401, "Missing, invalid or expired API key")
        retry_after = state.admit(api_key)
        if retry_after is not None:
            return error(429, "Rate limit exceeded", {"Retry-After": str(retry_after)})
        provider_id = _as_uuid(request.path_params["provider_id"])
        client_id = _as_uuid(request.path_params["client_id"])
        if provider_id is None or client_id is None:
            return error(400, "providerId and clientId must be UUIDs")
        options = parse_options(raw_body)
        if isinstance(options, str):
            return error(400, options)
        provider = state.seed.provider(provider_id)
        if provider is None:
            return error(404, "Provider not found")
        client = next((c for c in provider.clients if c.id == client_id), None)
        if client is None:
            return error(404, "Client not found")
        return TokenOrder(provider, client, options)

    async def jwks(self, request: Request) -> Response:
        """``GET /.well-known/jwks``: every provider's public key."""
        await self._latency()
        self.state.answered(JWKS_ROUTE, "200")
        return JSONResponse(self.state.jwks())

    async def discovery(self, request: Request) -> Response:
        """``GET /.well-known/openid-configuration``: discovery for one provider."""
        await self._latency()
        provider = self._discovered_provider(request)
        if provider is None:
            self.state.answered(DISCOVERY_ROUTE, "404")
            return error(404, "Provider not found")
        base = str(request.base_url).rstrip("/")
        self.state.answered(DISCOVERY_ROUTE, "200")
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

    def _discovered_provider(self, request: Request) -> SeedProvider | None:
        seed = self.state.seed
        wanted = request.query_params.get("provider")
        if wanted is not None:
            provider_id = _as_uuid(wanted)
            return seed.provider(provider_id) if provider_id else None
        host = request.headers.get("host", "").split(":")[0]
        for provider in seed.providers:
            if host in (provider.default_domain, provider.custom_domain):
                return provider
        return seed.providers[0] if seed.providers else None

    async def read_stats(self, request: Request) -> Response:
        """``GET /_emulator/stats``: the counters."""
        return JSONResponse(self.state.stats())

    async def reset_stats(self, request: Request) -> Response:
        """``DELETE /_emulator/stats`` and ``POST /_emulator/reset``: zero the counters."""
        self.state.reset_stats()
        return Response(status_code=204)

    async def read_faults(self, request: Request) -> Response:
        """``GET /_emulator/faults``: the faults in force."""
        return JSONResponse(self.state.faults.model_dump())

    async def change_faults(self, request: Request) -> Response:
        """``POST /_emulator/faults``: change faults (and ``random_seed``) at run time."""
        try:
            changes = json.loads(await request.body() or b"{}")
        except ValueError:
            return error(400, "Request body is not valid JSON")
        if not isinstance(changes, dict):
            return error(400, "Request body must be a JSON object")
        try:
            faults = self.state.set_faults(**changes)
        except (ConfigurationError, TypeError) as exc:
            return error(400, str(exc))
        return JSONResponse(faults.model_dump())
