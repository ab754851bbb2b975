"""The emulator's ASGI app: UseGrant's token route, JWKS, discovery and control routes.

Routes:
    ``POST /v1/providers/{providerId}/clients/{clientId}/tokens``
        Mints a signed ES256 JWT, as the real API does (see ``CONTRACT.md``), unless a
        fault is injected (see :mod:`.faults`). Checks and body rules: :mod:`.routes`,
        :mod:`.tokens`.
    ``GET /.well-known/jwks``
        The public keys of every provider.
    ``GET /.well-known/openid-configuration``
        Discovery for one provider: the one named by ``?provider=<uuid>``, else the one
        whose domain is the request's ``Host``, else the first one.
    ``GET /_emulator/stats``, ``DELETE /_emulator/stats``, ``POST /_emulator/reset``
        Read or reset the request counters.
    ``GET /_emulator/faults``, ``POST /_emulator/faults``
        Read or change the faults (JSON with :class:`~.faults.Faults` field names, plus
        ``random_seed``); unknown names or bad values get 400.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from usegrant_flows.emulator.answers import DROP_EXTENSION, error
from usegrant_flows.emulator.routes import TOKEN_ROUTE, Routes
from usegrant_flows.emulator.state import EmulatorState

__all__ = ["DROP_EXTENSION", "TOKEN_ROUTE", "EmulatorState", "create_app"]


async def _http_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return error(exc.status_code, str(exc.detail), exc.headers)
    return error(500, "Internal server error")


def create_app(state: EmulatorState) -> Starlette:
    """Build the ASGI app over ``state``.

    Args:
        state: The seed, keys, faults and counters to serve.

    Returns:
        A Starlette app. ``drop_rate`` and the streamed faults' cut-off need the server
        of :mod:`.server`.
    """
    routes = Routes(state)
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        HTTPException: _http_error
    }
    return Starlette(
        routes=[
            Route(
                "/v1/providers/{provider_id}/clients/{client_id}/tokens",
                routes.create_token,
                methods=["POST"],
            ),
            Route("/.well-known/jwks", routes.jwks, methods=["GET"]),
            Route("/.well-known/jwks.json", routes.jwks, methods=["GET"]),
            Route("/.well-known/openid-configuration", routes.discovery, methods=["GET"]),
            Route("/_emulator/stats", routes.read_stats, methods=["GET"]),
            Route("/_emulator/stats", routes.reset_stats, methods=["DELETE"]),
            Route("/_emulator/reset", routes.reset_stats, methods=["POST"]),
            Route("/_emulator/faults", routes.read_faults, methods=["GET"]),
            Route("/_emulator/faults", routes.change_faults, methods=["POST"]),
        ],
        exception_handlers=handlers,
    )
