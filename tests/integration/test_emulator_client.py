"""The core clients against the emulator: tokens, options, errors, and retries of faults."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator

import pytest

from usegrant_flows.api.client import AsyncUseGrantClient, RetryPolicy, UseGrantClient, set_testing
from usegrant_flows.api.errors import (
    AuthenticationError,
    NotFoundError,
    RateLimitError,
    ServerError,
    UseGrantConnectionError,
)
from usegrant_flows.api.models import AccessToken
from usegrant_flows.api.verify import verify_token
from usegrant_flows.emulator import RunningEmulator


class CountingLimiter:
    """A RequestLimiter that admits everything and counts the attempts."""

    def __init__(self) -> None:
        self.attempts = 0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            self.attempts += 1

    async def aacquire(self) -> None:
        self.acquire()


@pytest.fixture
def no_retry_sleep() -> None:
    """Zero retry waits (the suite's default, made explicit where a test relies on it)."""
    set_testing(True)


@pytest.fixture
def real_retry_sleep() -> Iterator[None]:
    """Sleep the waits for real, e.g. to honour a Retry-After against a live limiter."""
    set_testing(False)
    yield
    set_testing(True)


@pytest.fixture
def client(emu: RunningEmulator) -> Iterator[UseGrantClient]:
    with UseGrantClient(api_key=emu.api_key, base_url=emu.base_url) as c:
        yield c


def ids(emu: RunningEmulator, client: int = 0) -> tuple[uuid.UUID, uuid.UUID]:
    provider = emu.seed.providers[0]
    return provider.id, provider.clients[client].id


def test_sync_client_mints_a_token_that_verifies_against_the_jwks(
    client: UseGrantClient, emu: RunningEmulator
) -> None:
    token = client.create_token(*ids(emu))
    audience = emu.seed.providers[0].clients[0].audience
    claims = verify_token(token, emu.jwks_url, audience=audience)
    assert claims["jti"] == token.jti
    assert token.expires_at.timestamp() == claims["exp"]


async def test_async_client_mints_a_token_that_verifies_against_the_jwks(
    emu: RunningEmulator,
) -> None:
    async with AsyncUseGrantClient(api_key=emu.api_key, base_url=emu.base_url) as client:
        token = await client.create_token(*ids(emu))
    audience = emu.seed.providers[0].clients[0].audience
    assert verify_token(token, emu.jwks_url, audience=audience)["sub"]


async def test_async_client_mints_many_tokens_concurrently(emu: RunningEmulator) -> None:
    async with AsyncUseGrantClient(api_key=emu.api_key, base_url=emu.base_url) as client:
        tokens = await asyncio.gather(*(client.create_token(*ids(emu)) for _ in range(50)))
    assert len({token.jti for token in tokens}) == 50
    assert emu.stats()["tokens_issued"] == 50


def test_client_options_reach_the_token(client: UseGrantClient, emu: RunningEmulator) -> None:
    provider = emu.seed.providers[0]
    token = client.create_token(
        *ids(emu),
        expires_in=120,
        use_jwt_type=True,
        audience_as_array=True,
        force_default_domain=True,
    )
    claims = verify_token(
        token,
        emu.jwks_url,
        audience=provider.clients[0].audience,
        issuer=f"https://{provider.default_domain}",
    )
    assert token.header()["typ"] == "jwt"
    assert claims["aud"] == [provider.clients[0].audience]
    assert claims["exp"] - claims["iat"] == 120


def test_client_default_options_give_at_jwt_string_aud_and_custom_issuer(
    client: UseGrantClient, emu: RunningEmulator
) -> None:
    provider = emu.seed.providers[0]
    token = client.create_token(*ids(emu, client=2))
    claims = token.claims()
    assert token.header()["typ"] == "at+jwt"
    assert claims["aud"] == provider.clients[2].audience
    assert claims["iss"] == f"https://{provider.custom_domain}"


def test_client_token_expires_at_is_parsed_as_utc(
    client: UseGrantClient, emu: RunningEmulator
) -> None:
    token = client.create_token(*ids(emu), expires_in=600)
    assert isinstance(token, AccessToken)
    assert 590 <= token.expires_in_seconds() <= 600


def test_wrong_api_key_raises_authentication_error(emu: RunningEmulator) -> None:
    with (
        UseGrantClient(api_key="usegrant_wrong", base_url=emu.base_url) as client,
        pytest.raises(AuthenticationError) as caught,
    ):
        client.create_token(*ids(emu))
    assert caught.value.status_code == 401
    assert "usegrant_wrong" not in str(caught.value)


def test_unknown_client_raises_not_found_error_without_retry(
    client: UseGrantClient, emu: RunningEmulator
) -> None:
    with pytest.raises(NotFoundError):
        client.create_token(emu.seed.providers[0].id, uuid.uuid4())
    assert emu.stats()["token_calls"]["total"] == 1


def test_spent_quota_raises_rate_limit_error_with_retry_after(emu: RunningEmulator) -> None:
    emu.set_faults(rate_limit=1, rate_window=3600)
    retry = RetryPolicy(max_attempts=3, deadline=5.0)
    with UseGrantClient(api_key=emu.api_key, base_url=emu.base_url, retry=retry) as client:
        client.create_token(*ids(emu))
        with pytest.raises(RateLimitError) as caught:
            client.create_token(*ids(emu))
    assert caught.value.retry_after is not None
    assert 3590 <= caught.value.retry_after <= 3600


# --- retries of injected faults ---------------------------------------------------------


def test_sync_client_retries_503s_to_success_and_stats_count_every_attempt(
    emu: RunningEmulator, no_retry_sleep: None
) -> None:
    emu.set_faults(fail_rate=0.5, fail_status=503)
    limiter = CountingLimiter()
    retry = RetryPolicy(max_attempts=20, deadline=30.0)
    with UseGrantClient(
        api_key=emu.api_key, base_url=emu.base_url, retry=retry, limiter=limiter
    ) as client:
        for _ in range(10):
            client.create_token(*ids(emu))
    stats = emu.stats()
    assert stats["by_status"]["201"] == 10
    assert stats["token_calls"]["total"] == limiter.attempts
    assert stats["by_status"].get("503", 0) == limiter.attempts - 10


async def test_async_client_retries_drops_to_success_and_stats_count_every_attempt(
    emu: RunningEmulator, no_retry_sleep: None
) -> None:
    emu.set_faults(drop_rate=0.4)
    limiter = CountingLimiter()
    retry = RetryPolicy(max_attempts=20, deadline=30.0)
    async with AsyncUseGrantClient(
        api_key=emu.api_key, base_url=emu.base_url, retry=retry, limiter=limiter
    ) as client:
        await asyncio.gather(*(client.create_token(*ids(emu)) for _ in range(10)))
    stats = emu.stats()
    assert stats["by_status"]["201"] == 10
    assert stats["dropped"] == limiter.attempts - 10
    assert stats["token_calls"]["total"] == limiter.attempts


def test_sync_client_retries_injected_429_and_500_to_success(
    emu: RunningEmulator, no_retry_sleep: None
) -> None:
    limiter = CountingLimiter()
    retry = RetryPolicy(max_attempts=20, deadline=60.0)
    with UseGrantClient(
        api_key=emu.api_key, base_url=emu.base_url, retry=retry, limiter=limiter
    ) as client:
        for status in (429, 500):
            emu.set_faults(fail_rate=0.5, fail_status=status)
            client.create_token(*ids(emu))
    stats = emu.stats()
    assert stats["by_status"]["201"] == 2
    assert stats["token_calls"]["total"] == limiter.attempts


def test_client_honours_retry_after_of_the_rate_limit(
    emu: RunningEmulator, real_retry_sleep: None
) -> None:
    emu.set_faults(rate_limit=1, rate_window=1.0)
    retry = RetryPolicy(max_attempts=5, deadline=30.0)
    with UseGrantClient(api_key=emu.api_key, base_url=emu.base_url, retry=retry) as client:
        client.create_token(*ids(emu))
        client.create_token(*ids(emu))
    stats = emu.stats()
    assert stats["by_status"]["201"] == 2
    assert stats["by_status"]["429"] == 1
    assert stats["token_calls"]["max_in_any_window"] == 2


def test_always_failing_server_exhausts_attempts_with_server_error(
    emu: RunningEmulator, no_retry_sleep: None
) -> None:
    emu.set_faults(fail_rate=1.0, fail_status=503)
    retry = RetryPolicy(max_attempts=4, deadline=30.0)
    with (
        UseGrantClient(api_key=emu.api_key, base_url=emu.base_url, retry=retry) as client,
        pytest.raises(ServerError),
    ):
        client.create_token(*ids(emu))
    assert emu.stats()["by_status"] == {"503": 4}


def test_always_dropping_server_exhausts_attempts_with_connection_error(
    emu: RunningEmulator, no_retry_sleep: None
) -> None:
    emu.set_faults(drop_rate=1.0)
    retry = RetryPolicy(max_attempts=3, deadline=30.0)
    with (
        UseGrantClient(api_key=emu.api_key, base_url=emu.base_url, retry=retry) as client,
        pytest.raises(UseGrantConnectionError),
    ):
        client.create_token(*ids(emu))
    assert emu.stats()["dropped"] == 3
