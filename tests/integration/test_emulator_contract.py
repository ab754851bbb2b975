"""The emulator honours CONTRACT.md, checked with raw httpx and the contract's literal names."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import jwt
import pytest

from usegrant_flows.emulator import RunningEmulator

JS_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def http(emu: RunningEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url, timeout=10) as client:
        yield client


def token_path(provider_id: object, client_id: object) -> str:
    return f"/v1/providers/{provider_id}/clients/{client_id}/tokens"


def auth(emu: RunningEmulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {emu.api_key}"}


def mint(
    http: httpx.Client, emu: RunningEmulator, body: Any = None, client: int = 0
) -> httpx.Response:
    provider = emu.seed.providers[0]
    path = token_path(provider.id, provider.clients[client].id)
    if body is None:
        return http.post(path, headers=auth(emu))
    return http.post(path, headers=auth(emu), json=body)


def verified(http: httpx.Client, token: str, audience: str) -> dict[str, Any]:
    keys = jwt.PyJWKSet.from_dict(http.get("/.well-known/jwks").json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    return jwt.decode(token, key.key, algorithms=["ES256"], audience=audience)


# --- success --------------------------------------------------------------------------


def test_mint_without_body_answers_201_with_access_token_expires_at_and_bearer_type(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    response = mint(http, emu)
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"accessToken", "expiresAt", "type"}
    assert body["type"] == "Bearer"


def test_expires_at_is_javascript_iso_and_equals_the_exp_claim(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    body = mint(http, emu, {"expiresIn": 900}).json()
    assert JS_ISO.match(body["expiresAt"])
    claims = jwt.decode(body["accessToken"], options={"verify_signature": False})
    expires_at = datetime.strptime(body["expiresAt"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert expires_at.replace(tzinfo=timezone.utc).timestamp() == claims["exp"]


def test_token_signature_verifies_against_the_jwks(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    token = mint(http, emu).json()["accessToken"]
    claims = verified(http, token, emu.seed.providers[0].clients[0].audience)
    assert claims["sub"] == emu.seed.providers[0].clients[0].subject


def test_token_verifies_with_pyjwt_jwk_client_over_the_jwks_url(emu: RunningEmulator) -> None:
    with httpx.Client(base_url=emu.base_url) as http:
        token = mint(http, emu).json()["accessToken"]
    signing_key = jwt.PyJWKClient(emu.jwks_url).get_signing_key_from_jwt(token)
    audience = emu.seed.providers[0].clients[0].audience
    assert jwt.decode(token, signing_key.key, algorithms=["ES256"], audience=audience)


def test_default_lifetime_is_3600_seconds(http: httpx.Client, emu: RunningEmulator) -> None:
    claims = jwt.decode(mint(http, emu).json()["accessToken"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600


def test_expires_in_sets_the_lifetime_in_seconds(http: httpx.Client, emu: RunningEmulator) -> None:
    token = mint(http, emu, {"expiresIn": 172800}).json()["accessToken"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 172800


def test_integral_float_expires_in_is_accepted_as_javascript_would(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    response = mint(http, emu, {"expiresIn": 600.0})
    assert response.status_code == 201
    claims = jwt.decode(response.json()["accessToken"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 600


def test_claims_are_iss_sub_aud_iat_nbf_exp_jti(http: httpx.Client, emu: RunningEmulator) -> None:
    claims = jwt.decode(mint(http, emu).json()["accessToken"], options={"verify_signature": False})
    assert set(claims) == {"iss", "sub", "aud", "iat", "nbf", "exp", "jti"}
    assert claims["nbf"] == claims["iat"]
    assert abs(claims["iat"] - time.time()) < 60
    uuid.UUID(claims["jti"])


def test_every_token_has_a_unique_jti(http: httpx.Client, emu: RunningEmulator) -> None:
    jtis = {
        jwt.decode(mint(http, emu).json()["accessToken"], options={"verify_signature": False})[
            "jti"
        ]
        for _ in range(20)
    }
    assert len(jtis) == 20


def test_header_typ_is_at_jwt_by_default_with_kid_and_es256(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    header = jwt.get_unverified_header(mint(http, emu).json()["accessToken"])
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"
    assert header["kid"]


def test_use_jwt_type_true_sets_typ_jwt(http: httpx.Client, emu: RunningEmulator) -> None:
    header = jwt.get_unverified_header(mint(http, emu, {"useJwtType": True}).json()["accessToken"])
    assert header["typ"] == "jwt"


def test_use_jwt_type_false_keeps_typ_at_jwt(http: httpx.Client, emu: RunningEmulator) -> None:
    header = jwt.get_unverified_header(mint(http, emu, {"useJwtType": False}).json()["accessToken"])
    assert header["typ"] == "at+jwt"


def test_aud_is_the_client_audience_string_by_default(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    for index, client in enumerate(emu.seed.providers[0].clients):
        token = mint(http, emu, client=index).json()["accessToken"]
        assert jwt.decode(token, options={"verify_signature": False})["aud"] == client.audience


def test_audience_as_array_true_makes_aud_a_one_element_array(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    token = mint(http, emu, {"audienceAsArray": True}).json()["accessToken"]
    audience = emu.seed.providers[0].clients[0].audience
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == [audience]
    assert verified(http, token, audience)["aud"] == [audience]


def test_iss_is_the_custom_domain_when_the_provider_has_one(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    provider = emu.seed.providers[0]
    assert provider.custom_domain
    claims = jwt.decode(mint(http, emu).json()["accessToken"], options={"verify_signature": False})
    assert claims["iss"] == f"https://{provider.custom_domain}"


def test_force_default_domain_true_makes_iss_the_default_domain(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    token = mint(http, emu, {"forceDefaultDomain": True}).json()["accessToken"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == f"https://{emu.seed.providers[0].default_domain}"


def test_unknown_body_fields_are_ignored(http: httpx.Client, emu: RunningEmulator) -> None:
    assert mint(http, emu, {"expiresIn": 60, "scope": "extra"}).status_code == 201


def test_empty_json_object_is_a_valid_body(http: httpx.Client, emu: RunningEmulator) -> None:
    assert mint(http, emu, {}).status_code == 201


# --- 400 ------------------------------------------------------------------------------


def assert_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status
    body = response.json()
    assert isinstance(body["code"], str) and body["code"]
    assert isinstance(body["message"], str) and body["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"expiresIn": 0},
        {"expiresIn": -5},
        {"expiresIn": 172801},
        {"expiresIn": 172800000},
        {"expiresIn": "3600"},
        {"expiresIn": True},
        {"expiresIn": 1.5},
        {"expiresIn": None},
        {"useJwtType": "true"},
        {"useJwtType": 1},
        {"audienceAsArray": "yes"},
        {"forceDefaultDomain": 0},
        {"forceDefaultDomain": None},
    ],
    ids=lambda body: repr(body),
)
def test_invalid_body_field_answers_400(
    http: httpx.Client, emu: RunningEmulator, body: dict[str, Any]
) -> None:
    assert_error(mint(http, emu, body), 400)


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b'"text"', b"null", b"{"])
def test_body_that_is_not_a_json_object_answers_400(
    http: httpx.Client, emu: RunningEmulator, content: bytes
) -> None:
    provider = emu.seed.providers[0]
    response = http.post(
        token_path(provider.id, provider.clients[0].id),
        headers={**auth(emu), "Content-Type": "application/json"},
        content=content,
    )
    assert_error(response, 400)


@pytest.mark.parametrize("which", ["provider", "client"])
def test_path_id_that_is_not_a_uuid_answers_400(
    http: httpx.Client, emu: RunningEmulator, which: str
) -> None:
    provider = emu.seed.providers[0]
    path = (
        token_path("not-a-uuid", provider.clients[0].id)
        if which == "provider"
        else token_path(provider.id, "12345")
    )
    assert_error(http.post(path, headers=auth(emu)), 400)


# --- 401 ------------------------------------------------------------------------------


def test_missing_authorization_answers_401(http: httpx.Client, emu: RunningEmulator) -> None:
    provider = emu.seed.providers[0]
    assert_error(http.post(token_path(provider.id, provider.clients[0].id)), 401)


def test_unknown_api_key_answers_401(http: httpx.Client, emu: RunningEmulator) -> None:
    provider = emu.seed.providers[0]
    response = http.post(
        token_path(provider.id, provider.clients[0].id),
        headers={"Authorization": "Bearer usegrant_not_a_real_key"},
    )
    assert_error(response, 401)


def test_non_bearer_scheme_answers_401(http: httpx.Client, emu: RunningEmulator) -> None:
    provider = emu.seed.providers[0]
    response = http.post(
        token_path(provider.id, provider.clients[0].id),
        headers={"Authorization": f"Basic {emu.api_key}"},
    )
    assert_error(response, 401)


def test_401_body_does_not_echo_the_presented_key(http: httpx.Client, emu: RunningEmulator) -> None:
    provider = emu.seed.providers[0]
    response = http.post(
        token_path(provider.id, provider.clients[0].id),
        headers={"Authorization": "Bearer usegrant_presented_secret"},
    )
    assert "usegrant_presented_secret" not in response.text


# --- 404 ------------------------------------------------------------------------------


def test_unknown_provider_answers_404(http: httpx.Client, emu: RunningEmulator) -> None:
    path = token_path(uuid.uuid4(), emu.seed.providers[0].clients[0].id)
    assert_error(http.post(path, headers=auth(emu)), 404)


def test_unknown_client_answers_404(http: httpx.Client, emu: RunningEmulator) -> None:
    path = token_path(emu.seed.providers[0].id, uuid.uuid4())
    assert_error(http.post(path, headers=auth(emu)), 404)


def test_unknown_route_answers_404_with_code_and_message(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    assert_error(http.get("/v1/nothing-here"), 404)


# --- 429 ------------------------------------------------------------------------------


def test_past_the_rate_limit_answers_429_with_retry_after(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    emu.set_faults(rate_limit=2, rate_window=3600)
    assert [mint(http, emu).status_code for _ in range(2)] == [201, 201]
    response = mint(http, emu)
    assert_error(response, 429)
    assert 3590 <= int(response.headers["Retry-After"]) <= 3600


# --- JWKS and discovery ---------------------------------------------------------------


def test_jwks_serves_one_es256_public_key_per_provider(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    keys = http.get("/.well-known/jwks").json()["keys"]
    assert len(keys) == len(emu.seed.providers)
    for key in keys:
        assert key["kty"] == "EC" and key["crv"] == "P-256" and key["alg"] == "ES256"
        assert "d" not in key


def test_discovery_names_the_issuer_and_the_jwks_uri(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    document = http.get("/.well-known/openid-configuration").json()
    assert document["issuer"] == f"https://{emu.seed.providers[0].custom_domain}"
    assert document["jwks_uri"] == emu.jwks_url
    assert "ES256" in document["id_token_signing_alg_values_supported"]


def test_discovery_issuer_matches_the_iss_of_minted_tokens(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    document = http.get("/.well-known/openid-configuration").json()
    claims = jwt.decode(mint(http, emu).json()["accessToken"], options={"verify_signature": False})
    assert claims["iss"] == document["issuer"]
