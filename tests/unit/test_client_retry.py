"""The retry wait, Retry-After parsing and the testing switch, checked directly."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
import respx
from tenacity import RetryCallState

from tests.unit.conftest import make_jwt
from usegrant_flows.api import retry as _retry
from usegrant_flows.api.client import AsyncUseGrantClient, RetryPolicy, UseGrantClient, set_testing
from usegrant_flows.api.errors import RateLimitError, ServerError, UseGrantConnectionError
from usegrant_flows.api.retry import backoff_wait, parse_retry_after

BASE = "https://sdk.usegrant.dev"
PROVIDER = "5b0f4c3e-8d7a-4a3b-9c1d-2e3f4a5b6c7d"
CLIENT = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
TOKENS_URL = f"{BASE}/v1/providers/{PROVIDER}/clients/{CLIENT}/tokens"
OK_BODY = {"accessToken": make_jwt(), "expiresAt": "2030-01-01T00:00:00.000Z", "type": "Bearer"}


def failed_state(attempt_number: int, error: BaseException | None = None) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt_number
    error = error or ServerError(503)
    state.set_exception((type(error), error, None))
    return state


def bound(attempt_number: int, policy: RetryPolicy) -> float:
    return min(policy.max_backoff, policy.initial_backoff * 2 ** (attempt_number - 1))


def test_the_default_policy_is_the_documented_one() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.deadline) == (5, 30.0)
    assert (policy.initial_backoff, policy.max_backoff, policy.jitter) == (0.5, 8.0, True)
    doc = RetryPolicy.__doc__ or ""
    assert "5 attempts, 30 s in total, 0.5 s initial backoff" in doc
    assert "8 s maximum backoff" in doc


def test_jittered_waits_stay_between_zero_and_the_exponential_bound() -> None:
    policy = RetryPolicy()
    wait = backoff_wait(policy)
    random.seed(20261127)
    for attempt in range(1, 9):
        upper = bound(attempt, policy)
        draws = [wait(failed_state(attempt)) for _ in range(200)]
        assert all(0.0 <= draw <= upper for draw in draws)
        assert max(draws) > upper / 2  # the whole window is used, not a fixed point


def test_the_jitter_window_doubles_from_the_initial_backoff_up_to_the_maximum(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    wait = backoff_wait(RetryPolicy())

    highs = [wait(failed_state(attempt)) for attempt in range(1, 8)]

    assert highs == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_the_jitter_window_starts_at_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: low)
    wait = backoff_wait(RetryPolicy())

    assert [wait(failed_state(attempt)) for attempt in range(1, 6)] == [0.0] * 5


def test_without_jitter_the_wait_is_the_exponential_bound() -> None:
    policy = RetryPolicy(jitter=False, initial_backoff=1.0, max_backoff=5.0)
    wait = backoff_wait(policy)

    assert [wait(failed_state(attempt)) for attempt in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_retry_after_replaces_the_backoff() -> None:
    wait = backoff_wait(RetryPolicy())
    error = RateLimitError(429, retry_after=12.0)

    assert wait(failed_state(1, error)) == 12.0


def test_a_connection_error_uses_the_backoff() -> None:
    policy = RetryPolicy(jitter=False)
    wait = backoff_wait(policy)

    assert wait(failed_state(3, UseGrantConnectionError("down"))) == 2.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("0", 0.0),
        ("120", 120.0),
        (" 30 ", 30.0),
        ("Fri, 27 Nov 2026 16:01:00 GMT", 60.0),
        ("Fri, 27 Nov 2026 15:59:00 GMT", 0.0),
        ("Friday, 27-Nov-26 16:00:10 GMT", 10.0),
        ("Fri Nov 27 16:00:05 2026", 5.0),
        ("-5", None),
        ("1.5", None),
        ("\u00b2", None),  # a digit to str.isdigit(), not to float()
        ("9" * 400, 86_400.0),  # float() would make it infinite
        ("Fri, 31 Dec 9999 23:59:59 GMT", 86_400.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_parsed_as_seconds_or_an_http_date(
    header: str | None, expected: float | None
) -> None:
    now = datetime(2026, 11, 27, 16, 0, tzinfo=timezone.utc)

    assert parse_retry_after(header, now=now) == expected


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


@pytest.fixture
def recorded_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    sleeps: list[float] = []

    async def fake_async_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(_retry.time, "sleep", sleeps.append)
    monkeypatch.setattr("anyio.sleep", fake_async_sleep)
    return sleeps


def _three_answers(api: respx.MockRouter) -> None:
    api.post(TOKENS_URL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "3"}),
            httpx.Response(503, headers={"Retry-After": "1"}),
            httpx.Response(201, json=OK_BODY),
        ]
    )


def test_outside_testing_mode_the_sync_client_sleeps_the_planned_waits(
    api: respx.MockRouter, recorded_sleeps: list[float]
) -> None:
    _three_answers(api)
    set_testing(False)

    with UseGrantClient(api_key="usegrant_k", base_url=BASE) as client:
        client.create_token(PROVIDER, CLIENT)

    assert recorded_sleeps == [3.0, 1.0]


async def test_outside_testing_mode_the_async_client_sleeps_the_planned_waits(
    api: respx.MockRouter, recorded_sleeps: list[float]
) -> None:
    _three_answers(api)
    set_testing(False)

    async with AsyncUseGrantClient(api_key="usegrant_k", base_url=BASE) as client:
        await client.create_token(PROVIDER, CLIENT)

    assert recorded_sleeps == [3.0, 1.0]


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_testing_mode_skips_every_sleep(
    api: respx.MockRouter, recorded_sleeps: list[float], kind: str
) -> None:
    _three_answers(api)
    set_testing(True)
    options: dict[str, Any] = {"api_key": "usegrant_k", "base_url": BASE}

    if kind == "sync":
        with UseGrantClient(**options) as client:
            client.create_token(PROVIDER, CLIENT)
    else:
        async with AsyncUseGrantClient(**options) as aclient:
            await aclient.create_token(PROVIDER, CLIENT)

    assert recorded_sleeps == []
