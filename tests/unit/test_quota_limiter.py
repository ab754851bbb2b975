"""Which budget a client gets: the Prefect limit, or the in-process limiter."""

from __future__ import annotations

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic import SecretStr

from usegrant_flows.credentials import UseGrantCredentials
from usegrant_flows.quota.budget import Budget, WindowLimiter, reset_local_limiters
from usegrant_flows.quota.limiter import QuotaLimiter, prefect_api_configured

KEY = "usegrant_quota_unit_key"


@pytest.fixture(autouse=True)
def fresh_limiters() -> None:
    reset_local_limiters()


def test_without_a_prefect_server_even_a_named_block_uses_the_in_process_limiter() -> None:
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert not prefect_api_configured()
        limiter = QuotaLimiter(SecretStr(KEY), Budget(10), "prod")
    assert limiter.mode == "local"


def test_clients_from_a_block_take_its_budget_by_default() -> None:
    block = UseGrantCredentials(
        api_key=SecretStr(KEY), max_requests_per_hour=42, quota_window_seconds=60
    )
    with block.get_client() as client:
        limiter = client.limiter
    assert isinstance(limiter, QuotaLimiter)
    assert limiter.budget == Budget(42, 60)
    assert block.budget() == Budget(42, 60)


async def test_async_clients_from_a_block_take_its_budget_by_default() -> None:
    block = UseGrantCredentials(api_key=SecretStr(KEY), max_requests_per_hour=42)
    async with block.get_async_client() as client:
        assert isinstance(client.limiter, QuotaLimiter)


def test_a_limiter_given_explicitly_wins() -> None:
    block = UseGrantCredentials(api_key=SecretStr(KEY))
    mine = WindowLimiter(Budget(5))
    with block.get_client(limiter=mine) as client:
        assert client.limiter is mine


def test_blocks_with_the_same_key_and_budget_share_one_in_process_limiter() -> None:
    first = UseGrantCredentials(api_key=SecretStr(KEY), max_requests_per_hour=3)
    second = UseGrantCredentials(api_key=SecretStr(KEY), max_requests_per_hour=3)
    one, two = first.quota_limiter(), second.quota_limiter()
    for _ in range(3):
        one.acquire()
    # The budget of 3 is spent for both: the next request must wait for the window.
    assert two._local is not None and two._local.reserve() > 0


def test_the_limiter_counts_the_requests_it_lets_through() -> None:
    limiter = QuotaLimiter(SecretStr(KEY), Budget(10), None)
    limiter.acquire()
    limiter.acquire()
    assert limiter.requests == 2


def test_the_window_is_refused_when_not_positive() -> None:
    with pytest.raises(ValueError, match="quota_window_seconds"):
        UseGrantCredentials(api_key=SecretStr(KEY), quota_window_seconds=0)


def test_the_limiter_repr_names_the_budget_never_the_key() -> None:
    limiter = QuotaLimiter(SecretStr(KEY), Budget(10), None)
    assert KEY not in repr(limiter)
    assert "10 requests per 3600 s" in repr(limiter)
