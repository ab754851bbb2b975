"""Verify a UseGrant access token against its issuer's JWKS.

:func:`verify_token` checks the signature with the key the token's ``kid`` names in a
JWK set fetched over httpx (``https``, or ``http`` to a loopback host such as the
emulator), then ``exp``, ``nbf`` and, when asked, ``aud`` and ``iss``. JWK sets are
cached per URL for :data:`JWKS_CACHE_SECONDS`; a ``kid`` missing from a cached set
triggers one fresh fetch (the issuer may have rotated its key). Every failure raises
:class:`~usegrant_flows.api.errors.TokenVerificationError` whose message names the token by
fingerprint only, never by value.

Minted tokens are checked before any sink sees them by :mod:`usegrant_flows.api.claims`
(the claims, pure) and :mod:`usegrant_flows.api.jwks` (the signature, keys fetched with
bounds); this module is for consumers checking a token they were given.

Example:
    >>> issuer_for("acme.auth.usegrant.dev", "auth.acme.test")
    'https://auth.acme.test'
    >>> issuer_for("acme.auth.usegrant.dev", "auth.acme.test", force_default_domain=True)
    'https://acme.auth.usegrant.dev'
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

import httpx
import jwt
from pydantic import SecretStr

from usegrant_flows.api.checks import check_secure_url
from usegrant_flows.api.errors import ConfigurationError, TokenVerificationError
from usegrant_flows.api.models import AccessToken

__all__ = [
    "ALLOWED_ALGORITHMS",
    "JWKS_CACHE_SECONDS",
    "MAX_DOCUMENT_BYTES",
    "clear_jwks_cache",
    "fetch_openid_configuration",
    "issuer_for",
    "json_document",
    "verify_token",
]

#: Seconds a fetched JWK set is reused.
JWKS_CACHE_SECONDS = 300.0
#: Asymmetric JWS algorithms accepted; ``none`` and HMAC are always refused.
ALLOWED_ALGORITHMS = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"}
)
_FETCH_TIMEOUT = 10.0
#: Largest discovery document or JWK set read, in bytes; a longer body is refused.
MAX_DOCUMENT_BYTES = 64 * 1024

_cache: dict[str, tuple[float, jwt.PyJWKSet]] = {}
_cache_lock = threading.Lock()


def issuer_for(
    default_domain: str, custom_domain: str | None = None, *, force_default_domain: bool = False
) -> str:
    """Return the ``iss`` UseGrant writes for a provider.

    Args:
        default_domain: The provider's default host, e.g. ``acme.auth.usegrant.dev``.
        custom_domain: Its custom host, if it has one.
        force_default_domain: The ``forceDefaultDomain`` option of the token request.

    Returns:
        ``https://<custom_domain>`` when set and not forced away, else
        ``https://<default_domain>``.
    """
    if custom_domain and not force_default_domain:
        return f"https://{custom_domain}"
    return f"https://{default_domain}"


def _checked_url(url: str, what: str) -> httpx.URL:
    check_secure_url(url, what)
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise ConfigurationError(f"{what} is not a valid URL") from None


def _get_json(url: httpx.URL, what: str) -> Any:
    try:
        with httpx.stream("GET", url, timeout=_FETCH_TIMEOUT, follow_redirects=False) as response:
            if response.status_code != 200:
                raise TokenVerificationError(
                    f"could not fetch the {what} from {url}: HTTP {response.status_code}"
                )
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise TokenVerificationError(f"the {what} at {url} is larger than 64 KiB")
    except httpx.HTTPError as exc:
        raise TokenVerificationError(
            f"could not fetch the {what} from {url}: {type(exc).__name__}"
        ) from None
    return json_document(bytes(body), what, str(url))


def json_document(body: bytes, what: str, url: str) -> Any:
    """Parse a fetched JSON document; anything unparsable is a ``TokenVerificationError``."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise TokenVerificationError(f"the {what} at {url} is not JSON") from None


def fetch_openid_configuration(url: str) -> dict[str, Any]:
    """Fetch an OpenID Connect discovery document.

    Args:
        url: The issuer (``https://auth.acme.test``) or the full
            ``.../.well-known/openid-configuration`` URL; ``https``, or ``http`` to a
            loopback host.

    Returns:
        The document (``issuer``, ``jwks_uri``, ...).

    Raises:
        ConfigurationError: The URL is not https nor loopback http.
        TokenVerificationError: It cannot be fetched or is not a JSON object.
    """
    if not url.rstrip("/").endswith("/.well-known/openid-configuration"):
        url = url.rstrip("/") + "/.well-known/openid-configuration"
    document = _get_json(_checked_url(url, "discovery URL"), "discovery document")
    if not isinstance(document, dict):
        raise TokenVerificationError("the discovery document is not a JSON object")
    return document


def clear_jwks_cache() -> None:
    """Forget every cached JWK set."""
    with _cache_lock:
        _cache.clear()


def _jwks(url: httpx.URL, *, fresh: bool) -> jwt.PyJWKSet:
    key = str(url)
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None and not fresh and cached[0] > now:
        return cached[1]
    data = _get_json(url, "JWKS")
    try:
        jwks = jwt.PyJWKSet.from_dict(data)
    except (jwt.PyJWTError, TypeError, AttributeError):
        raise TokenVerificationError(f"the JWKS at {url} holds no usable key") from None
    with _cache_lock:
        _cache[key] = (now + JWKS_CACHE_SECONDS, jwks)
    return jwks


def _find_key(jwks: jwt.PyJWKSet, kid: str | None) -> jwt.PyJWK | None:
    for candidate in jwks.keys:
        if kid is None or candidate.key_id == kid:
            return candidate
    return None


def _reason(exc: jwt.PyJWTError, audience: str | None, issuer: str | None) -> str:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "it has expired (exp)"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "it is not valid yet (nbf or iat in the future)"
    if isinstance(exc, jwt.InvalidAudienceError):
        return f"its audience (aud) is not {audience!r}"
    if isinstance(exc, jwt.InvalidIssuerError):
        return f"its issuer (iss) is not {issuer!r}"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"it lacks the {exc.claim!r} claim"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "its signature does not verify against the JWKS"
    if isinstance(exc, jwt.DecodeError):
        return "it is not a well-formed JWT"
    return type(exc).__name__


def verify_token(
    token: AccessToken | SecretStr | str,
    jwks_url: str,
    *,
    audience: str | None = None,
    issuer: str | None = None,
    leeway: float = 0.0,
) -> dict[str, Any]:
    """Verify a token's signature and claims; return its claims.

    Args:
        token: The token (an :class:`~usegrant_flows.api.models.AccessToken`, or the raw
            JWT as ``SecretStr`` or ``str``).
        jwks_url: URL of the issuer's JWK set (``https``, or ``http`` to a loopback
            host), e.g. ``https://auth.acme.test/.well-known/jwks``.
        audience: The expected ``aud`` (a string claim equal to it, or an array
            containing it); ``None`` skips the audience check.
        issuer: The expected ``iss``; ``None`` skips the issuer check.
        leeway: Seconds of clock skew tolerated on ``exp``, ``nbf`` and ``iat``, >= 0.

    Returns:
        The verified claims.

    Raises:
        ConfigurationError: ``jwks_url`` is not https nor loopback http, or ``leeway``
            is negative.
        TokenVerificationError: The JWKS cannot be fetched, the token is malformed,
            uses an algorithm other than an asymmetric one, names no key of the set,
            or fails the signature, ``exp``, ``nbf``, ``aud`` or ``iss`` check.

    Example:
        Against the local emulator:

        >>> from usegrant_flows.api.client import UseGrantClient
        >>> from usegrant_flows.emulator import run_emulator
        >>> with run_emulator() as emu, UseGrantClient(emu.api_key, emu.base_url) as client:
        ...     provider = emu.seed.providers[0]
        ...     token = client.create_token(provider.id, provider.clients[0].id)
        ...     claims = verify_token(token, emu.jwks_url, audience="sts.amazonaws.com")
        >>> claims["aud"], claims["exp"] - claims["iat"]
        ('sts.amazonaws.com', 3600)
    """
    url = _checked_url(jwks_url, "jwks_url")
    if isinstance(leeway, bool) or not isinstance(leeway, (int, float)) or not leeway >= 0:
        raise ConfigurationError("leeway must be a number of seconds >= 0")
    if isinstance(token, AccessToken):
        raw = token.access_token.get_secret_value()
    elif isinstance(token, SecretStr):
        raw = token.get_secret_value()
    else:
        raw = token
    name = f"token {hashlib.sha256(raw.encode()).hexdigest()[:12]}"
    try:
        header = jwt.get_unverified_header(raw)
    except jwt.PyJWTError:
        raise TokenVerificationError(f"{name} is not a well-formed JWT") from None
    algorithm = header.get("alg")
    if algorithm not in ALLOWED_ALGORITHMS:
        raise TokenVerificationError(f"{name} uses a refused algorithm {str(algorithm)!r}")
    kid = header.get("kid")
    kid = kid if isinstance(kid, str) else None
    key = _find_key(_jwks(url, fresh=False), kid)
    if key is None:
        key = _find_key(_jwks(url, fresh=True), kid)
    if key is None:
        raise TokenVerificationError(f"{name} names key {kid!r}, which the JWKS at {url} lacks")
    if key.algorithm_name != algorithm:
        raise TokenVerificationError(
            f"{name} uses {algorithm!r} but its key {kid!r} is for {key.algorithm_name!r}"
        )
    try:
        claims: dict[str, Any] = jwt.decode(
            raw,
            key.key,
            algorithms=[str(algorithm)],
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": ["exp"], "verify_aud": audience is not None},
        )
    except jwt.PyJWTError as exc:
        raise TokenVerificationError(
            f"{name} failed verification: {_reason(exc, audience, issuer)}"
        ) from None
    return claims
