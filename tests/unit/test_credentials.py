"""UseGrantCredentials: fields, defaults, validation at get_client time, no key leaks."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from usegrant_flows import UseGrantCredentials as LazyCredentials
from usegrant_flows.api.client import AsyncUseGrantClient, RetryPolicy, UseGrantClient
from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.api.models import DEFAULT_BASE_URL
from usegrant_flows.credentials import UseGrantCredentials

KEY = "usegrant_unit_test_key_0123456789"


def _credentials(**fields: Any) -> UseGrantCredentials:
    return UseGrantCredentials(api_key=SecretStr(KEY), **fields)


def test_defaults_are_the_production_api_10_seconds_and_1000_requests() -> None:
    credentials = _credentials()
    assert credentials.base_url == DEFAULT_BASE_URL
    assert credentials.timeout == 10.0
    assert credentials.max_requests_per_hour == 1000


def test_api_key_is_required() -> None:
    with pytest.raises(ValidationError, match="api_key"):
        UseGrantCredentials()  # type: ignore[call-arg]


@pytest.mark.parametrize("timeout", [0, -1.5])
def test_refuses_a_timeout_that_is_not_positive(timeout: float) -> None:
    with pytest.raises(ValidationError, match="timeout"):
        _credentials(timeout=timeout)


def test_refuses_a_request_budget_below_one() -> None:
    with pytest.raises(ValidationError, match="max_requests_per_hour"):
        _credentials(max_requests_per_hour=0)


def test_get_client_forwards_base_url_and_timeout() -> None:
    with _credentials(base_url="http://127.0.0.1:9", timeout=2.5).get_client() as client:
        assert isinstance(client, UseGrantClient)
        assert repr(client) == "UseGrantClient(base_url='http://127.0.0.1:9', timeout=2.5)"


def test_get_client_forwards_the_retry_policy() -> None:
    policy = RetryPolicy(max_attempts=2)
    with _credentials().get_client(retry=policy) as client:
        assert client.retry is policy


async def test_get_async_client_forwards_base_url() -> None:
    async with _credentials(base_url="http://127.0.0.1:9").get_async_client() as client:
        assert isinstance(client, AsyncUseGrantClient)
        assert client.base_url == "http://127.0.0.1:9"


def test_get_client_returns_a_fresh_client_each_call() -> None:
    credentials = _credentials()
    with credentials.get_client() as first, credentials.get_client() as second:
        assert first is not second


@pytest.mark.parametrize("base_url", ["http://sdk.usegrant.dev", "ftp://x", "not a url"])
def test_a_bad_base_url_fails_at_get_client(base_url: str) -> None:
    credentials = _credentials(base_url=base_url)
    with pytest.raises(ConfigurationError, match="base_url"):
        credentials.get_client()


async def test_a_bad_base_url_fails_at_get_async_client() -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        _credentials(base_url="http://example.com").get_async_client()


def test_a_malformed_api_key_fails_at_get_client_without_quoting_it() -> None:
    credentials = UseGrantCredentials(api_key=SecretStr("usegrant_has a space"))
    with pytest.raises(ConfigurationError, match="api_key") as caught:
        credentials.get_client()
    assert "has a space" not in str(caught.value)


def test_the_key_never_shows_in_repr_str_or_json() -> None:
    credentials = _credentials()
    assert KEY not in repr(credentials)
    assert KEY not in str(credentials)
    assert KEY not in credentials.model_dump_json()


def test_the_key_is_a_prefect_secret_field() -> None:
    assert "api_key" in UseGrantCredentials.model_json_schema()["secret_fields"]


def test_block_type_name() -> None:
    assert UseGrantCredentials.get_block_type_name() == "UseGrant Credentials"


def test_the_package_exports_the_block_lazily() -> None:
    assert LazyCredentials is UseGrantCredentials


def test_a_validation_error_does_not_quote_the_rejected_value() -> None:
    with pytest.raises(ValidationError) as caught:
        _credentials(timeout="usegrant_key_pasted_in_the_wrong_field")
    assert "usegrant_key_pasted" not in str(caught.value)
