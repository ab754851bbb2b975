"""A fake OIDC issuer for tests: ES256 tokens as UseGrant mints them, and its JWKS.

``Issuer.mint()`` returns an :class:`AccessToken` whose claims and ``expiresAt`` agree,
signed by the issuer's key; keyword arguments override claims (``None`` removes one),
the header (``header={...}``), the signing key (``key=...``) or ``expiresAt``.
``Issuer.transport`` is an httpx mock transport serving the issuer's discovery document
and JWKS, counting the requests per path, so a test can assert how many fetches
happened without any network.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import httpx
import jwt

from usegrant_flows.api.models import AccessToken, format_js_datetime
from usegrant_flows.emulator.keys import SigningKey

ISSUER = "https://auth.issuer.test"
JWKS_URL = f"{ISSUER}/.well-known/jwks"
DISCOVERY_URL = f"{ISSUER}/.well-known/openid-configuration"
_REMOVE = object()


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Issuer:
    """One issuer: a signing key, the keys its JWKS publishes, request counters."""

    def __init__(self, issuer: str = ISSUER) -> None:
        self.issuer = issuer
        self.key = SigningKey.generate()
        self.published: list[SigningKey] = [self.key]
        self.requests: Counter[str] = Counter()
        self.transport = httpx.MockTransport(self._answer)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests[request.url.path] += 1
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json={"issuer": self.issuer, "jwks_uri": JWKS_URL})
        if request.url.path == "/.well-known/jwks":
            return httpx.Response(200, json={"keys": [k.public_jwk() for k in self.published]})
        return httpx.Response(404)

    def claims(self, lifetime: int = 3600) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.issuer,
            "sub": "client-1",
            "aud": "sts.amazonaws.com",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": str(uuid.uuid4()),
        }

    def mint(
        self,
        *,
        lifetime: int = 3600,
        key: SigningKey | None = None,
        header: dict[str, Any] | None = None,
        expires_at: float | None = None,
        raw: str | None = None,
        **overrides: Any,
    ) -> AccessToken:
        """Return a token; ``raw`` replaces the whole JWT (for hand-made forgeries)."""
        claims = self.claims(lifetime)
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        signer = key or self.key
        if raw is None:
            headers = {"typ": "at+jwt", "kid": signer.kid, **(header or {})}
            raw = jwt.encode(claims, signer.private_key, algorithm="ES256", headers=headers)
        moment = expires_at if expires_at is not None else float(claims.get("exp", 0))
        return AccessToken.model_validate(
            {
                "accessToken": raw,
                "expiresAt": format_js_datetime(datetime.fromtimestamp(moment, tz=timezone.utc)),
                "type": "Bearer",
            }
        )

    def unsigned(self, header: dict[str, Any], signature: str = "", **overrides: Any) -> str:
        """Return a JWT with these header fields and the default claims, hand-assembled."""
        claims = {**self.claims(), **overrides}
        return f"{b64(header)}.{b64(claims)}.{signature}"
