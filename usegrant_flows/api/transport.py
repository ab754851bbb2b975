"""The wire under the clients: httpx pools, and one bounded send per attempt.

Nothing here trusts the server. :func:`send` and :func:`asend` stream the answer and stop
at one wall-clock deadline per attempt that covers connecting, sending, the headers and
the *whole* body (httpx's own timeout applies to each read, so a body trickling one
byte every 2 s would never time out), and at :data:`MAX_ANSWER_BYTES` of body. The
sync path enforces the deadline on every socket operation (each read's timeout is cut
to the time left, see :class:`_DeadlineBackend`); the async path runs the attempt
inside ``anyio.fail_after``.

Building pools is cheap: every pool of every client in the process shares one
:class:`ssl.SSLContext` (:func:`shared_ssl_context`; loading the CA bundle costs
~20 ms, once). This module never imports Prefect.
"""

from __future__ import annotations

import ssl
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from usegrant_flows._version import __version__

__all__ = [
    "CONNECTIONS_PER_ASYNC_POOL",
    "MAX_ANSWER_BYTES",
    "USER_AGENT",
    "Answer",
    "asend",
    "async_pool",
    "send",
    "shared_ssl_context",
    "sync_pool",
]

#: The ``User-Agent`` header sent with every request.
USER_AGENT = f"usegrant-flows/{__version__}"
#: Largest answer body read, in bytes (64 KiB); a token answer is well under 4 KiB.
MAX_ANSWER_BYTES = 64 * 1024
#: Connections per httpx pool in the async client: httpx's AsyncClient slows down
#: sharply with many connections in one pool (32 in one: ~330 req/s; 8 pools of 4:
#: ~1,300 req/s on our 2-core machines).
CONNECTIONS_PER_ASYNC_POOL = 4
# identity: a compressed body could inflate a thousandfold past the byte limit.
_HEADERS = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}

_ssl_context: ssl.SSLContext | None = None
_ssl_lock = threading.Lock()


def shared_ssl_context() -> ssl.SSLContext:
    """Return the process's one TLS context, built on first use (certifi's CA bundle).

    httpx builds a context per pool, which loads the CA bundle each time (~20 ms);
    an :class:`ssl.SSLContext` is safe to share between threads and pools.
    """
    global _ssl_context
    if _ssl_context is None:
        with _ssl_lock:
            if _ssl_context is None:
                _ssl_context = httpx.create_ssl_context()
    return _ssl_context


@dataclass(frozen=True)
class Answer:
    """An HTTP answer whose body was read within the bounds (or refused).

    Attributes:
        status: The HTTP status code.
        reason: The reason phrase (may be empty).
        headers: The answer's headers.
        body: The body, at most :data:`MAX_ANSWER_BYTES` bytes; empty when refused.
        refused: Why the body was not read (too long, compressed), else ``None``.
    """

    status: int
    reason: str
    headers: httpx.Headers
    body: bytes = b""
    refused: str | None = None


# --- the sync deadline: every socket operation gets at most the time left ------------------

# The monotonic time the current attempt must end by; a context variable, so the
# threads sharing one client each carry their own.
_deadline: ContextVar[float] = ContextVar("usegrant_deadline", default=float("inf"))


def _time_left(timeout: float | None) -> float:
    """Return ``timeout`` cut to what is left of the attempt; raise once nothing is."""
    left = _deadline.get() - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the attempt's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every read and write ends by the attempt's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _time_left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _time_left(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(ssl_context, server_hostname, _time_left(timeout))
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's sync backend, with every stream bounded by :data:`_deadline`."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(
            host, port, _time_left(timeout), local_address, socket_options
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_unix_socket(path, _time_left(timeout), socket_options)
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _bound_sync_transports(http: httpx.Client) -> None:
    """Put :class:`_DeadlineBackend` under every pool of ``http`` (proxies included).

    httpx has no public hook for the network backend; the pools keep it in
    ``_network_backend`` and build every connection from it.
    """
    transports = [http._transport, *(t for t in http._mounts.values() if t is not None)]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.NetworkBackend) and not isinstance(
            backend, _DeadlineBackend
        ):
            pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]


def sync_pool(base_url: str, timeout: float, max_connections: int) -> httpx.Client:
    """Return a bounded :class:`httpx.Client` for one sync client.

    Args:
        base_url: The API base URL.
        timeout: Seconds for each connect, write and read (> 0); :func:`send` cuts it.
        max_connections: Pool size (>= 1).
    """
    http = httpx.Client(
        base_url=base_url,
        headers=_HEADERS,
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        timeout=timeout,
        verify=shared_ssl_context(),
    )
    _bound_sync_transports(http)
    return http


def async_pool(base_url: str, timeout: float, max_connections: int) -> httpx.AsyncClient:
    """Return an :class:`httpx.AsyncClient` of ``max_connections`` (>= 1) connections."""
    return httpx.AsyncClient(
        base_url=base_url,
        headers=_HEADERS,
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        timeout=timeout,
        verify=shared_ssl_context(),
    )


# --- reading an answer ------------------------------------------------------------------------


def _head(response: httpx.Response) -> Answer | None:
    """Return a refused :class:`Answer` when the headers alone rule the body out."""
    refused: str | None = None
    length = response.headers.get("Content-Length", "").strip()
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if length.isdigit() and int(length) > MAX_ANSWER_BYTES:
        refused = f"announced as {int(length)} bytes, over the {MAX_ANSWER_BYTES}-byte limit"
    elif encoding not in ("", "identity"):
        refused = "compressed although identity was asked for"
    if refused is None:
        return None
    return Answer(response.status_code, response.reason_phrase, response.headers, refused=refused)


def _over_limit(response: httpx.Response) -> Answer:
    refused = f"longer than the {MAX_ANSWER_BYTES}-byte limit"
    return Answer(response.status_code, response.reason_phrase, response.headers, refused=refused)


def send(http: httpx.Client, request: httpx.Request, deadline: float) -> Answer:
    """Send ``request`` and read the answer, all of it by ``deadline``.

    Args:
        http: The pool from :func:`sync_pool`.
        request: The request; its timeout should not exceed the time left.
        deadline: ``time.monotonic()`` value the attempt must end by.

    Raises:
        httpx.TransportError: Connection failures, and ``httpx.ReadTimeout`` (or another
            timeout) when the deadline passes before the whole answer is in.
    """
    token = _deadline.set(deadline)
    try:
        response = http.send(request, stream=True)
        try:
            refused = _head(response)
            if refused is not None:
                return refused
            body = bytearray()
            for chunk in response.iter_raw():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    return _over_limit(response)
                if time.monotonic() >= deadline:  # a read may end just before it
                    raise httpx.ReadTimeout("the attempt's deadline passed mid-body")
            reason = response.reason_phrase
            return Answer(response.status_code, reason, response.headers, bytes(body))
        finally:
            response.close()  # an unread body closes the connection instead of reusing it
    finally:
        _deadline.reset(token)


async def asend(http: httpx.AsyncClient, request: httpx.Request, deadline: float) -> Answer:
    """Async form of :func:`send`: the whole attempt runs inside ``anyio.fail_after``.

    Raises:
        httpx.TransportError: Connection failures and httpx's own timeouts.
        TimeoutError: When the deadline passes before the whole answer is in.
    """
    import anyio  # only async users pay for it; httpx has imported it already

    with anyio.fail_after(max(0.0, deadline - time.monotonic())):
        response = await http.send(request, stream=True)
        try:
            refused = _head(response)
            if refused is not None:
                return refused
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    return _over_limit(response)
            reason = response.reason_phrase
            return Answer(response.status_code, reason, response.headers, bytes(body))
        finally:
            await response.aclose()
