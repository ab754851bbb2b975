"""WebhookTokenSink: exact body, HMAC signature, secret headers, retries, URL rules."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable

import httpx
import pytest
import respx
from pydantic import ValidationError

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.api.models import AccessToken
from usegrant_flows.sinks import SinkError, WebhookDeliveryError, WebhookTokenSink
from usegrant_flows.sinks.webhook import sign

MakeToken = Callable[..., AccessToken]
URL = "https://hooks.example.com/T0/B0/url-secret-part?k=query-secret"
META = {"providerId": "497f6eca-6276-4993-bfeb-53cbbbba6f08", "clientId": "c1"}


def _sink(**fields: object) -> WebhookTokenSink:
    return WebhookTokenSink(url=URL, **fields)  # type: ignore[arg-type]


@pytest.fixture
def hook() -> respx.Router:
    with respx.mock(assert_all_called=False) as router:
        yield router


def test_posts_the_exact_json_body(hook: respx.Router, make_token: MakeToken) -> None:
    route = hook.post(URL).respond(204)
    token = make_token()
    _sink().write(token, META)
    request = route.calls.last.request
    wire = token.to_wire()
    assert (
        request.content
        == (
            f'{{"accessToken":"{wire["accessToken"]}","expiresAt":"{wire["expiresAt"]}",'
            f'"type":"Bearer","providerId":"{META["providerId"]}","clientId":"c1"}}'
        ).encode()
    )
    assert request.headers["content-type"] == "application/json"


def test_missing_metadata_sends_nulls(hook: respx.Router, make_token: MakeToken) -> None:
    route = hook.post(URL).respond(200)
    _sink().write(make_token())
    body = json.loads(route.calls.last.request.content)
    assert body["providerId"] is None
    assert body["clientId"] is None


def test_signature_is_hmac_sha256_of_timestamp_dot_body(
    hook: respx.Router, make_token: MakeToken
) -> None:
    route = hook.post(URL).respond(200)
    _sink(signing_key="shared-key").write(make_token(), META)
    request = route.calls.last.request
    timestamp = request.headers["x-usegrant-timestamp"]
    expected = hmac.new(
        b"shared-key", timestamp.encode() + b"." + request.content, hashlib.sha256
    ).hexdigest()
    assert request.headers["x-usegrant-signature"] == f"sha256={expected}"
    assert timestamp.isdigit()


def test_signature_header_names_are_configurable(hook: respx.Router, make_token: MakeToken) -> None:
    route = hook.post(URL).respond(200)
    _sink(signing_key="k", signature_header="X-Sig", timestamp_header="X-Ts").write(make_token())
    headers = route.calls.last.request.headers
    assert headers["x-sig"] == sign(b"k", headers["x-ts"], route.calls.last.request.content)


def test_no_signature_headers_without_a_key(hook: respx.Router, make_token: MakeToken) -> None:
    route = hook.post(URL).respond(200)
    _sink().write(make_token())
    headers = route.calls.last.request.headers
    assert "x-usegrant-signature" not in headers
    assert "x-usegrant-timestamp" not in headers


def test_sends_the_secret_headers(hook: respx.Router, make_token: MakeToken) -> None:
    route = hook.post(URL).respond(200)
    _sink(headers={"Authorization": "Bearer receiver-key"}).write(make_token())
    assert route.calls.last.request.headers["authorization"] == "Bearer receiver-key"


def test_a_transient_failure_is_retried(hook: respx.Router, make_token: MakeToken) -> None:
    route = hook.post(URL).mock(side_effect=[httpx.Response(503), httpx.Response(200)])
    _sink().write(make_token())
    assert route.call_count == 2


def test_connection_errors_are_retried_up_to_max_attempts(
    hook: respx.Router, make_token: MakeToken
) -> None:
    route = hook.post(URL).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(WebhookDeliveryError, match="could not be reached"):
        _sink(max_attempts=4).write(make_token())
    assert route.call_count == 4


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_a_client_error_is_not_retried(
    hook: respx.Router, make_token: MakeToken, status: int
) -> None:
    route = hook.post(URL).respond(status)
    with pytest.raises(WebhookDeliveryError) as caught:
        _sink().write(make_token())
    assert route.call_count == 1
    assert caught.value.status_code == status
    assert caught.value.transient is False


def test_a_redirect_is_not_followed(hook: respx.Router, make_token: MakeToken) -> None:
    route = hook.post(URL).respond(307, headers={"Location": "https://evil.example.net/"})
    other = hook.post("https://evil.example.net/").respond(200)
    with pytest.raises(WebhookDeliveryError, match="answered 307"):
        _sink().write(make_token())
    assert route.call_count == 1
    assert other.call_count == 0


def test_errors_name_the_host_but_not_the_url_secret_or_token(
    hook: respx.Router, make_token: MakeToken
) -> None:
    hook.post(URL).respond(500)
    token = make_token()
    with pytest.raises(SinkError) as caught:
        _sink(max_attempts=1).write(token)
    message = str(caught.value)
    assert message == "webhook https://hooks.example.com answered 500"
    assert token.access_token.get_secret_value() not in message


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "ftp://127.0.0.1/x",
        "hooks.example.com/x",
        "https:///no-host",
        "http://10.0.0.1/x",
    ],
)
def test_refuses_a_url_that_is_not_https_or_loopback_http(url: str) -> None:
    with pytest.raises(ValidationError, match="url must be") as caught:
        WebhookTokenSink(url=url)  # type: ignore[arg-type]
    assert url not in str(caught.value)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[::1]:9/h"]
)
def test_accepts_plain_http_to_loopback(url: str) -> None:
    WebhookTokenSink(url=url)  # type: ignore[arg-type]


def test_describe_shows_scheme_host_and_port_only() -> None:
    assert _sink().describe() == "webhook https://hooks.example.com"
    local = WebhookTokenSink(url="http://127.0.0.1:8080/a?b=c")  # type: ignore[arg-type]
    assert local.describe() == "webhook http://127.0.0.1:8080"


def test_repr_hides_url_headers_and_key() -> None:
    text = repr(_sink(headers={"Authorization": "Bearer receiver-key"}, signing_key="sk-1"))
    for secret in ("url-secret-part", "query-secret", "receiver-key", "sk-1"):
        assert secret not in text


def test_url_headers_and_key_are_prefect_secret_fields() -> None:
    secret_fields = WebhookTokenSink.model_json_schema()["secret_fields"]
    assert {"url", "signing_key"} <= set(secret_fields)
    assert any(field.startswith("headers") for field in secret_fields)


def test_is_write_only() -> None:
    assert WebhookTokenSink.readable is False
    assert _sink().read() is None
    assert WebhookTokenSink.kind == "webhook"


async def test_async_write_posts_once(hook: respx.Router, make_token: MakeToken) -> None:
    route = hook.post(URL).respond(200)
    await _sink().awrite(make_token(), META)
    assert route.call_count == 1
    assert await _sink().aread() is None


def test_preflight_of_a_sound_webhook_sends_nothing(hook: respx.Router) -> None:
    _sink(signing_key="k", headers={"Authorization": "Bearer x"}).preflight()
    assert hook.calls.call_count == 0


def test_preflight_refuses_a_header_value_with_a_line_break() -> None:
    sink = _sink(headers={"X-Extra": "a\r\nInjected: yes"})
    with pytest.raises(
        ConfigurationError, match="'X-Extra' has a value that is not one line"
    ) as info:
        sink.preflight()
    assert "Injected" not in str(info.value)


def test_preflight_refuses_a_header_name_that_is_not_a_token() -> None:
    with pytest.raises(ConfigurationError, match="is not an HTTP header name"):
        _sink(signature_header="X Signature").preflight()


def test_preflight_refuses_an_empty_signing_key() -> None:
    with pytest.raises(ConfigurationError, match="signing_key is empty"):
        _sink(signing_key="").preflight()


def test_preflight_refuses_a_url_that_slipped_past_validation() -> None:
    from pydantic import SecretStr

    sink = WebhookTokenSink.model_construct(url=SecretStr("http://example.com/hook"))
    with pytest.raises(ConfigurationError, match="plain http"):
        sink.preflight()
