"""UseGrantClient and AsyncUseGrantClient against a respx-mocked API.

Every behaviour is checked for both clients through the parametrized ``mint`` fixture.
Expected wire values are written by hand from CONTRACT.md, not derived from our models.
"""

from __future__ import annotations

import json
import logging
import pickle
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from uuid import UUID

import httpx
import pytest
import respx

from tests.unit.conftest import make_jwt
from usegrant_flows._version import __version__
from usegrant_flows.api.client import AsyncUseGrantClient, RetryPolicy, UseGrantClient
from usegrant_flows.api.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InvalidResponseError,
    NotFoundError,
    RateLimitError,
    ServerError,
    UseGrantAPIError,
    UseGrantConnectionError,
)
from usegrant_flows.api.models import AccessToken

BASE = "https://sdk.usegrant.dev"
API_KEY = "usegrant_unit_test_key_7f3a9c"
PROVIDER = "5b0f4c3e-8d7a-4a3b-9c1d-2e3f4a5b6c7d"
CLIENT = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
TOKENS_URL = f"{BASE}/v1/providers/{PROVIDER}/clients/{CLIENT}/tokens"
TOKEN = make_jwt({"jti": "unit-jti", "exp": 1_900_000_000})
OK_BODY = {"accessToken": TOKEN, "expiresAt": "2030-03-17T17:46:40.000Z", "type": "Bearer"}

Mint = Callable[..., Awaitable[AccessToken]]


class CountingLimiter:
    def __init__(self) -> None:
        self.calls = 0

    def acquire(self) -> None:
        self.calls += 1

    async def aacquire(self) -> None:
        self.calls += 1


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    """A mocked API; any request it does not know fails the test (no real traffic)."""
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


@pytest.fixture(params=["sync", "async"])
def mint(request: pytest.FixtureRequest) -> Mint:
    """Create a client of the parametrized kind and mint one token with it."""
    kind = request.param

    async def call(
        provider_id: Any = PROVIDER,
        client_id: Any = CLIENT,
        *,
        client_kwargs: dict[str, Any] | None = None,
        **create_kwargs: Any,
    ) -> AccessToken:
        options: dict[str, Any] = {"api_key": API_KEY, "base_url": BASE, **(client_kwargs or {})}
        if kind == "sync":
            with UseGrantClient(**options) as client:
                return client.create_token(provider_id, client_id, **create_kwargs)
        async with AsyncUseGrantClient(**options) as aclient:
            return await aclient.create_token(provider_id, client_id, **create_kwargs)

    return call


def sent_body(route: respx.Route, index: int = -1) -> Any:
    return json.loads(route.calls[index].request.content)


# --- success -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201])
async def test_a_200_or_201_answer_yields_the_token(
    api: respx.MockRouter, mint: Mint, status: int
) -> None:
    route = api.post(TOKENS_URL).respond(status, json=OK_BODY)

    token = await mint()

    assert token.access_token.get_secret_value() == TOKEN
    assert token.expires_at.isoformat() == "2030-03-17T17:46:40+00:00"
    assert token.type == "Bearer"
    assert route.call_count == 1


async def test_uuid_objects_are_sent_as_canonical_lowercase_strings(
    api: respx.MockRouter, mint: Mint
) -> None:
    route = api.post(TOKENS_URL).respond(201, json=OK_BODY)

    await mint(UUID(PROVIDER), UUID(CLIENT.upper()))

    assert route.call_count == 1


# --- the request on the wire ----------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected_body"),
    [
        ({}, {}),
        ({"expires_in": 900}, {"expiresIn": 900}),
        ({"use_jwt_type": True}, {"useJwtType": True}),
        ({"audience_as_array": False}, {"audienceAsArray": False}),
        ({"force_default_domain": True}, {"forceDefaultDomain": True}),
        (
            {
                "expires_in": 172800,
                "use_jwt_type": False,
                "audience_as_array": True,
                "force_default_domain": False,
            },
            {
                "expiresIn": 172800,
                "useJwtType": False,
                "audienceAsArray": True,
                "forceDefaultDomain": False,
            },
        ),
    ],
)
async def test_the_body_holds_exactly_the_fields_set_with_the_api_names(
    api: respx.MockRouter, mint: Mint, options: dict[str, Any], expected_body: dict[str, Any]
) -> None:
    route = api.post(TOKENS_URL).respond(201, json=OK_BODY)

    await mint(**options)

    request = route.calls.last.request
    assert json.loads(request.content) == expected_body
    assert b"null" not in request.content
    assert request.headers["Content-Type"] == "application/json"


async def test_expires_in_is_sent_as_a_json_integer(api: respx.MockRouter, mint: Mint) -> None:
    route = api.post(TOKENS_URL).respond(201, json=OK_BODY)

    await mint(expires_in=3600)

    assert b'"expiresIn":3600' in route.calls.last.request.content.replace(b" ", b"")
    assert type(sent_body(route)["expiresIn"]) is int


async def test_the_request_carries_the_bearer_key_and_our_user_agent(
    api: respx.MockRouter, mint: Mint
) -> None:
    route = api.post(TOKENS_URL).respond(201, json=OK_BODY)

    await mint()

    request = route.calls.last.request
    assert request.method == "POST"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["User-Agent"] == f"usegrant-flows/{__version__}"


async def test_a_base_url_with_a_path_prefix_keeps_the_prefix(
    api: respx.MockRouter, mint: Mint
) -> None:
    route = api.post(
        f"http://127.0.0.1:8080/usegrant/v1/providers/{PROVIDER}/clients/{CLIENT}/tokens"
    ).respond(201, json=OK_BODY)

    await mint(client_kwargs={"base_url": "http://127.0.0.1:8080/usegrant/"})

    assert route.call_count == 1


# --- error answers and retries --------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class", "attempts"),
    [
        (400, BadRequestError, 1),
        (401, AuthenticationError, 1),
        (403, AuthenticationError, 1),
        (404, NotFoundError, 1),
        (409, UseGrantAPIError, 1),
        (408, UseGrantAPIError, 5),
        (429, RateLimitError, 5),
        (500, ServerError, 5),
        (502, ServerError, 5),
        (503, ServerError, 5),
        (504, ServerError, 5),
    ],
)
async def test_each_error_status_maps_to_its_exception_after_the_right_number_of_attempts(
    api: respx.MockRouter, mint: Mint, status: int, error_class: type, attempts: int
) -> None:
    route = api.post(TOKENS_URL).respond(
        status, json={"code": "SOME_CODE", "message": "something went wrong"}
    )

    with pytest.raises(UseGrantAPIError) as caught:
        await mint()

    assert type(caught.value) is error_class
    assert caught.value.status_code == status
    assert caught.value.code == "SOME_CODE"
    assert caught.value.message == "something went wrong"
    assert route.call_count == attempts


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_an_html_error_page_becomes_a_short_description(
    api: respx.MockRouter, mint: Mint, status: int
) -> None:
    html = "<html><body><h1>Bad gateway</h1><p>nginx</p></body></html>"
    route = api.post(TOKENS_URL).respond(
        status, text=html, headers={"Content-Type": "text/html; charset=utf-8"}
    )

    with pytest.raises(ServerError) as caught:
        await mint()

    assert caught.value.code is None
    assert "text/html" in caught.value.message
    assert "<" not in str(caught.value)
    assert route.call_count == 5


@pytest.mark.parametrize(("status", "attempts"), [(401, 1), (500, 5)])
async def test_an_empty_error_body_becomes_a_short_description(
    api: respx.MockRouter, mint: Mint, status: int, attempts: int
) -> None:
    route = api.post(TOKENS_URL).respond(status, content=b"")

    with pytest.raises(UseGrantAPIError) as caught:
        await mint()

    assert caught.value.status_code == status
    assert "empty body" in caught.value.message
    assert route.call_count == attempts


async def test_a_transient_failure_then_success_returns_the_token(
    api: respx.MockRouter, mint: Mint
) -> None:
    route = api.post(TOKENS_URL)
    route.side_effect = [
        httpx.Response(503, text="<html>busy</html>"),
        httpx.Response(429, json={"code": "RATE_LIMITED", "message": "slow down"}),
        httpx.Response(201, json=OK_BODY),
    ]

    token = await mint()

    assert token.jti == "unit-jti"
    assert route.call_count == 3


@pytest.mark.parametrize(
    "transport_error",
    [
        httpx.ConnectError("connection refused"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("peer closed connection without sending a response"),
    ],
    ids=lambda exc: type(exc).__name__,
)
async def test_transport_failures_are_retried_then_raise_a_connection_error(
    api: respx.MockRouter, mint: Mint, transport_error: Exception
) -> None:
    route = api.post(TOKENS_URL).mock(side_effect=transport_error)

    with pytest.raises(UseGrantConnectionError) as caught:
        await mint()

    assert route.call_count == 5
    assert "sdk.usegrant.dev" in str(caught.value)
    assert type(caught.value.__cause__) is type(transport_error)


async def test_a_dropped_connection_then_success_returns_the_token(
    api: respx.MockRouter, mint: Mint
) -> None:
    route = api.post(TOKENS_URL)
    route.side_effect = [httpx.RemoteProtocolError("dropped"), httpx.Response(201, json=OK_BODY)]

    token = await mint()

    assert token.access_token.get_secret_value() == TOKEN
    assert route.call_count == 2


async def test_max_attempts_caps_the_number_of_requests(api: respx.MockRouter, mint: Mint) -> None:
    route = api.post(TOKENS_URL).respond(503)

    with pytest.raises(ServerError):
        await mint(client_kwargs={"retry": RetryPolicy(max_attempts=2)})

    assert route.call_count == 2


async def test_a_single_attempt_policy_never_retries(api: respx.MockRouter, mint: Mint) -> None:
    route = api.post(TOKENS_URL).respond(503)

    with pytest.raises(ServerError):
        await mint(client_kwargs={"retry": RetryPolicy(max_attempts=1)})

    assert route.call_count == 1


# --- Retry-After and the deadline ----------------------------------------------------


async def test_retry_after_seconds_is_the_wait_before_the_next_attempt(
    api: respx.MockRouter, mint: Mint, caplog: pytest.LogCaptureFixture
) -> None:
    route = api.post(TOKENS_URL)
    route.side_effect = [
        httpx.Response(429, headers={"Retry-After": "7"}, json={"code": "RATE_LIMITED"}),
        httpx.Response(201, json=OK_BODY),
    ]

    with caplog.at_level(logging.WARNING, logger="usegrant_flows.api.client"):
        await mint()

    assert route.call_count == 2
    assert "retrying in 7.00 s" in caplog.text


async def test_retry_after_as_an_http_date_is_honoured(
    api: respx.MockRouter, mint: Mint, caplog: pytest.LogCaptureFixture
) -> None:
    route = api.post(TOKENS_URL)
    route.side_effect = [
        httpx.Response(503, headers={"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"}),
        httpx.Response(201, json=OK_BODY),
    ]

    with caplog.at_level(logging.WARNING, logger="usegrant_flows.api.client"):
        await mint()

    # A date in the past means "retry now".
    assert "retrying in 0.00 s" in caplog.text
    assert route.call_count == 2


async def test_a_retry_after_beyond_the_deadline_stops_at_once_with_the_last_error(
    api: respx.MockRouter, mint: Mint
) -> None:
    route = api.post(TOKENS_URL).respond(
        429, headers={"Retry-After": "120"}, json={"code": "RATE_LIMITED", "message": "quota"}
    )

    with pytest.raises(RateLimitError) as caught:
        await mint()  # default deadline: 30 s

    assert caught.value.retry_after == 120.0
    assert route.call_count == 1


async def test_retry_after_waits_add_up_against_the_deadline(
    api: respx.MockRouter, mint: Mint
) -> None:
    route = api.post(TOKENS_URL).respond(429, headers={"Retry-After": "2"})

    with pytest.raises(RateLimitError):
        await mint(client_kwargs={"retry": RetryPolicy(max_attempts=10, deadline=5.0)})

    # waits 2 + 2 = 4 s fit in 5 s; a third wait would end at 6 s.
    assert route.call_count == 3


async def test_backoff_waits_add_up_against_the_deadline(api: respx.MockRouter, mint: Mint) -> None:
    route = api.post(TOKENS_URL).respond(500)
    policy = RetryPolicy(
        max_attempts=10, deadline=5.0, initial_backoff=1.0, max_backoff=8.0, jitter=False
    )

    with pytest.raises(ServerError):
        await mint(client_kwargs={"retry": policy})

    # waits 1 + 2 = 3 s fit in 5 s; the next (4 s) would end at 7 s.
    assert route.call_count == 3


# --- untrustworthy 2xx answers -----------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "hint"),
    [
        (httpx.Response(201, text="<html>hello</html>"), "not JSON"),
        (httpx.Response(201, content=b""), "not JSON"),
        (httpx.Response(201, json=[OK_BODY]), "not an object"),
        (httpx.Response(201, json={"expiresAt": OK_BODY["expiresAt"]}), "accessToken"),
        (httpx.Response(201, json={"accessToken": TOKEN}), "expiresAt"),
        (httpx.Response(201, json={**OK_BODY, "accessToken": "not-a-jwt"}), "accessToken"),
        (httpx.Response(201, json={**OK_BODY, "accessToken": "a.b.c"}), "accessToken"),
        (httpx.Response(200, json={**OK_BODY, "expiresAt": "next tuesday"}), "expiresAt"),
        (httpx.Response(201, json={**OK_BODY, "expiresAt": "2030-03-17T17:46:40"}), "expiresAt"),
        (httpx.Response(204), "204"),
        (httpx.Response(302, headers={"Location": "https://elsewhere.example"}), "302"),
    ],
    ids=[
        "html",
        "empty",
        "array",
        "no-token",
        "no-expiry",
        "not-a-jwt",
        "bad-jwt-parts",
        "bad-date",
        "naive-date",
        "204",
        "redirect",
    ],
)
async def test_an_unusable_success_answer_raises_invalid_response_without_retrying(
    api: respx.MockRouter, mint: Mint, response: httpx.Response, hint: str
) -> None:
    route = api.post(TOKENS_URL).mock(return_value=response)

    with pytest.raises(InvalidResponseError) as caught:
        await mint()

    assert hint in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ or caught.value.__context__ is None
    assert route.call_count == 1


async def test_an_invalid_token_is_not_quoted_in_the_error(
    api: respx.MockRouter, mint: Mint
) -> None:
    almost = "eyJhbGciOiJFUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.secret-signature"  # payload not JSON
    api.post(TOKENS_URL).respond(201, json={**OK_BODY, "accessToken": almost})

    with pytest.raises(InvalidResponseError) as caught:
        await mint()

    text = str(caught.value) + repr(caught.value)
    assert almost not in text
    assert "secret-signature" not in text
    assert "c2VjcmV0LXBheWxvYWQ" not in text


# --- validation before any request -------------------------------------------------------


@pytest.mark.parametrize(
    ("create_kwargs", "argument"),
    [
        ({"provider_id": "not-a-uuid"}, "provider_id"),
        ({"provider_id": "../../v1/providers"}, "provider_id"),
        ({"provider_id": f"{PROVIDER}/../x"}, "provider_id"),
        ({"provider_id": "{" + PROVIDER + "}"}, "provider_id"),
        ({"provider_id": f"urn:uuid:{PROVIDER}"}, "provider_id"),
        ({"provider_id": PROVIDER.replace("-", "")}, "provider_id"),
        ({"provider_id": f" {PROVIDER}"}, "provider_id"),
        ({"provider_id": f"{PROVIDER}\n"}, "provider_id"),
        ({"provider_id": 12345}, "provider_id"),
        ({"provider_id": None}, "provider_id"),
        ({"client_id": "%2e%2e%2f"}, "client_id"),
        ({"client_id": ""}, "client_id"),
        ({"client_id": b"9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"}, "client_id"),
        ({"expires_in": 0}, "expires_in"),
        ({"expires_in": -5}, "expires_in"),
        ({"expires_in": 172801}, "expires_in"),
        ({"expires_in": 172800000}, "expires_in"),
        ({"expires_in": True}, "expires_in"),
        ({"expires_in": 900.0}, "expires_in"),
        ({"expires_in": "900"}, "expires_in"),
        ({"use_jwt_type": "true"}, "use_jwt_type"),
        ({"audience_as_array": 1}, "audience_as_array"),
        ({"force_default_domain": "no"}, "force_default_domain"),
    ],
)
async def test_a_rejected_argument_sends_nothing_and_names_the_argument(
    api: respx.MockRouter, mint: Mint, create_kwargs: dict[str, Any], argument: str
) -> None:
    route = api.route().respond(201, json=OK_BODY)
    options = dict(create_kwargs)  # parametrize values are shared by both client kinds
    provider = options.pop("provider_id", PROVIDER)
    client = options.pop("client_id", CLIENT)

    with pytest.raises(ConfigurationError) as caught:
        await mint(provider, client, **options)

    assert argument in str(caught.value)
    assert route.call_count == 0


async def test_the_expires_in_message_gives_the_allowed_range(
    api: respx.MockRouter, mint: Mint
) -> None:
    with pytest.raises(ConfigurationError, match=r"expires_in .* from 1 to 172800"):
        await mint(expires_in=172801)


@pytest.mark.parametrize("expires_in", [1, 172800])
async def test_expires_in_bounds_are_accepted(
    api: respx.MockRouter, mint: Mint, expires_in: int
) -> None:
    route = api.post(TOKENS_URL).respond(201, json=OK_BODY)

    await mint(expires_in=expires_in)

    assert sent_body(route) == {"expiresIn": expires_in}


@pytest.mark.parametrize(
    ("client_kwargs", "argument"),
    [
        ({"api_key": ""}, "api_key"),
        ({"api_key": "usegrant_key with space"}, "api_key"),
        ({"api_key": "usegrant_key\r\nX-Injected: 1"}, "api_key"),
        ({"api_key": "usegrant_key\x00"}, "api_key"),
        ({"api_key": "usegrant_kéy"}, "api_key"),
        ({"api_key": 1234}, "api_key"),
        ({"base_url": "http://sdk.usegrant.dev"}, "base_url"),
        ({"base_url": "http://10.0.0.5:8080"}, "base_url"),
        ({"base_url": "http://localhost.evil.example"}, "base_url"),
        ({"base_url": "ftp://sdk.usegrant.dev"}, "base_url"),
        ({"base_url": "sdk.usegrant.dev"}, "base_url"),
        ({"base_url": "https://user:pass@sdk.usegrant.dev"}, "base_url"),
        ({"base_url": "https://sdk.usegrant.dev?x=1"}, "base_url"),
        ({"base_url": "https://sdk.usegrant.dev#frag"}, "base_url"),
        ({"base_url": "https://sdk.usegrant.dev:99999"}, "base_url"),
        ({"base_url": "https:///v1"}, "base_url"),
        ({"base_url": ""}, "base_url"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1.0}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"max_connections": 0}, "max_connections"),
    ],
)
async def test_a_rejected_client_setting_sends_nothing_and_names_the_setting(
    api: respx.MockRouter, mint: Mint, client_kwargs: dict[str, Any], argument: str
) -> None:
    route = api.route().respond(201, json=OK_BODY)

    with pytest.raises(ConfigurationError) as caught:
        await mint(client_kwargs=client_kwargs)

    assert argument in str(caught.value)
    assert route.call_count == 0


def test_the_base_url_message_names_the_allowed_forms() -> None:
    with pytest.raises(ConfigurationError) as caught:
        UseGrantClient(api_key=API_KEY, base_url="http://example.com")

    message = str(caught.value)
    assert "https://" in message
    assert "127.0.0.0/8" in message
    assert "::1" in message
    assert "localhost" in message


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:8787",
        "http://127.3.2.1",
        "http://[::1]:8080",
        "http://localhost:1",
        "https://sdk.usegrant.dev",
        "https://sdk.usegrant.dev/",
        "https://gateway.example/usegrant",
    ],
)
def test_https_and_loopback_http_base_urls_are_accepted(base_url: str) -> None:
    with UseGrantClient(api_key=API_KEY, base_url=base_url) as client:
        assert client.base_url == base_url.rstrip("/")


@pytest.mark.parametrize(
    "policy_kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": 2.5},
        {"deadline": 0},
        {"deadline": float("nan")},
        {"initial_backoff": -1},
        {"initial_backoff": 9.0, "max_backoff": 8.0},
    ],
)
def test_an_impossible_retry_policy_is_rejected(policy_kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="RetryPolicy"):
        RetryPolicy(**policy_kwargs)


# --- secrets never leak ---------------------------------------------------------------------


def _leak_scenarios() -> list[tuple[str, Any]]:
    return [
        ("success", httpx.Response(201, json=OK_BODY)),
        (
            "error-echoes-key",
            httpx.Response(
                401, json={"code": "INVALID_KEY", "message": f"API key {API_KEY} is unknown"}
            ),
        ),
        (
            "error-echoes-token",
            httpx.Response(400, json={"code": API_KEY, "message": f"token {TOKEN} was bad"}),
        ),
        ("server-error", httpx.Response(503, text=f"<html>{API_KEY}</html>")),
        ("bad-expiry", httpx.Response(201, json={**OK_BODY, "expiresAt": "soon"})),
        ("bad-type", httpx.Response(201, json={**OK_BODY, "type": ["Bearer"]})),
        ("connection", httpx.ConnectError(f"refused (Bearer {API_KEY})")),
    ]


@pytest.mark.parametrize("scenario", _leak_scenarios(), ids=[name for name, _ in _leak_scenarios()])
async def test_the_key_and_the_token_appear_in_no_error_repr_or_log(
    api: respx.MockRouter,
    mint: Mint,
    caplog: pytest.LogCaptureFixture,
    scenario: tuple[str, Any],
) -> None:
    _, answer = scenario
    if isinstance(answer, Exception):
        api.post(TOKENS_URL).mock(side_effect=answer)
    else:
        api.post(TOKENS_URL).mock(return_value=answer)

    seen: list[str] = []
    with caplog.at_level(logging.DEBUG):
        try:
            token = await mint()
        except Exception as exc:
            seen += [str(exc), repr(exc), repr(exc.args), repr(vars(exc))]
            seen += [repr(pickle.loads(pickle.dumps(exc)))]
        else:
            seen += [repr(token), str(token), repr(token.model_dump())]
    seen.append(caplog.text)
    seen += [record.getMessage() for record in caplog.records]

    text = "\n".join(seen)
    assert API_KEY not in text
    assert TOKEN not in text
    assert TOKEN.split(".")[1] not in text


def test_the_client_repr_shows_where_it_points_not_its_key() -> None:
    with UseGrantClient(api_key=API_KEY, base_url=BASE) as client:
        text = repr(client) + str(client) + repr(vars(client))
    assert BASE in repr(client)
    assert API_KEY not in text


async def test_the_async_client_repr_shows_where_it_points_not_its_key() -> None:
    async with AsyncUseGrantClient(api_key=API_KEY, base_url=BASE) as client:
        text = repr(client) + repr(vars(client))
    assert API_KEY not in text


# --- logging ---------------------------------------------------------------------------------


async def test_a_call_logs_one_warning_for_its_retries_and_the_rest_at_debug(
    api: respx.MockRouter, mint: Mint, caplog: pytest.LogCaptureFixture
) -> None:
    api.post(TOKENS_URL).respond(503)

    with (
        caplog.at_level(logging.DEBUG, logger="usegrant_flows.api.client"),
        pytest.raises(ServerError),
    ):
        await mint()

    retries = [r for r in caplog.records if r.name == "usegrant_flows.api.client"]
    assert [r.levelno for r in retries] == [logging.WARNING] + [logging.DEBUG] * 3
    messages = [r.getMessage() for r in retries]
    assert all("HTTP 503" in message for message in messages)
    for number, message in zip(range(2, 6), messages, strict=True):
        assert f"attempt {number}/5" in message
    assert "up to 5 attempts within 30 s" in messages[0]


async def test_a_connection_retry_is_logged_with_the_error_class(
    api: respx.MockRouter, mint: Mint, caplog: pytest.LogCaptureFixture
) -> None:
    route = api.post(TOKENS_URL)
    route.side_effect = [httpx.ConnectTimeout("slow"), httpx.Response(201, json=OK_BODY)]

    with caplog.at_level(logging.WARNING, logger="usegrant_flows.api.client"):
        await mint()

    assert "ConnectTimeout" in caplog.text
    assert "attempt 2/5" in caplog.text


async def test_non_transient_errors_are_not_logged_as_retries(
    api: respx.MockRouter, mint: Mint, caplog: pytest.LogCaptureFixture
) -> None:
    api.post(TOKENS_URL).respond(404, json={"code": "NOT_FOUND", "message": "no such client"})

    with (
        caplog.at_level(logging.WARNING, logger="usegrant_flows.api.client"),
        pytest.raises(NotFoundError),
    ):
        await mint()

    assert "retrying" not in caplog.text


# --- limiter ---------------------------------------------------------------------------------


async def test_the_limiter_is_called_before_every_attempt(
    api: respx.MockRouter, mint: Mint
) -> None:
    route = api.post(TOKENS_URL)
    route.side_effect = [
        httpx.Response(503),
        httpx.Response(503),
        httpx.Response(201, json=OK_BODY),
    ]
    limiter = CountingLimiter()

    await mint(client_kwargs={"limiter": limiter})

    assert limiter.calls == route.call_count == 3


async def test_a_rejected_argument_does_not_consume_the_limiter(
    api: respx.MockRouter, mint: Mint
) -> None:
    limiter = CountingLimiter()

    with pytest.raises(ConfigurationError):
        await mint(client_kwargs={"limiter": limiter}, expires_in=0)

    assert limiter.calls == 0


# --- settings as the source of missing arguments ---------------------------------------------


async def test_missing_key_and_base_url_come_from_the_environment(
    api: respx.MockRouter, mint: Mint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USEGRANT_API_KEY", "usegrant_from_env")
    monkeypatch.setenv("USEGRANT_BASE_URL", "http://127.0.0.1:9999")
    route = api.post(
        f"http://127.0.0.1:9999/v1/providers/{PROVIDER}/clients/{CLIENT}/tokens"
    ).respond(201, json=OK_BODY)

    await mint(client_kwargs={"api_key": None, "base_url": None})

    assert route.calls.last.request.headers["Authorization"] == "Bearer usegrant_from_env"


async def test_no_key_anywhere_fails_before_any_request(api: respx.MockRouter, mint: Mint) -> None:
    route = api.route().respond(201, json=OK_BODY)

    with pytest.raises(ConfigurationError, match="USEGRANT_API_KEY"):
        await mint(client_kwargs={"api_key": None})

    assert route.call_count == 0


# --- async connection pools --------------------------------------------------------------------


@pytest.mark.parametrize(("max_connections", "pools"), [(1, 1), (4, 1), (10, 3), (32, 8)])
async def test_async_connections_are_spread_over_pools_of_at_most_four(
    max_connections: int, pools: int
) -> None:
    async with AsyncUseGrantClient(
        api_key=API_KEY, base_url=BASE, max_connections=max_connections
    ) as client:
        assert client.pool_count == pools


async def test_concurrent_async_calls_go_to_the_least_busy_pools(api: respx.MockRouter) -> None:
    import asyncio

    arrived = 0
    all_in = asyncio.Event()
    busy_snapshot: list[int] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal arrived
        arrived += 1
        if arrived == 8:
            busy_snapshot.extend(client._in_flight)
            all_in.set()
        await asyncio.wait_for(all_in.wait(), timeout=10)
        return httpx.Response(201, json=OK_BODY)

    api.post(TOKENS_URL).mock(side_effect=answer)
    async with AsyncUseGrantClient(api_key=API_KEY, base_url=BASE, max_connections=32) as client:
        tokens = await asyncio.gather(*(client.create_token(PROVIDER, CLIENT) for _ in range(8)))

    assert len(tokens) == 8
    assert busy_snapshot == [1] * 8
    assert client._in_flight == [0] * 8


# --- import cost ---


def test_importing_the_client_does_not_import_prefect() -> None:
    code = "import usegrant_flows.api.client, sys; assert 'prefect' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
