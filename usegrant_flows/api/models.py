"""The wire schema of the UseGrant token API, and the token we hand out.

``TokenRequest`` is the request body with the API's camelCase names; ``AccessToken`` is
the answer, with the JWT held as a :class:`~pydantic.SecretStr` so that it never shows
in a repr, a log line or an error message. A token is identified by its
:attr:`AccessToken.fingerprint` (first 12 hex digits of its sha256), ``jti`` and expiry.

Example:
    >>> from usegrant_flows.api.models import TokenRequest
    >>> TokenRequest(expires_in=900, use_jwt_type=True).to_body()
    {'expiresIn': 900, 'useJwtType': True}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from datetime import datetime, timezone
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_EXPIRES_IN",
    "MAX_EXPIRES_IN",
    "AccessToken",
    "TokenRequest",
    "format_js_datetime",
]

#: The production API.
DEFAULT_BASE_URL = "https://sdk.usegrant.dev"
#: Longest token lifetime the API accepts, in seconds (48 hours).
MAX_EXPIRES_IN = 48 * 60 * 60
#: The lifetime the API gives when a request names none, in seconds (1 hour).
DEFAULT_EXPIRES_IN = 3600

_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


def format_js_datetime(moment: datetime) -> str:
    """Format an aware datetime the way JavaScript's ``toISOString`` does.

    Args:
        moment: A timezone-aware datetime.

    Returns:
        UTC with milliseconds and a ``Z``, e.g. ``2026-11-27T16:00:00.000Z``.

    Example:
        >>> from datetime import datetime, timezone
        >>> format_js_datetime(datetime(2026, 11, 27, 16, 0, tzinfo=timezone.utc))
        '2026-11-27T16:00:00.000Z'
    """
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


class TokenRequest(BaseModel):
    """Body of ``POST /v1/providers/{providerId}/clients/{clientId}/tokens``.

    Every field is optional; :meth:`to_body` sends only the fields that are set and
    never a ``null``.

    Attributes:
        expires_in: Token lifetime in seconds, 1..172800 (48 h).
        use_jwt_type: True sets the JWT header ``typ`` to ``jwt`` instead of ``at+jwt``.
        audience_as_array: True makes the ``aud`` claim an array.
        force_default_domain: True makes ``iss`` the provider's default domain.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    expires_in: int | None = Field(default=None, ge=1, le=MAX_EXPIRES_IN, strict=True)
    use_jwt_type: bool | None = Field(default=None, strict=True)
    audience_as_array: bool | None = Field(default=None, strict=True)
    force_default_domain: bool | None = Field(default=None, strict=True)

    def to_body(self) -> dict[str, Any]:
        """Return the JSON body with the API's camelCase names, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True)


def _b64url_json(segment: str) -> dict[str, Any]:
    padded = segment + "=" * (-len(segment) % 4)
    try:
        value = json.loads(base64.urlsafe_b64decode(padded))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValueError("JWT segment is not base64url-encoded JSON") from None
    if not isinstance(value, dict):
        raise ValueError("JWT segment is not a JSON object")
    return value


class AccessToken(BaseModel):
    """A minted UseGrant access token.

    The JWT stays a :class:`~pydantic.SecretStr`: call
    ``token.access_token.get_secret_value()`` only at the moment you hand it to its
    consumer. ``repr()`` shows the fingerprint, never the token.

    Attributes:
        access_token: The signed JWT.
        expires_at: When the token expires (timezone-aware, UTC).
        type: The token type, ``Bearer``.

    Example:
        >>> token = AccessToken.model_validate({
        ...     "accessToken": "eyJhbGciOiJub25lIn0.eyJqdGkiOiJhYmMiLCJleHAiOjB9.",
        ...     "expiresAt": "1970-01-01T00:00:00.000Z",
        ...     "type": "Bearer",
        ... })
        >>> token.jti, token.fingerprint
        ('abc', '2f3333d59f05')
    """

    model_config = ConfigDict(populate_by_name=True, frozen=True, hide_input_in_errors=True)

    access_token: SecretStr = Field(alias="accessToken")
    expires_at: AwareDatetime = Field(alias="expiresAt")
    type: str = "Bearer"

    @field_validator("access_token")
    @classmethod
    def _is_a_jwt(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if not _JWT_SHAPE.match(raw):
            raise ValueError("accessToken is not a JWT (three base64url parts)")
        header, payload, _ = raw.split(".")
        _b64url_json(header)
        _b64url_json(payload)
        return value

    @field_validator("expires_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(timezone.utc)

    def header(self) -> dict[str, Any]:
        """Return the JWT's header, decoded but not verified."""
        return _b64url_json(self.access_token.get_secret_value().split(".")[0])

    def claims(self) -> dict[str, Any]:
        """Return the JWT's claims, decoded but not verified.

        Use :func:`usegrant_flows.api.verify.verify_token` to check the signature.
        """
        return _b64url_json(self.access_token.get_secret_value().split(".")[1])

    @property
    def fingerprint(self) -> str:
        """First 12 hex digits of the token's sha256: safe to log and compare."""
        digest = hashlib.sha256(self.access_token.get_secret_value().encode())
        return digest.hexdigest()[:12]

    @property
    def jti(self) -> str | None:
        """The token's unique id (``jti`` claim), if it has one."""
        jti = self.claims().get("jti")
        return str(jti) if jti is not None else None

    @property
    def issued_at(self) -> datetime | None:
        """When the token was issued (``iat`` claim, UTC), if it says."""
        iat = self.claims().get("iat")
        if isinstance(iat, (int, float)) and not isinstance(iat, bool):
            return datetime.fromtimestamp(iat, tz=timezone.utc)
        return None

    def expires_in_seconds(self, now: datetime | None = None) -> float:
        """Seconds left until :attr:`expires_at`; negative once expired.

        Args:
            now: The reference time (aware); defaults to the current UTC time.
        """
        now = now or datetime.now(timezone.utc)
        return (self.expires_at - now).total_seconds()

    def to_wire(self) -> dict[str, str]:
        """Return the API's answer body, ``{accessToken, expiresAt, type}``.

        This reveals the token: use it only to write the token to its consumer.
        """
        return {
            "accessToken": self.access_token.get_secret_value(),
            "expiresAt": format_js_datetime(self.expires_at),
            "type": self.type,
        }

    def __repr__(self) -> str:
        return (
            f"AccessToken(fingerprint={self.fingerprint!r}, "
            f"expires_at={self.expires_at.isoformat()!r}, type={self.type!r})"
        )

    __str__ = __repr__
