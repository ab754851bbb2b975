"""The exception tree: status mapping, transience, messages and pickling."""

from __future__ import annotations

import pickle

import pytest

from usegrant_flows.api.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InvalidResponseError,
    NotFoundError,
    RateLimitError,
    ServerError,
    TokenVerificationError,
    UseGrantAPIError,
    UseGrantConnectionError,
    UseGrantError,
    api_error_for_status,
    is_transient,
)


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, NotFoundError),
        (408, UseGrantAPIError),
        (409, UseGrantAPIError),
        (429, RateLimitError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
    ],
)
def test_each_status_maps_to_its_class(status: int, error_class: type) -> None:
    assert type(api_error_for_status(status)) is error_class


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (UseGrantConnectionError("down"), True),
        (UseGrantAPIError(408), True),
        (RateLimitError(429), True),
        (ServerError(500), True),
        (ServerError(504), True),
        (BadRequestError(400), False),
        (AuthenticationError(401), False),
        (AuthenticationError(403), False),
        (NotFoundError(404), False),
        (ConfigurationError("bad"), False),
        (InvalidResponseError("bad"), False),
        (ValueError("bad"), False),
    ],
)
def test_only_connection_errors_408_429_and_5xx_are_transient(
    error: BaseException, transient: bool
) -> None:
    assert is_transient(error) is transient


def test_every_error_is_a_usegrant_error_and_configuration_is_a_value_error() -> None:
    for cls in (
        ConfigurationError,
        UseGrantConnectionError,
        InvalidResponseError,
        TokenVerificationError,
        UseGrantAPIError,
        RateLimitError,
    ):
        assert issubclass(cls, UseGrantError)
    assert issubclass(ConfigurationError, ValueError)


def test_the_api_error_message_names_status_and_code() -> None:
    error = api_error_for_status(404, "CLIENT_NOT_FOUND", "no such client")

    assert str(error) == "UseGrant API answered 404 (CLIENT_NOT_FOUND): no such client"
    assert (error.status_code, error.code, error.message) == (
        404,
        "CLIENT_NOT_FOUND",
        "no such client",
    )


def test_an_api_error_without_a_message_describes_the_status() -> None:
    assert api_error_for_status(502).message == "HTTP 502"


def test_a_rate_limit_error_carries_retry_after() -> None:
    error = api_error_for_status(429, "RATE_LIMITED", "slow down", retry_after=30.0)

    assert isinstance(error, RateLimitError)
    assert error.retry_after == 30.0


@pytest.mark.parametrize(
    "error",
    [ServerError(503, "UNAVAILABLE", "later"), RateLimitError(429, "RATE", "wait", 5.0)],
)
def test_api_errors_survive_pickling(error: UseGrantAPIError) -> None:
    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)
