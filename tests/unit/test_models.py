"""The wire models, checked against CONTRACT.md's literal field names."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from tests.unit.conftest import make_jwt
from usegrant_flows.api.models import (
    DEFAULT_BASE_URL,
    MAX_EXPIRES_IN,
    AccessToken,
    TokenRequest,
    format_js_datetime,
)

TOKEN = make_jwt({"jti": "model-jti", "iat": 1_899_999_100, "exp": 1_900_000_000})
ANSWER = {"accessToken": TOKEN, "expiresAt": "2030-03-17T17:46:40.000Z", "type": "Bearer"}


def test_the_contract_constants() -> None:
    assert DEFAULT_BASE_URL == "https://sdk.usegrant.dev"
    assert MAX_EXPIRES_IN == 172800


def test_an_empty_request_has_an_empty_body() -> None:
    assert TokenRequest().to_body() == {}


def test_the_request_body_uses_the_api_field_names() -> None:
    body = TokenRequest(
        expires_in=900, use_jwt_type=True, audience_as_array=False, force_default_domain=True
    ).to_body()

    assert body == {
        "expiresIn": 900,
        "useJwtType": True,
        "audienceAsArray": False,
        "forceDefaultDomain": True,
    }


@pytest.mark.parametrize("expires_in", [0, 172801, True, 1.5])
def test_the_request_rejects_an_out_of_range_or_non_integer_lifetime(expires_in: object) -> None:
    with pytest.raises(ValidationError):
        TokenRequest(expires_in=expires_in)  # type: ignore[arg-type]


def test_an_api_answer_parses_into_a_token() -> None:
    token = AccessToken.model_validate(ANSWER)

    assert token.access_token.get_secret_value() == TOKEN
    assert token.expires_at == datetime(2030, 3, 17, 17, 46, 40, tzinfo=timezone.utc)
    assert token.type == "Bearer"


def test_an_offset_expiry_is_converted_to_utc() -> None:
    token = AccessToken.model_validate({**ANSWER, "expiresAt": "2030-03-17T18:46:40+01:00"})

    assert token.expires_at.utcoffset() == timedelta(0)
    assert token.expires_at.hour == 17


def test_the_token_repr_shows_the_fingerprint_not_the_token() -> None:
    token = AccessToken.model_validate(ANSWER)

    text = repr(token) + str(token) + repr(token.model_dump())
    assert TOKEN not in text
    assert token.fingerprint in repr(token)
    assert len(token.fingerprint) == 12


def test_the_claims_jti_and_issue_time_are_read_from_the_jwt() -> None:
    token = AccessToken.model_validate(ANSWER)

    assert token.jti == "model-jti"
    assert token.issued_at == datetime.fromtimestamp(1_899_999_100, tz=timezone.utc)
    assert token.header()["typ"] == "at+jwt"
    assert token.claims()["exp"] == 1_900_000_000


def test_seconds_left_are_counted_from_the_given_moment() -> None:
    token = AccessToken.model_validate(ANSWER)
    now = datetime(2030, 3, 17, 17, 45, 40, tzinfo=timezone.utc)

    assert token.expires_in_seconds(now=now) == 60.0


def test_to_wire_gives_back_the_api_answer() -> None:
    assert AccessToken.model_validate(ANSWER).to_wire() == ANSWER


def test_js_datetimes_have_milliseconds_and_z() -> None:
    moment = datetime(2026, 11, 27, 16, 0, 0, 123456, tzinfo=timezone.utc)

    assert format_js_datetime(moment) == "2026-11-27T16:00:00.123Z"


@pytest.mark.parametrize(
    "access_token", ["", "not-a-jwt", "a.b.c", "eyJhbGciOiJub25lIn0.bm90LWpzb24.sig"]
)
def test_a_non_jwt_is_rejected_without_quoting_it(access_token: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AccessToken.model_validate({**ANSWER, "accessToken": access_token})

    if access_token:
        assert access_token not in str(caught.value)
