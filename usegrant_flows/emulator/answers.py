"""Error answers of the emulator, and closing a connection without an answer.

Error bodies are ``{"code", "message"}`` with codes ``BAD_REQUEST``, ``UNAUTHORIZED``,
``NOT_FOUND``, ``TOO_MANY_REQUESTS``, ``INTERNAL_SERVER_ERROR`` (the real codes are not
documented). Injected 502/503/504 come as a proxy's HTML page instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Scope

__all__ = ["DROP_EXTENSION", "abort_connection", "drop", "error", "injected_failure"]

#: The ASGI scope extension (set by the emulator's server) that drops a connection.
DROP_EXTENSION = "usegrant.emulator.drop"
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


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """Return a ``{"code", "message"}`` error answer.

    Args:
        status: HTTP status, 400..599.
        message: Human-readable message (never a secret).
        headers: Extra headers, e.g. ``Retry-After``.
    """
    code = _ERROR_CODES.get(status, f"HTTP_{status}")
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


def _proxy_page(status: int) -> Response:
    page = (
        f"<html><head><title>{status}</title></head>"
        f"<body><center><h1>{status} Service Temporarily Unavailable</h1></center>"
        "<hr><center>emulated proxy</center></body></html>"
    )
    return HTMLResponse(page, status_code=status)


def injected_failure(status: int) -> Response:
    """Return the answer of the ``fail`` fault for ``status`` (400..599)."""
    if status in _PROXY_STATUSES:
        return _proxy_page(status)
    if status == 429:
        return error(429, "Rate limit exceeded (injected)", {"Retry-After": "1"})
    return error(status, f"Injected failure {status}")


def abort_connection(scope: Scope) -> None:
    """Close the connection at once, writing nothing more.

    Args:
        scope: The ASGI scope of a request served by the emulator's server.

    Raises:
        RuntimeError: Another server runs the app (it lacks :data:`DROP_EXTENSION`).
    """
    abort: Callable[[], None] | None = scope.get("extensions", {}).get(DROP_EXTENSION)
    if abort is None:
        raise RuntimeError("this fault needs the emulator's server (run_emulator or serve)")
    abort()


async def drop(request: Request) -> None:
    """Close the connection without an answer (needs the emulator's server protocol)."""
    abort_connection(request.scope)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    # Wait for the server to notice, so that it writes no 500 after the close.
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(disconnected(), timeout=5.0)
