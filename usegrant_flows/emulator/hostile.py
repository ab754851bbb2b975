"""The answers of the hostile faults: ``201`` s that no client should trust.

See :mod:`.faults` for what each fault sends. The two streamed answers run under
:meth:`.state.EmulatorState.stream`, so ``active_streams`` in the stats tells a test
whether the emulator really stopped once the client went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from usegrant_flows.emulator.answers import abort_connection
from usegrant_flows.emulator.faults import (
    ENDLESS_CHUNK_BYTES,
    ENDLESS_CHUNK_INTERVAL_S,
    EXPIRED_BY_S,
    NESTED_DEPTH,
    OVERSIZE_PAD_BYTES,
)
from usegrant_flows.emulator.state import EmulatorState
from usegrant_flows.emulator.tokens import DEFAULT_EXPIRES_IN, TokenOrder

__all__ = ["GARBAGE_BODY", "hostile_answer"]

#: The body of the ``garbage`` fault: neither JSON nor UTF-8.
GARBAGE_BODY = b"\x89PNG\r\n\x1a\n\xff\xfe<html>{accessToken: nope}</html>\x00"
_ENDLESS_HEAD = b'{"accessToken":"'
_ENDLESS_CHUNK = b"a" * ENDLESS_CHUNK_BYTES
# How often a waiting stream looks at the server's shutdown flag, in seconds: it
# bounds how long a stopping server waits for a slow body between two bytes.
_CLOSING_POLL_S = 0.1
_STATUS = 201
# Seconds to wait for the server to notice an aborted connection.
_ABORT_WAIT_S = 5.0


class _StreamedAnswer(Response):
    """A ``201`` whose body comes from a paced chunk source, cut at a time bound.

    The source stops when the client disconnects, when the server shuts down, or after
    ``limit_s`` seconds (then the connection is aborted: the body is never complete).
    """

    def __init__(
        self,
        state: EmulatorState,
        chunks: Callable[[], AsyncIterator[bytes]],
        headers: dict[str, str],
        limit_s: float,
    ) -> None:
        super().__init__(status_code=_STATUS)
        # Our own headers only: Response would add ``content-length: 0`` for no content.
        self.raw_headers = [(name.encode(), value.encode()) for name, value in headers.items()]
        self._state = state
        self._chunks = chunks
        self._limit_s = limit_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self._state.stream():
            await send(
                {"type": "http.response.start", "status": _STATUS, "headers": self.raw_headers}
            )
            pump = asyncio.ensure_future(self._pump(send))
            stoppers = [
                asyncio.ensure_future(_disconnected(receive)),
                asyncio.ensure_future(_closing(self._state)),
            ]
            try:
                await asyncio.wait(
                    [pump, *stoppers], timeout=self._limit_s, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for task in (pump, *stoppers):
                    task.cancel()
                await asyncio.gather(pump, *stoppers, return_exceptions=True)
            if not (pump.done() and not pump.cancelled() and pump.exception() is None):
                # Cut off, or the client left: never leave a half body looking complete.
                with contextlib.suppress(RuntimeError):
                    abort_connection(scope)
                    # Wait for the server to see the close, or it logs a half response.
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(_disconnected(receive), _ABORT_WAIT_S)

    async def _pump(self, send: Send) -> None:
        async for chunk in self._chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _closing(state: EmulatorState) -> None:
    while not state.closing:
        await asyncio.sleep(_CLOSING_POLL_S)


def _slow_body(state: EmulatorState, body: bytes) -> Response:
    interval_s = state.faults.slow_body_interval_ms / 1000.0

    async def chunks() -> AsyncIterator[bytes]:
        for index in range(len(body)):
            if index:
                await asyncio.sleep(interval_s)
            yield body[index : index + 1]

    headers = {"content-type": "application/json", "content-length": str(len(body))}
    return _StreamedAnswer(state, chunks, headers, state.faults.stream_limit_s)


def _endless_body(state: EmulatorState) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        yield _ENDLESS_HEAD
        while True:
            await asyncio.sleep(ENDLESS_CHUNK_INTERVAL_S)
            yield _ENDLESS_CHUNK

    # No content-length: h11 then sends the body chunked, with no end in sight.
    headers = {"content-type": "application/json"}
    return _StreamedAnswer(state, chunks, headers, state.faults.stream_limit_s)


def _json(body: dict[str, Any]) -> Response:
    return JSONResponse(body, status_code=_STATUS)


def _raw(body: bytes) -> Response:
    return Response(body, status_code=_STATUS, media_type="application/json")


def hostile_answer(fault: str, state: EmulatorState, order: TokenOrder) -> Response:
    """Return the answer of a hostile fault to an accepted token request.

    Args:
        fault: A name of :data:`.faults.HOSTILE_FAULTS`.
        state: The emulator's state (keys, faults, stream gauge).
        order: The accepted request.

    Raises:
        ValueError: ``fault`` is not a hostile fault.
    """
    key = state.keys[order.provider.id]
    if fault == "slow_body":
        sound = json.dumps(order.signed(key), separators=(",", ":")).encode()
        return _slow_body(state, sound)
    if fault == "endless_body":
        return _endless_body(state)
    if fault == "expired":
        lifetime = int(order.options.get("expiresIn", DEFAULT_EXPIRES_IN))
        issued_at = int(time.time()) - EXPIRED_BY_S - lifetime
        return _json(order.signed(key, issued_at=issued_at))
    if fault == "bad_signature":
        return _json(order.signed(state.rogue_keys[order.provider.id]))
    if fault == "alg_none":
        return _json(order.unsigned())
    if fault == "oversize":
        return _json(order.signed(key, pad="A" * OVERSIZE_PAD_BYTES))
    if fault == "nested":
        return _raw(b"[" * NESTED_DEPTH + b"]" * NESTED_DEPTH)
    if fault == "garbage":
        return _raw(GARBAGE_BODY)
    raise ValueError(f"not a hostile fault: {fault!r}")
