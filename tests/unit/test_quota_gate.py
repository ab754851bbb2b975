"""One backoff per key: a 429 pauses every mint through the gate, a 401 stops them all."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import respx

from tests.unit.conftest import make_jwt
from usegrant_flows.api.client import (
    AsyncUseGrantClient,
    KeyGate,
    RetryPolicy,
    UseGrantClient,
    set_testing,
)
from usegrant_flows.api.errors import AuthenticationError, RateLimitError
from usegrant_flows.emulator.faults import SlidingWindowLimiter

BASE = "https://sdk.usegrant.dev"
PROVIDER = "5b0f4c3e-8d7a-4a3b-9c1d-2e3f4a5b6c7d"
CLIENT = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
TOKENS_URL = f"{BASE}/v1/providers/{PROVIDER}/clients/{CLIENT}/tokens"
OK_BODY = {"accessToken": make_jwt(), "expiresAt": "2030-01-01T00:00:00.000Z", "type": "Bearer"}


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def real_waits() -> Iterator[None]:
    """These tests are about waiting: turn the testing switch off for them."""
    set_testing(False)
    try:
        yield
    finally:
        set_testing(True)


class RateLimitedAPI:
    """The API's quota rule (the emulator's sliding window), recording every arrival."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.rule = SlidingWindowLimiter()
        self.arrivals: list[tuple[float, int]] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            now = time.monotonic()
            wait = self.rule.acquire("k", limit=self.limit, window=self.window, now=now)
            self.arrivals.append((now, 201 if wait is None else 429))
        if wait is None:
            return httpx.Response(201, json=OK_BODY)
        return httpx.Response(429, headers={"Retry-After": str(wait)}, json={"code": "rate"})

    def first_429(self) -> float:
        return min(t for t, status in self.arrivals if status == 429)

    def statuses(self) -> list[int]:
        return [status for _, status in self.arrivals]


def assert_quiet_after_first_429(api: RateLimitedAPI, retry_after: float) -> None:
    """After the first 429, only requests already in flight (a few ms) arrive before Retry-After."""
    start = api.first_429()
    in_flight_margin = 0.2  # seconds: requests that passed the gate before the 429 was read
    early = [
        t - start for t, _ in api.arrivals if start + in_flight_margin < t < start + retry_after
    ]
    assert early == []


async def test_a_429_pauses_every_queued_async_mint_on_the_client_until_retry_after(
    api: respx.MockRouter, real_waits: None
) -> None:
    model = RateLimitedAPI(limit=3, window=1.0)
    api.post(TOKENS_URL).mock(side_effect=model)

    async with AsyncUseGrantClient(api_key="usegrant_k", base_url=BASE) as client:
        tokens = await asyncio.gather(*(client.create_token(PROVIDER, CLIENT) for _ in range(9)))

    assert len(tokens) == 9
    assert_quiet_after_first_429(model, retry_after=1.0)
    # Without the shared pause each of the 6 mints over budget would draw its own 429s.
    assert model.statuses().count(429) <= 6


def test_a_429_pauses_every_sync_mint_sharing_the_gate_until_retry_after(
    api: respx.MockRouter, real_waits: None
) -> None:
    model = RateLimitedAPI(limit=2, window=1.0)
    api.post(TOKENS_URL).mock(side_effect=model)
    gate = KeyGate()

    def mint(index: int) -> None:
        time.sleep(index * 0.15)  # mints keep arriving while the key is paused
        with UseGrantClient(api_key="usegrant_k", base_url=BASE, gate=gate) as client:
            client.create_token(PROVIDER, CLIENT)

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(mint, range(6)))

    assert model.statuses().count(201) == 6
    assert_quiet_after_first_429(model, retry_after=1.0)


async def test_a_401_stops_every_later_mint_on_the_client_without_a_request(
    api: respx.MockRouter,
) -> None:
    route = api.post(TOKENS_URL).mock(
        return_value=httpx.Response(401, json={"code": "unauthorized", "message": "bad key"})
    )
    async with AsyncUseGrantClient(api_key="usegrant_k", base_url=BASE) as client:
        with pytest.raises(AuthenticationError):
            await client.create_token(PROVIDER, CLIENT)
        results = await asyncio.gather(
            *(client.create_token(PROVIDER, CLIENT) for _ in range(5)), return_exceptions=True
        )

    assert all(isinstance(r, AuthenticationError) and r.status_code == 401 for r in results)
    assert route.call_count == 1


def test_a_401_stops_the_sync_client_too(api: respx.MockRouter) -> None:
    route = api.post(TOKENS_URL).mock(return_value=httpx.Response(401, json={"code": "x"}))
    with UseGrantClient(api_key="usegrant_k", base_url=BASE) as client:
        for _ in range(3):
            with pytest.raises(AuthenticationError, match=r"rejected|401"):
                client.create_token(PROVIDER, CLIENT)
    assert route.call_count == 1


def test_a_403_does_not_stop_the_key(api: respx.MockRouter) -> None:
    """403 is about one provider or client, not the key: other mints still go out."""
    route = api.post(TOKENS_URL).mock(return_value=httpx.Response(403, json={"code": "forbidden"}))
    with UseGrantClient(api_key="usegrant_k", base_url=BASE) as client:
        for _ in range(2):
            with pytest.raises(AuthenticationError):
                client.create_token(PROVIDER, CLIENT)
    assert route.call_count == 2


def test_separate_clients_have_separate_gates_by_default(api: respx.MockRouter) -> None:
    route = api.post(TOKENS_URL).mock(
        side_effect=[httpx.Response(401, json={"code": "x"}), httpx.Response(201, json=OK_BODY)]
    )
    with (
        UseGrantClient(api_key="usegrant_k", base_url=BASE) as first,
        pytest.raises(AuthenticationError),
    ):
        first.create_token(PROVIDER, CLIENT)
    with UseGrantClient(api_key="usegrant_k", base_url=BASE) as second:
        assert second.create_token(PROVIDER, CLIENT).type == "Bearer"
    assert route.call_count == 2


def test_a_pause_longer_than_the_deadline_fails_at_once_without_a_request(
    api: respx.MockRouter, real_waits: None
) -> None:
    route = api.post(TOKENS_URL).mock(return_value=httpx.Response(201, json=OK_BODY))
    gate = KeyGate()
    gate.observe(RateLimitError(429, "rate", "quota", retry_after=600.0))

    with (
        UseGrantClient(api_key="usegrant_k", base_url=BASE, gate=gate) as client,
        pytest.raises(RateLimitError, match="paused") as caught,
    ):
        client.create_token(PROVIDER, CLIENT)

    assert route.call_count == 0
    assert caught.value.retry_after is not None and caught.value.retry_after > 590


def test_the_gate_message_never_holds_the_key(api: respx.MockRouter) -> None:
    api.post(TOKENS_URL).mock(return_value=httpx.Response(401, json={"code": "x"}))
    key = "usegrant_super_secret_key"
    with UseGrantClient(api_key=key, base_url=BASE) as client:
        for _ in range(2):
            with pytest.raises(AuthenticationError) as caught:
                client.create_token(PROVIDER, CLIENT)
            assert key not in str(caught.value)


class SlowLimiter:
    """A budget that makes every attempt queue for ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def acquire(self) -> None:
        time.sleep(self.seconds)

    async def aacquire(self) -> None:
        await asyncio.sleep(self.seconds)


def test_time_queued_for_the_budget_does_not_use_up_the_retry_deadline(
    api: respx.MockRouter,
) -> None:
    route = api.post(TOKENS_URL).mock(
        side_effect=[httpx.Response(503), httpx.Response(201, json=OK_BODY)]
    )
    policy = RetryPolicy(deadline=1.0, initial_backoff=0.0, max_backoff=0.0)
    with UseGrantClient(
        api_key="usegrant_k", base_url=BASE, retry=policy, limiter=SlowLimiter(0.6)
    ) as client:
        assert client.create_token(PROVIDER, CLIENT).type == "Bearer"
    assert route.call_count == 2
    # Each attempt got the deadline's timeout, not what the queueing would have left over.
    assert all(call.request.extensions["timeout"]["read"] > 0.5 for call in route.calls)


async def test_the_async_client_does_not_count_budget_waits_either(
    api: respx.MockRouter,
) -> None:
    route = api.post(TOKENS_URL).mock(
        side_effect=[httpx.Response(503), httpx.Response(201, json=OK_BODY)]
    )
    policy = RetryPolicy(deadline=1.0, initial_backoff=0.0, max_backoff=0.0)
    async with AsyncUseGrantClient(
        api_key="usegrant_k", base_url=BASE, retry=policy, limiter=SlowLimiter(0.6)
    ) as client:
        assert (await client.create_token(PROVIDER, CLIENT)).type == "Bearer"
    assert route.call_count == 2
    assert all(call.request.extensions["timeout"]["read"] > 0.5 for call in route.calls)
