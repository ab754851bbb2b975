"""The clients against a hostile server on a raw loopback socket.

httpx's timeout applies to each read, so only a real socket shows that a body trickling
one byte every 2 s, an endless chunked body or a huge announced length cannot hold a
call past its deadline or make it read without bound. The server runs in threads on
127.0.0.1, serves a bounded number of connections and gives up after bounded time.
Assertions are on outcomes (errors, attempts, disconnects, bytes), never on timings;
elapsed time is only checked against a generous sanity bound.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from usegrant_flows.api.client import AsyncUseGrantClient, RetryPolicy, UseGrantClient
from usegrant_flows.api.errors import InvalidResponseError, UseGrantConnectionError
from usegrant_flows.api.transport import MAX_ANSWER_BYTES

PROVIDER = "5b0f4c3e-8d7a-4a3b-9c1d-2e3f4a5b6c7d"
CLIENT = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
API_KEY = "usegrant_hostile_test_key_0b1c"
#: No test may take longer than this, whatever the client does (a sanity bound only).
SANITY_SECONDS = 30.0
#: Bytes a trickling script sends, one every 2 s, before it gives up (60 s in all).
TRICKLE_BYTES = 30
#: The most any script sends on one connection.
SEND_CAP = 64 * 1024 * 1024


@dataclass
class Connection:
    """What the server saw of one connection."""

    sent: int = 0
    trickled: int = 0  # bytes a trickling script sent one at a time
    disconnected: threading.Event = field(default_factory=threading.Event)


class Peer:
    """The server's side of one connection, handed to a script."""

    def __init__(self, sock: socket.socket, record: Connection) -> None:
        self.sock = sock
        self.record = record

    def send(self, data: bytes) -> bool:
        """Send ``data``; False (and the disconnect recorded) once the client is gone."""
        try:
            self.sock.sendall(data)
        except OSError:
            self.record.disconnected.set()
            return False
        self.record.sent += len(data)
        return True

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds``; False (disconnect recorded) if the client hung up."""
        readable, _, _ = select.select([self.sock], [], [], seconds)
        if readable:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self.record.disconnected.set()
                return False
        return True


Script = Callable[[Peer], None]


class HostileServer:
    """A loopback HTTP/1.1 'server' that reads a request and then runs a script."""

    def __init__(self, script: Script, max_connections: int = 5) -> None:
        self.script = script
        self.max_connections = max_connections
        self.connections: list[Connection] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> HostileServer:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._acceptor.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set() and len(self.connections) < self.max_connections:
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            record = Connection()
            self.connections.append(record)
            thread = threading.Thread(target=self._serve, args=(sock, record), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, record: Connection) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
        sock.settimeout(10)
        try:
            request = b""
            while b"\r\n\r\n" not in request and len(request) < 65536:
                chunk = sock.recv(65536)
                if not chunk:
                    record.disconnected.set()
                    return
                request += chunk
            head, _, body = request.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(body) < length:
                body += sock.recv(65536)
            self.script(Peer(sock, record))
        except OSError:
            record.disconnected.set()
        finally:
            sock.close()

    def all_disconnected(self, within: float = 10.0) -> bool:
        """Wait (bounded) until the server saw every connection's client hang up."""
        end = time.monotonic() + within
        return all(c.disconnected.wait(max(0.0, end - time.monotonic())) for c in self.connections)


@pytest.fixture(params=["sync", "async"])
def mint(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Mint one token against ``base_url`` with a client of the parametrized kind."""
    kind = request.param

    async def call(base_url: str, **client_kwargs: Any) -> Any:
        options: dict[str, Any] = {"api_key": API_KEY, "base_url": base_url, **client_kwargs}
        if kind == "sync":
            with UseGrantClient(**options) as client:
                return client.create_token(PROVIDER, CLIENT)
        async with AsyncUseGrantClient(**options) as aclient:
            return await aclient.create_token(PROVIDER, CLIENT)

    return call


# --- scripts -------------------------------------------------------------------------------


def trickle_body(peer: Peer) -> None:
    """A 201 whose 1,000-byte body comes one byte every 2 s (TRICKLE_BYTES at most)."""
    head = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    if not peer.send(head):
        return
    for _ in range(TRICKLE_BYTES):
        if not peer.wait(2.0) or not peer.send(b" "):
            return
        peer.record.trickled += 1


def trickle_headers(peer: Peer) -> None:
    """The status line and headers, one byte every 2 s (TRICKLE_BYTES at most)."""
    for byte in b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}"[:TRICKLE_BYTES]:
        if not peer.send(bytes([byte])):
            return
        peer.record.trickled += 1
        if not peer.wait(2.0):
            return


def endless_chunks(peer: Peer) -> None:
    """A 201 with a chunked body of 4 KiB chunks that never ends (up to SEND_CAP)."""
    if not peer.send(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"):
        return
    chunk = b"1000\r\n" + b"x" * 4096 + b"\r\n"
    while peer.record.sent < SEND_CAP:
        if not peer.send(chunk):
            return


def huge_length(peer: Peer) -> None:
    """A 201 announcing 2 MB, then silence until the client hangs up (at most 20 s)."""
    if peer.send(b"HTTP/1.1 201 Created\r\nContent-Length: 2000000\r\n\r\n"):
        for _ in range(10):
            if not peer.wait(2.0):
                return


# --- tests ---------------------------------------------------------------------------------


async def test_a_trickled_201_body_fails_by_the_retry_deadline(mint: Callable[..., Any]) -> None:
    policy = RetryPolicy(max_attempts=3, deadline=3.0)
    started = time.monotonic()
    with HostileServer(trickle_body) as server, pytest.raises(UseGrantConnectionError):
        await mint(server.base_url, retry=policy, timeout=10.0)

    assert 1 <= len(server.connections) <= policy.max_attempts
    assert server.all_disconnected()
    # The client hung up long before the trickle ran out (a per-read timeout never would).
    assert all(c.trickled < TRICKLE_BYTES // 2 for c in server.connections)
    assert time.monotonic() - started < SANITY_SECONDS


async def test_a_trickled_body_is_a_timeout_retried_up_to_max_attempts(
    mint: Callable[..., Any],
) -> None:
    # Each attempt may take 1 s in all; 3 attempts fit in the 10 s deadline.
    policy = RetryPolicy(max_attempts=3, deadline=10.0)
    with HostileServer(trickle_body) as server, pytest.raises(UseGrantConnectionError) as caught:
        await mint(server.base_url, retry=policy, timeout=1.0)

    assert len(server.connections) == policy.max_attempts
    assert server.all_disconnected()
    assert API_KEY not in str(caught.value)


async def test_trickled_headers_fail_by_the_deadline(mint: Callable[..., Any]) -> None:
    policy = RetryPolicy(max_attempts=2, deadline=3.0)
    started = time.monotonic()
    with HostileServer(trickle_headers) as server, pytest.raises(UseGrantConnectionError):
        await mint(server.base_url, retry=policy, timeout=10.0)

    assert 1 <= len(server.connections) <= policy.max_attempts
    assert server.all_disconnected()
    assert all(c.trickled < TRICKLE_BYTES // 2 for c in server.connections)
    assert time.monotonic() - started < SANITY_SECONDS


@pytest.fixture
def bytes_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the body bytes the client took from httpx (sync and async)."""
    taken = [0]
    sync_iter, async_iter = httpx.Response.iter_raw, httpx.Response.aiter_raw

    def iter_raw(self: httpx.Response, chunk_size: int | None = None) -> Iterator[bytes]:
        for chunk in sync_iter(self, chunk_size):
            taken[0] += len(chunk)
            yield chunk

    async def aiter_raw(self: httpx.Response, chunk_size: int | None = None) -> Any:
        async for chunk in async_iter(self, chunk_size):
            taken[0] += len(chunk)
            yield chunk

    monkeypatch.setattr(httpx.Response, "iter_raw", iter_raw)
    monkeypatch.setattr(httpx.Response, "aiter_raw", aiter_raw)
    return taken


async def test_an_endless_chunked_body_is_refused_after_64_kib(
    mint: Callable[..., Any], bytes_read: list[int]
) -> None:
    with HostileServer(endless_chunks) as server, pytest.raises(InvalidResponseError) as caught:
        await mint(server.base_url)

    assert "limit" in str(caught.value)
    assert len(server.connections) == 1  # refused, not retried
    assert server.all_disconnected()
    # The client stopped at the limit plus the chunk that crossed it...
    assert MAX_ANSWER_BYTES < bytes_read[0] <= MAX_ANSWER_BYTES + 4096
    # ...and hung up long before the server ran out (socket buffers hold the rest).
    assert server.connections[0].sent < SEND_CAP


async def test_a_2_mb_content_length_is_refused_without_reading_the_body(
    mint: Callable[..., Any], bytes_read: list[int]
) -> None:
    with HostileServer(huge_length) as server, pytest.raises(InvalidResponseError) as caught:
        await mint(server.base_url, retry=RetryPolicy(deadline=20.0), timeout=20.0)

    assert "2000000 bytes" in str(caught.value)
    assert bytes_read[0] == 0
    assert len(server.connections) == 1
    assert server.all_disconnected()
