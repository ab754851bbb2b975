"""verify_token checks signature, exp, nbf, aud and iss against a JWKS, never quoting the token."""

from __future__ import annotations

import asyncio
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

from tests.issuer import DISCOVERY_URL, Issuer
from tests.issuer import JWKS_URL as ISSUER_JWKS
from usegrant_flows.api.claims import check_minted
from usegrant_flows.api.errors import ConfigurationError, TokenVerificationError
from usegrant_flows.api.jwks import JwksCache, averify_minted
from usegrant_flows.api.models import AccessToken, format_js_datetime
from usegrant_flows.api.verify import (
    MAX_DOCUMENT_BYTES,
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


# --- Minted tokens: check_minted (pure) and JwksCache (bounded fetches) ----------------


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def refused(token: AccessToken, renew_before: float = 300) -> str:
    with pytest.raises(TokenVerificationError) as info:
        check_minted(token, now=now_utc(), renew_before=renew_before)
    message = str(info.value)
    assert token.access_token.get_secret_value() not in message
    assert "\n" not in message
    return message


def test_a_sound_minted_token_passes_the_claim_checks() -> None:
    issuer = Issuer()
    minted = check_minted(issuer.mint(), now=now_utc(), renew_before=300)
    assert (minted.algorithm, minted.kid, minted.issuer) == ("ES256", issuer.key.kid, issuer.issuer)


def test_an_expired_token_is_refused() -> None:
    issuer = Issuer()
    past = int(time.time()) - 3600
    token = issuer.mint(iat=past - 3600, nbf=past - 3600, exp=past)
    assert "expires at" in refused(token)


def test_a_token_inside_the_renew_before_margin_is_no_improvement() -> None:
    token = Issuer().mint(lifetime=200)
    assert "renew_before (300 s)" in refused(token, renew_before=300)
    check_minted(token, now=now_utc(), renew_before=100)  # outside a smaller margin: fine


def test_alg_none_is_refused() -> None:
    issuer = Issuer()
    token = issuer.mint(raw=issuer.unsigned({"alg": "none"}, signature="c2ln"))
    assert "algorithm 'none' is refused" in refused(token)


def test_an_empty_signature_is_refused() -> None:
    issuer = Issuer()
    token = issuer.mint(raw=issuer.unsigned({"alg": "ES256", "kid": issuer.key.kid}))
    assert "no signature" in refused(token)


def test_hs256_is_refused() -> None:
    claims = Issuer().claims()
    raw = jwt.encode(claims, "a-shared-secret-of-at-least-32-bytes", algorithm="HS256")
    token = Issuer().mint(raw=raw, expires_at=claims["exp"])
    assert "algorithm 'HS256' is refused" in refused(token)


def test_exp_and_expires_at_must_agree_within_five_seconds() -> None:
    issuer = Issuer()
    claims = issuer.claims()
    assert "differ by 600 s" in refused(issuer.mint(expires_at=claims["exp"] + 600))
    check_minted(issuer.mint(expires_at=time.time() + 3603), now=now_utc(), renew_before=300)


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_iat_or_nbf_in_the_future_beyond_the_skew_is_refused(claim: str) -> None:
    token = Issuer().mint(**{claim: int(time.time()) + 600})
    assert f"its {claim} is" in refused(token) and "in the future" in refused(token)


def test_iat_within_the_clock_skew_is_accepted() -> None:
    token = Issuer().mint(iat=int(time.time()) + 30)
    check_minted(token, now=now_utc(), renew_before=300)


@pytest.mark.parametrize("claim", ["sub", "aud"])
def test_missing_sub_or_aud_is_refused(claim: str) -> None:
    assert f"no {claim} claim" in refused(Issuer().mint(**{claim: None}))


def test_an_oversized_token_is_refused_before_anything_else() -> None:
    token = Issuer().mint(padding="x" * 20_000)
    assert "larger than 16 KiB" in refused(token)


def test_a_token_without_numeric_exp_is_refused() -> None:
    issuer = Issuer()
    token = issuer.mint(exp="tomorrow", expires_at=time.time() + 3600)
    assert "no numeric exp" in refused(token)


async def test_full_mode_accepts_a_token_signed_by_the_issuer_found_by_discovery() -> None:
    issuer = Issuer()
    keys = JwksCache(transport=issuer.transport)
    await averify_minted(issuer.mint(), now=now_utc(), renew_before=300, keys=keys)
    assert issuer.requests == {"/.well-known/openid-configuration": 1, "/.well-known/jwks": 1}


async def test_a_rogue_signature_with_the_issuers_kid_is_refused_in_full_mode_only() -> None:
    issuer = Issuer()
    rogue = SigningKey.generate()
    token = issuer.mint(key=rogue, header={"kid": issuer.key.kid})
    keys = JwksCache(transport=issuer.transport)
    with pytest.raises(TokenVerificationError, match="signature does not verify") as info:
        await averify_minted(token, now=now_utc(), renew_before=300, keys=keys)
    assert token.access_token.get_secret_value() not in str(info.value)
    await averify_minted(token, now=now_utc(), renew_before=300, mode="claims", keys=keys)


async def test_claims_mode_makes_no_request() -> None:
    issuer = Issuer()
    keys = JwksCache(transport=issuer.transport)
    await averify_minted(issuer.mint(), now=now_utc(), renew_before=300, mode="claims", keys=keys)
    assert issuer.requests == {}


async def test_an_unknown_kid_triggers_exactly_one_refetch() -> None:
    issuer = Issuer()
    keys = JwksCache(transport=issuer.transport)
    await averify_minted(issuer.mint(), now=now_utc(), renew_before=300, keys=keys)
    assert issuer.requests["/.well-known/jwks"] == 1

    stranger = SigningKey.generate()  # a kid the issuer never published
    with pytest.raises(TokenVerificationError, match=r"kid .* is not in the JWKS"):
        await averify_minted(issuer.mint(key=stranger), now=now_utc(), renew_before=300, keys=keys)
    assert issuer.requests["/.well-known/jwks"] == 2
    assert issuer.requests["/.well-known/openid-configuration"] == 1  # discovery cached


async def test_a_rotated_issuer_key_is_found_by_the_one_refetch() -> None:
    issuer = Issuer()
    keys = JwksCache(transport=issuer.transport)
    await averify_minted(issuer.mint(), now=now_utc(), renew_before=300, keys=keys)
    issuer.key = SigningKey.generate()
    issuer.published.append(issuer.key)
    await averify_minted(issuer.mint(), now=now_utc(), renew_before=300, keys=keys)
    assert issuer.requests["/.well-known/jwks"] == 2


async def test_concurrent_unknown_kids_share_one_refetch() -> None:
    issuer = Issuer()
    keys = JwksCache(transport=issuer.transport)
    await averify_minted(issuer.mint(), now=now_utc(), renew_before=300, keys=keys)
    issuer.key = SigningKey.generate()
    issuer.published.append(issuer.key)
    tokens = [issuer.mint() for _ in range(5)]
    await asyncio.gather(
        *(averify_minted(t, now=now_utc(), renew_before=300, keys=keys) for t in tokens)
    )
    assert issuer.requests["/.well-known/jwks"] == 2


async def test_an_explicit_jwks_url_skips_discovery() -> None:
    issuer = Issuer()
    keys = JwksCache(transport=issuer.transport)
    await averify_minted(
        issuer.mint(), now=now_utc(), renew_before=300, keys=keys, jwks_url=ISSUER_JWKS
    )
    assert issuer.requests == {"/.well-known/jwks": 1}


async def test_a_discovery_document_naming_another_issuer_is_refused() -> None:
    issuer = Issuer()
    token = issuer.mint(iss="https://auth.issuer.test/other")
    other = Issuer("https://auth.issuer.test")  # serves issuer https://auth.issuer.test
    keys = JwksCache(transport=other.transport)
    with pytest.raises(TokenVerificationError, match="names issuer"):
        await averify_minted(token, now=now_utc(), renew_before=300, keys=keys)


async def test_a_plain_http_issuer_is_not_used_for_discovery() -> None:
    issuer = Issuer()
    token = issuer.mint(iss="http://evil.example")
    keys = JwksCache(transport=issuer.transport)
    with pytest.raises(TokenVerificationError, match="plain http is only allowed"):
        await averify_minted(token, now=now_utc(), renew_before=300, keys=keys)
    assert issuer.requests == {}


async def test_an_oversized_jwks_is_refused() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"{" + b" " * (MAX_DOCUMENT_BYTES + 10) + b"}")

    keys = JwksCache(transport=httpx.MockTransport(answer))
    issuer = Issuer()
    with pytest.raises(TokenVerificationError, match="larger than 64 KiB"):
        await averify_minted(
            issuer.mint(), now=now_utc(), renew_before=300, keys=keys, jwks_url=ISSUER_JWKS
        )


async def test_a_stalled_jwks_fetch_ends_at_its_timeout() -> None:
    async def stall(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200, json={"keys": []})

    keys = JwksCache(transport=httpx.MockTransport(stall), timeout=0.2)
    with pytest.raises(TokenVerificationError, match=r"within 0\.2 s"):
        await averify_minted(
            Issuer().mint(), now=now_utc(), renew_before=300, keys=keys, jwks_url=ISSUER_JWKS
        )


async def test_a_key_of_the_wrong_curve_is_refused() -> None:
    issuer = Issuer()
    # The header says ES384 over an ES256 key's signature (pyjwt would not sign that).
    _, body, sig = issuer.mint().access_token.get_secret_value().split(".")
    forged = f"{issuer_b64({'alg': 'ES384', 'kid': issuer.key.kid})}.{body}.{sig}"
    token = issuer.mint(raw=forged, expires_at=Issuer().claims()["exp"])
    keys = JwksCache(transport=issuer.transport)
    with pytest.raises(TokenVerificationError, match="is for 'ES256'"):
        await averify_minted(token, now=now_utc(), renew_before=300, keys=keys)


def issuer_b64(data: dict[str, Any]) -> str:
    from tests.issuer import b64

    return b64(data)


def test_discovery_url_constant_is_where_the_issuer_serves_discovery() -> None:
    assert DISCOVERY_URL.endswith("/.well-known/openid-configuration")


@pytest.mark.filterwarnings("ignore:The RSA key is 1024 bits long")  # signing the short key
@pytest.mark.parametrize(("bits", "accepted"), [(1024, False), (2048, True)])
async def test_rsa_keys_shorter_than_2048_bits_are_refused(bits: int, accepted: bool) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    jwk = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key())), "kid": "r1"}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"keys": [jwk]}))
    claims = Issuer().claims()
    raw = jwt.encode(claims, private, algorithm="PS256", headers={"kid": "r1"})
    token = Issuer().mint(raw=raw, expires_at=claims["exp"])
    keys = JwksCache(transport=transport)
    verify = averify_minted(token, now=now_utc(), renew_before=300, keys=keys, jwks_url=ISSUER_JWKS)
    if accepted:
        await verify
    else:
        with pytest.raises(TokenVerificationError, match="has 1024 bits"):
            await verify
