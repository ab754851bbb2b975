"""verify_token checks signature, exp, nbf, aud and iss against a JWKS, never quoting the token."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import jwt
import pytest
import respx
from pydantic import SecretStr

from usegrant_flows.api.errors import ConfigurationError, TokenVerificationError
from usegrant_flows.api.models import AccessToken, format_js_datetime
from usegrant_flows.api.verify import (
    clear_jwks_cache,
    fetch_openid_configuration,
    issuer_for,
    verify_token,
)
from usegrant_flows.emulator.keys import SigningKey

JWKS_URL = "https://auth.acme.test/.well-known/jwks"
ISSUER = "https://auth.acme.test"
AUDIENCE = "sts.amazonaws.com"
KEY = SigningKey.generate()
OTHER_KEY = SigningKey.generate()


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    clear_jwks_cache()
    yield
    clear_jwks_cache()


@pytest.fixture
def jwks() -> Iterator[respx.Route]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock.get(JWKS_URL).mock(
            return_value=httpx.Response(200, json={"keys": [KEY.public_jwk()]})
        )


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "sub": "ci",
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def token(key: SigningKey = KEY, **overrides: Any) -> AccessToken:
    body = claims(**overrides)
    raw = key.sign(body, typ="at+jwt")
    expires = datetime.fromtimestamp(body.get("exp", 0), tz=timezone.utc)
    return AccessToken.model_validate(
        {"accessToken": raw, "expiresAt": format_js_datetime(expires), "type": "Bearer"}
    )


def test_valid_token_returns_its_claims(jwks: respx.Route) -> None:
    minted = token()
    verified = verify_token(minted, JWKS_URL, audience=AUDIENCE, issuer=ISSUER)
    assert verified["jti"] == minted.jti


def test_raw_string_and_secret_str_tokens_are_accepted(jwks: respx.Route) -> None:
    raw = token().access_token.get_secret_value()
    assert verify_token(raw, JWKS_URL)["sub"] == "ci"
    assert verify_token(SecretStr(raw), JWKS_URL)["sub"] == "ci"


def test_audience_in_an_array_claim_matches(jwks: respx.Route) -> None:
    assert verify_token(token(aud=[AUDIENCE]), JWKS_URL, audience=AUDIENCE)["aud"] == [AUDIENCE]


def test_wrong_audience_is_refused(jwks: respx.Route) -> None:
    with pytest.raises(TokenVerificationError, match="audience"):
        verify_token(token(), JWKS_URL, audience="api://other")


def test_no_expected_audience_skips_the_audience_check(jwks: respx.Route) -> None:
    assert verify_token(token(aud="anything"), JWKS_URL)["aud"] == "anything"


def test_wrong_issuer_is_refused(jwks: respx.Route) -> None:
    with pytest.raises(TokenVerificationError, match="issuer"):
        verify_token(token(), JWKS_URL, issuer="https://evil.test")


def test_expired_token_is_refused(jwks: respx.Route) -> None:
    past = int(time.time()) - 100
    with pytest.raises(TokenVerificationError, match="expired"):
        verify_token(token(iat=past - 600, nbf=past - 600, exp=past), JWKS_URL)


def test_leeway_accepts_a_token_expired_within_it(jwks: respx.Route) -> None:
    past = int(time.time()) - 5
    assert verify_token(token(iat=past - 600, nbf=past - 600, exp=past), JWKS_URL, leeway=60)


def test_token_not_yet_valid_is_refused(jwks: respx.Route) -> None:
    future = int(time.time()) + 300
    with pytest.raises(TokenVerificationError, match="not valid yet"):
        verify_token(token(nbf=future, exp=future + 600), JWKS_URL)


def test_token_without_exp_is_refused(jwks: respx.Route) -> None:
    raw = KEY.sign(claims(exp=None), typ="at+jwt")
    with pytest.raises(TokenVerificationError, match="exp"):
        verify_token(raw, JWKS_URL)


def test_token_signed_by_a_key_outside_the_jwks_is_refused(jwks: respx.Route) -> None:
    with pytest.raises(TokenVerificationError, match="lacks"):
        verify_token(token(key=OTHER_KEY), JWKS_URL)


def test_tampered_token_fails_the_signature_check(jwks: respx.Route) -> None:
    header, _, signature = token().access_token.get_secret_value().split(".")
    forged_claims = jwt.utils.base64url_encode(json.dumps(claims(sub="admin")).encode()).decode()
    with pytest.raises(TokenVerificationError, match="signature"):
        verify_token(f"{header}.{forged_claims}.{signature}", JWKS_URL)


def test_hmac_token_is_refused_whatever_the_key(jwks: respx.Route) -> None:
    raw = jwt.encode(claims(), "shared-secret-of-at-least-32-bytes!!", algorithm="HS256")
    with pytest.raises(TokenVerificationError, match="refused algorithm"):
        verify_token(raw, JWKS_URL)


def test_garbage_is_refused_as_malformed(jwks: respx.Route) -> None:
    with pytest.raises(TokenVerificationError, match="well-formed"):
        verify_token("not-a-jwt", JWKS_URL)


def test_error_messages_never_quote_the_token(jwks: respx.Route) -> None:
    minted = token()
    raw = minted.access_token.get_secret_value()
    with pytest.raises(TokenVerificationError) as caught:
        verify_token(minted, JWKS_URL, audience="api://other")
    assert raw not in str(caught.value)
    assert raw.split(".")[1] not in str(caught.value)
    assert minted.fingerprint in str(caught.value)


def test_jwks_is_fetched_once_and_cached(jwks: respx.Route) -> None:
    verify_token(token(), JWKS_URL)
    verify_token(token(), JWKS_URL)
    assert jwks.call_count == 1


def test_unknown_kid_triggers_one_fresh_fetch(jwks: respx.Route) -> None:
    verify_token(token(), JWKS_URL)
    jwks.mock(return_value=httpx.Response(200, json={"keys": [OTHER_KEY.public_jwk()]}))
    assert verify_token(token(key=OTHER_KEY), JWKS_URL)["sub"] == "ci"
    assert jwks.call_count == 2


def test_unreachable_jwks_raises_token_verification_error() -> None:
    with respx.mock() as mock:
        mock.get(JWKS_URL).mock(side_effect=httpx.ConnectError("refused"))
        with pytest.raises(TokenVerificationError, match="ConnectError"):
            verify_token(token(), JWKS_URL)


def test_jwks_error_status_raises_token_verification_error() -> None:
    with respx.mock() as mock:
        mock.get(JWKS_URL).mock(return_value=httpx.Response(503, text="<html>"))
        with pytest.raises(TokenVerificationError, match="503"):
            verify_token(token(), JWKS_URL)


@pytest.mark.parametrize(
    "url",
    ["http://auth.acme.test/.well-known/jwks", "ftp://auth.acme.test/jwks", "not a url"],
)
def test_jwks_url_must_be_https_or_loopback_http(url: str) -> None:
    with pytest.raises(ConfigurationError, match="jwks_url"):
        verify_token(token(), url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8787/.well-known/jwks", "http://localhost/.well-known/jwks"]
)
def test_loopback_http_jwks_url_is_allowed(url: str) -> None:
    with respx.mock() as mock:
        mock.get(url).mock(return_value=httpx.Response(200, json={"keys": [KEY.public_jwk()]}))
        assert verify_token(token(), url)["sub"] == "ci"


def test_negative_leeway_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="leeway"):
        verify_token(token(), JWKS_URL, leeway=-1)


def test_issuer_for_prefers_the_custom_domain() -> None:
    assert issuer_for("acme.auth.usegrant.dev", "auth.acme.test") == "https://auth.acme.test"


def test_issuer_for_uses_the_default_domain_when_forced_or_without_custom() -> None:
    assert issuer_for("acme.auth.usegrant.dev") == "https://acme.auth.usegrant.dev"
    forced = issuer_for("acme.auth.usegrant.dev", "auth.acme.test", force_default_domain=True)
    assert forced == "https://acme.auth.usegrant.dev"


def test_fetch_openid_configuration_appends_the_well_known_path() -> None:
    with respx.mock() as mock:
        route = mock.get(f"{ISSUER}/.well-known/openid-configuration").mock(
            return_value=httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": JWKS_URL})
        )
        assert fetch_openid_configuration(ISSUER)["jwks_uri"] == JWKS_URL
        assert route.called
