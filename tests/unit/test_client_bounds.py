"""What the clients refuse to trust from the wire, and what building one costs.

Answers are mocked with respx (both clients through the ``mint`` fixture of
test_client.py's kind); the deadline of the sync transport is checked with an injected
clock. Socket-level hostility (trickles, endless bodies) is in
tests/integration/test_client_hostile.py.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import httpcore
import httpx
import pytest
import respx

from tests.unit.conftest import make_jwt
from usegrant_flows.api import transport
from usegrant_flows.api.checks import MAX_TOKEN_CHARS, parse_token_response
from usegrant_flows.api.client import AsyncUseGrantClient, RetryPolicy, UseGrantClient
from usegrant_flows.api.errors import InvalidResponseError, ServerError, UseGrantError
from usegrant_flows.api.models import AccessToken
from usegrant_flows.api.transport import MAX_ANSWER_BYTES, Answer

BASE = "https://sdk.usegrant.dev"
API_KEY = "usegrant_bounds_test_key_5d2e"
PROVIDER = "5b0f4c3e-8d7a-4a3b-9c1d-2e3f4a5b6c7d"
CLIENT = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
TOKENS_URL = f"{BASE}/v1/providers/{PROVIDER}/clients/{CLIENT}/tokens"
TOKEN = make_jwt({"jti": "bounds-jti", "exp": 1_900_000_000})
OK_BODY = {"accessToken": TOKEN, "expiresAt": "2030-03-17T17:46:40.000Z", "type": "Bearer"}

Mint = Callable[..., Awaitable[AccessToken]]


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


@pytest.fixture(params=["sync", "async"])
def mint(request: pytest.FixtureRequest) -> Mint:
    kind = request.param

    async def call(**client_kwargs: Any) -> AccessToken:
        options: dict[str, Any] = {"api_key": API_KEY, "base_url": BASE, **client_kwargs}
        if kind == "sync":
            with UseGrantClient(**options) as client:
                return client.create_token(PROVIDER, CLIENT)
        async with AsyncUseGrantClient(**options) as aclient:
            return await aclient.create_token(PROVIDER, CLIENT)

    return call


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# --- unusable 2xx answers: one line, never the token, never retried -------------------------


@pytest.mark.parametrize(
    ("content", "hint"),
    [
        (b"\xff\xfe{}", "invalid UTF-8"),
        (json.dumps(OK_BODY).encode().replace(b"Bearer", b"B\xe9arer"), "invalid UTF-8"),
        (b"not json at all", "not JSON"),
        (nested(30_000), "nested too deeply"),  # under 64 KiB: json's recursion limit
        (nested(100_000), "limit"),  # 200 kB: refused by size before parsing
        (b" " * (MAX_ANSWER_BYTES + 1), "limit"),
    ],
    ids=["bom-utf16", "latin1", "not-json", "nested-30k", "nested-100k", "oversize"],
)
async def test_a_201_body_we_cannot_parse_is_an_invalid_response(
    api: respx.MockRouter, mint: Mint, content: bytes, hint: str
) -> None:
    route = api.post(TOKENS_URL).respond(201, content=content)

    with pytest.raises(InvalidResponseError) as caught:
        await mint()

    assert hint in str(caught.value)
    assert "\n" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("fields", "hint"),
    [
        ({"accessToken": TOKEN + "\n"}, "accessToken"),
        ({"accessToken": TOKEN + "\r\n"}, "accessToken"),
        ({"accessToken": " " + TOKEN}, "accessToken"),
        ({"accessToken": TOKEN.replace(".", ". ", 1)}, "accessToken"),
        ({"accessToken": TOKEN + "A" * MAX_TOKEN_CHARS}, f"longer than {MAX_TOKEN_CHARS}"),
        ({"type": "Bearer\r\n"}, "type"),
        ({"type": "Bearer "}, "type"),
        ({"type": "MAC"}, "type"),
        ({"type": ["Bearer"]}, "type"),
    ],
    ids=[
        "token-newline",
        "token-crlf",
        "token-space",
        "token-inner-space",
        "token-too-long",
        "type-crlf",
        "type-space",
        "type-mac",
        "type-list",
    ],
)
async def test_a_token_that_could_not_go_into_a_header_is_refused(
    api: respx.MockRouter, mint: Mint, fields: dict[str, Any], hint: str
) -> None:
    api.post(TOKENS_URL).respond(201, json={**OK_BODY, **fields})

    with pytest.raises(InvalidResponseError) as caught:
        await mint()

    assert hint in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("kind", ["bearer", "BEARER", "Bearer"])
async def test_the_token_type_is_bearer_whatever_its_case(
    api: respx.MockRouter, mint: Mint, kind: str
) -> None:
    api.post(TOKENS_URL).respond(201, json={**OK_BODY, "type": kind})

    token = await mint()

    assert token.type == "Bearer"


async def test_a_compressed_answer_is_refused_unread(api: respx.MockRouter, mint: Mint) -> None:
    compressed = gzip.compress(json.dumps(OK_BODY).encode())
    api.post(TOKENS_URL).respond(201, content=compressed, headers={"Content-Encoding": "gzip"})

    with pytest.raises(InvalidResponseError, match="compressed"):
        await mint()


async def test_the_request_asks_for_an_uncompressed_answer(
    api: respx.MockRouter, mint: Mint
) -> None:
    route = api.post(TOKENS_URL).respond(201, json=OK_BODY)

    await mint()

    assert route.calls.last.request.headers["Accept-Encoding"] == "identity"


async def test_an_oversized_error_page_keeps_its_status_and_is_retried(
    api: respx.MockRouter, mint: Mint
) -> None:
    route = api.post(TOKENS_URL).respond(503, content=b"<html>" + b" " * MAX_ANSWER_BYTES)

    with pytest.raises(ServerError) as caught:
        await mint(retry=RetryPolicy(max_attempts=2))

    assert "not read" in str(caught.value)
    assert route.call_count == 2


def test_a_deeply_nested_error_body_still_maps_to_its_status() -> None:
    answer = Answer(503, "Service Unavailable", httpx.Headers(), nested(30_000))

    with pytest.raises(ServerError):
        parse_token_response(answer, API_KEY)


def test_every_refusal_is_in_the_usegrant_error_tree() -> None:
    answer = Answer(201, "Created", httpx.Headers(), refused="longer than the limit")

    with pytest.raises(UseGrantError):
        parse_token_response(answer, API_KEY)


# --- the sync deadline, with an injected clock -------------------------------------------------


class RecordingStream(httpcore.NetworkStream):
    def __init__(self) -> None:
        self.timeouts: list[float | None] = []

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.timeouts.append(timeout)
        return b"x"

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.timeouts.append(timeout)


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The transport's monotonic clock, set by the test."""
    clock = [100.0]
    monkeypatch.setattr(transport, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    return clock


def test_each_socket_read_and_write_gets_at_most_the_time_left(now: list[float]) -> None:
    inner = RecordingStream()
    stream = transport._DeadlineStream(inner)
    token = transport._deadline.set(104.0)
    try:
        stream.read(10, timeout=10.0)  # 4 s left of the attempt: the read gets 4 s
        now[0] = 103.5
        stream.write(b"x", timeout=10.0)
        stream.read(10, timeout=0.25)  # a shorter read timeout stays as it is
        now[0] = 104.0
        with pytest.raises(httpcore.ReadTimeout):
            stream.read(10, timeout=10.0)
    finally:
        transport._deadline.reset(token)

    assert inner.timeouts == [4.0, 0.5, 0.25]


def test_without_an_attempt_the_socket_timeouts_are_left_alone(now: list[float]) -> None:
    inner = RecordingStream()
    transport._DeadlineStream(inner).read(10, timeout=7.0)
    assert inner.timeouts == [7.0]


def test_every_sync_pool_connects_through_the_deadline_backend() -> None:
    with UseGrantClient(api_key=API_KEY, base_url=BASE) as client:
        pool = client._http._transport._pool  # type: ignore[attr-defined]
        assert isinstance(pool._network_backend, transport._DeadlineBackend)


# --- cheap clients -------------------------------------------------------------------------------


async def test_every_pool_of_every_client_shares_one_ssl_context(api: respx.MockRouter) -> None:
    api.post(TOKENS_URL).respond(201, json=OK_BODY)
    shared = transport.shared_ssl_context()
    with UseGrantClient(api_key=API_KEY, base_url=BASE) as sync_client:
        sync_context = sync_client._http._transport._pool._ssl_context  # type: ignore[attr-defined]
    async with AsyncUseGrantClient(api_key=API_KEY, base_url=BASE) as async_client:
        await async_client.create_token(PROVIDER, CLIENT)
        pool = async_client._pools[0]
        assert pool is not None
        async_context = pool._transport._pool._ssl_context  # type: ignore[attr-defined]

    assert sync_context is shared and async_context is shared


async def test_async_pools_are_built_on_first_use_only(api: respx.MockRouter) -> None:
    api.post(TOKENS_URL).respond(201, json=OK_BODY)
    async with AsyncUseGrantClient(api_key=API_KEY, base_url=BASE) as client:
        assert client.pool_count == 8
        assert client._pools == [None] * 8
        for _ in range(3):  # one call at a time: always the first pool
            await client.create_token(PROVIDER, CLIENT)
        assert [pool is not None for pool in client._pools] == [True] + [False] * 7


def test_a_sync_client_shared_by_threads_builds_one_pool_on_first_use(
    api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    api.post(TOKENS_URL).respond(201, json=OK_BODY)
    built: list[httpx.Client] = []
    sync_pool = transport.sync_pool

    def spy(*args: Any) -> httpx.Client:
        built.append(sync_pool(*args))
        return built[-1]

    monkeypatch.setattr(transport, "sync_pool", spy)
    with UseGrantClient(api_key=API_KEY, base_url=BASE) as client:
        assert built == []
        with ThreadPoolExecutor(max_workers=8) as threads:
            tokens = list(threads.map(lambda _: client.create_token(PROVIDER, CLIENT), range(16)))

    assert len(tokens) == 16
    assert len(built) == 1


async def test_an_unused_client_closes_cleanly() -> None:
    client = AsyncUseGrantClient(api_key=API_KEY, base_url=BASE)
    await client.aclose()
    await client.aclose()
    UseGrantClient(api_key=API_KEY, base_url=BASE).close()


async def test_an_unreachable_api_logs_one_warning_per_call(
    api: respx.MockRouter, mint: Mint, caplog: pytest.LogCaptureFixture
) -> None:
    api.post(TOKENS_URL).mock(side_effect=httpx.ConnectError("refused"))

    with caplog.at_level(logging.WARNING), pytest.raises(UseGrantError):
        await mint()

    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1


def test_a_reason_phrase_echoing_the_key_is_scrubbed() -> None:
    answer = Answer(503, f"Unavailable for {API_KEY}", httpx.Headers(), b"")

    with pytest.raises(ServerError) as caught:
        parse_token_response(answer, API_KEY)

    assert API_KEY not in str(caught.value)
    assert "[redacted]" in str(caught.value)
