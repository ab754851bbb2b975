"""Token requests' bodies and the tokens the emulator mints, sound or forged.

Body rules (a JavaScript backend's view of JSON): no body, or an empty one, is an
empty request; otherwise it must be a JSON object. ``expiresIn`` must be a number
with an integral value in 1..172800 seconds (``3600.0`` is accepted: JavaScript cannot
tell it from ``3600``; ``1.5``, ``"3600"`` and booleans are 400). The three flags must
be booleans. ``null`` is refused for every field (clients must leave unset fields out).
Unknown fields are ignored.
"""

from __future__ import annotations

import base64
import json
import math
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from usegrant_flows.api.models import MAX_EXPIRES_IN, format_js_datetime
from usegrant_flows.emulator.keys import SigningKey
from usegrant_flows.emulator.seed import SeedClient, SeedProvider

__all__ = ["DEFAULT_EXPIRES_IN", "TokenOrder", "parse_options"]

#: Lifetime in seconds of a token when the request names none.
DEFAULT_EXPIRES_IN = 3600
_FLAGS = ("useJwtType", "audienceAsArray", "forceDefaultDomain")


def parse_options(raw: bytes) -> dict[str, Any] | str:
    """Validate a token request's body.

    Args:
        raw: The request body.

    Returns:
        The options (``expiresIn`` in seconds and the flags), or a message saying what
        is wrong.
    """
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return "Request body is not valid JSON"
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    options: dict[str, Any] = {}
    if "expiresIn" in body:
        value = body["expiresIn"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "expiresIn must be a number (seconds)"
        if not math.isfinite(value) or value != int(value):
            return "expiresIn must be a whole number of seconds"
        if not 1 <= value <= MAX_EXPIRES_IN:
            return f"expiresIn must be between 1 and {MAX_EXPIRES_IN} seconds"
        options["expiresIn"] = int(value)
    for flag in _FLAGS:
        if flag in body:
            if not isinstance(body[flag], bool):
                return f"{flag} must be a boolean"
            options[flag] = body[flag]
    return options


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenOrder:
    """One accepted token request: what to mint, and the forgeries of it.

    Args:
        provider: The provider named in the path.
        client: The client named in the path.
        options: The options from :func:`parse_options`.
    """

    def __init__(self, provider: SeedProvider, client: SeedClient, options: dict[str, Any]) -> None:
        self.provider = provider
        self.client = client
        self.options = options

    @property
    def typ(self) -> str:
        """The token header's ``typ``: ``jwt`` or ``at+jwt``."""
        return "jwt" if self.options.get("useJwtType") is True else "at+jwt"

    def claims(self, *, issued_at: int) -> dict[str, Any]:
        """Return the claims of a token issued at ``issued_at`` (Unix seconds)."""
        expires_in = int(self.options.get("expiresIn", DEFAULT_EXPIRES_IN))
        audience: str | list[str] = self.client.audience
        if self.options.get("audienceAsArray") is True:
            audience = [self.client.audience]
        force_default = self.options.get("forceDefaultDomain") is True
        return {
            "iss": self.provider.issuer(force_default_domain=force_default),
            "sub": self.client.subject,
            "aud": audience,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + expires_in,
            "jti": str(uuid.uuid4()),
        }

    def signed(
        self, key: SigningKey, *, issued_at: int | None = None, **extra: Any
    ) -> dict[str, str]:
        """Return the answer body of a token signed by ``key``.

        Args:
            key: The signing key (the provider's, or a rogue one).
            issued_at: ``iat`` in Unix seconds; default now.
            **extra: Claims added to the token (e.g. padding).

        Returns:
            ``{"accessToken", "expiresAt", "type"}``.
        """
        claims = self.claims(issued_at=int(time.time()) if issued_at is None else issued_at)
        return _body(key.sign({**claims, **extra}, typ=self.typ), claims["exp"])

    def unsigned(self) -> dict[str, str]:
        """Return the answer body of an ``alg: none`` token with an empty signature."""
        claims = self.claims(issued_at=int(time.time()))
        header = _b64(json.dumps({"alg": "none"}, separators=(",", ":")).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return _body(f"{header}.{payload}.", claims["exp"])


def _body(token: str, expires_at: int) -> dict[str, str]:
    return {
        "accessToken": token,
        "expiresAt": format_js_datetime(datetime.fromtimestamp(expires_at, tz=timezone.utc)),
        "type": "Bearer",
    }
