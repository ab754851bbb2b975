"""Verify a UseGrant access token against its issuer's JWKS.

:func:`verify_token` checks the signature with the key the token's ``kid`` names in a
JWK set fetched over httpx (``https``, or ``http`` to a loopback host such as the
emulator), then ``exp``, ``nbf`` and, when asked, ``aud`` and ``iss``. JWK sets are
cached per URL for :data:`JWKS_CACHE_SECONDS`; a ``kid`` missing from a cached set
triggers one fresh fetch (the issuer may have rotated its key). Every failure raises
:class:`~usegrant_flows.api.errors.TokenVerificationError` whose message names the token by
fingerprint only, never by value.

Minted tokens are checked before any sink sees them: :func:`check_minted` (pure: shape,
algorithm, expiry against the target's margin and the API's ``expiresAt``, ``iat``/``nbf``,
``sub``/``aud``, size) and, in ``"full"`` mode, the signature against the issuer's JWK set
(:class:`JwksCache`: explicit ``jwks_url`` or OpenID Connect discovery, fetches bounded in
time and size, cached per issuer, one refetch on an unknown ``kid``); :func:`averify_minted`
runs both.

Example:
    >>> issuer_for("acme.auth.usegrant.dev", "auth.acme.test")
    'https://auth.acme.test'
    >>> issuer_for("acme.auth.usegrant.dev", "auth.acme.test", force_default_domain=True)
    'https://acme.auth.usegrant.dev'
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import httpx
import jwt
from pydantic import SecretStr

from usegrant_flows.api.checks import check_secure_url, url_problem
from usegrant_flows.api.errors import ConfigurationError, TokenVerificationError
from usegrant_flows.api.models import AccessToken

__all__ = [
    "ALLOWED_ALGORITHMS",
    "CLOCK_SKEW",
    "EXPIRY_TOLERANCE",
    "JWKS_CACHE_SECONDS",
    "MAX_DOCUMENT_BYTES",
    "MAX_TOKEN_BYTES",
    "JwksCache",
    "MintedToken",
    "VerifyMode",
    "averify_minted",
    "check_minted",
    "clear_jwks_cache",
    "fetch_openid_configuration",
    "issuer_for",
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
    return _json_of(bytes(body), what, str(url))


def _json_of(body: bytes, what: str, url: str) -> Any:
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


# --------------------------------------------------------------------------------------
# Checks of a freshly minted token, before it reaches any sink ("trust nothing from the
# wire"). :func:`check_minted` is pure (no network, no clock of its own); :class:`JwksCache`
# fetches keys with bounds; :func:`averify_minted` runs both in the documented order.
# --------------------------------------------------------------------------------------

#: ``"full"`` checks the claims and the signature; ``"claims"`` skips the signature only,
#: for workers that cannot reach the issuer's JWKS.
VerifyMode = Literal["full", "claims"]
#: Largest token accepted, in bytes of its compact form.
MAX_TOKEN_BYTES = 16 * 1024
#: Most seconds the JWT's ``exp`` and the API's ``expiresAt`` may differ by.
EXPIRY_TOLERANCE = 5.0
#: Most seconds ``iat`` / ``nbf`` may lie in the future (clock skew between machines).
CLOCK_SKEW = 60.0
#: Fewest bits of an RSA signing key accepted.
MIN_RSA_BITS = 2048
#: Seconds one discovery or JWKS fetch may take in total (connect, headers and body).
MINTED_FETCH_TIMEOUT = 5.0
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
# Key type (and curve) each accepted algorithm needs.
_KEY_TYPES: dict[str, tuple[str, str | None]] = {
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "EdDSA": ("OKP", None),
}


@dataclass(frozen=True)
class MintedToken:
    """What :func:`check_minted` read from a token that passed the claim checks.

    Attributes:
        algorithm: The header's ``alg`` (one of :data:`ALLOWED_ALGORITHMS`).
        kid: The header's ``kid``, if it names one.
        issuer: The ``iss`` claim, if it is a string.
    """

    algorithm: str
    kid: str | None
    issuer: str | None


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _shown(value: object, limit: int = 40) -> str:
    """Quote a header or claim value from the wire, short and on one line."""
    text = " ".join(str(value).split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _moment(seconds: float) -> datetime | None:
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def check_minted(token: AccessToken, *, now: datetime, renew_before: float) -> MintedToken:
    """Check a freshly minted token's shape and claims; never looks at the network.

    The checks, in order (the first that fails is reported): at most
    :data:`MAX_TOKEN_BYTES` (checked first, so nothing larger is decoded further);
    three base64url parts; an asymmetric ``alg`` (never ``none`` nor ``HS*``); a
    non-empty signature; a numeric ``exp`` later than ``now + renew_before`` (a token already due
    for refresh is no improvement); ``exp`` within :data:`EXPIRY_TOLERANCE` seconds of
    the API's ``expiresAt``; ``iat`` and ``nbf``, when present, numeric and at most
    :data:`CLOCK_SKEW` seconds in the future; ``sub`` and ``aud`` present and non-empty.

    Args:
        token: The token the API just answered with.
        now: The reference time (aware).
        renew_before: The target's refresh margin, in seconds (>= 0).

    Returns:
        The header fields the signature check needs.

    Raises:
        TokenVerificationError: ``"token <fingerprint> refused: <reason>"``, one line,
            never the token itself.

    Example:
        >>> from datetime import datetime, timezone
        >>> t = AccessToken.model_validate({
        ...     "accessToken": "eyJhbGciOiJub25lIn0.eyJqdGkiOiJhYmMiLCJleHAiOjB9.",
        ...     "expiresAt": "1970-01-01T00:00:00.000Z"})
        >>> check_minted(t, now=datetime.now(timezone.utc), renew_before=300)
        Traceback (most recent call last):
        ...
        usegrant_flows.api.errors.TokenVerificationError: token 2f3333d59f05 refused: ...
    """
    raw = token.access_token.get_secret_value()

    def refuse(reason: str) -> TokenVerificationError:
        return TokenVerificationError(f"token {token.fingerprint} refused: {reason}")

    if len(raw.encode("utf-8")) > MAX_TOKEN_BYTES:
        raise refuse(f"it is larger than {MAX_TOKEN_BYTES // 1024} KiB")
    parts = raw.split(".")
    if len(parts) != 3 or not all(_B64URL.match(part) for part in parts[:2]):
        raise refuse("it is not three base64url parts")
    if parts[2] and not _B64URL.match(parts[2]):
        raise refuse("its signature is not base64url")
    try:
        header, claims = token.header(), token.claims()
    except ValueError:
        raise refuse("its header or claims are not base64url-encoded JSON objects") from None
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in ALLOWED_ALGORITHMS:
        raise refuse(f"its algorithm {_shown(algorithm)} is refused (asymmetric ones only)")
    if not parts[2]:  # after the algorithm: `alg: none` is the more useful reason
        raise refuse("it has no signature")

    exp = _number(claims.get("exp"))
    exp_at = _moment(exp) if exp is not None else None
    if exp_at is None:
        raise refuse("it has no numeric exp claim")
    if exp_at <= now + timedelta(seconds=renew_before):
        raise refuse(
            f"it expires at {_stamp(exp_at)}, not later than now + renew_before "
            f"({renew_before:g} s): it would be due at once"
        )
    drift = abs((exp_at - token.expires_at).total_seconds())
    if drift > EXPIRY_TOLERANCE:
        raise refuse(
            f"its exp ({_stamp(exp_at)}) and the API's expiresAt ({_stamp(token.expires_at)}) "
            f"differ by {drift:.0f} s (more than {EXPIRY_TOLERANCE:g} s)"
        )
    for name in ("iat", "nbf"):
        if name not in claims:
            continue
        value = _number(claims[name])
        moment = _moment(value) if value is not None else None
        if moment is None:
            raise refuse(f"its {name} claim is not a number of seconds")
        ahead = (moment - now).total_seconds()
        if ahead > CLOCK_SKEW:
            raise refuse(
                f"its {name} is {ahead:.0f} s in the future (more than {CLOCK_SKEW:g} s of skew)"
            )
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise refuse("it has no sub claim")
    audience = claims.get("aud")
    if not (isinstance(audience, str) and audience) and not (
        isinstance(audience, list)
        and audience
        and all(isinstance(item, str) and item for item in audience)
    ):
        raise refuse("it has no aud claim")
    kid = header.get("kid")
    issuer = claims.get("iss")
    return MintedToken(
        algorithm=algorithm,
        kid=kid if isinstance(kid, str) else None,
        issuer=issuer if isinstance(issuer, str) else None,
    )


@dataclass
class _KeySet:
    keys: list[dict[str, Any]]
    expires: float  # time.monotonic() after which the set is fetched again
    version: int  # bumped on every fetch, so concurrent refetches collapse into one


class JwksCache:
    """Issuers' JWK sets for one rotation run: discovered, fetched with bounds, cached.

    A set is found at an explicit ``jwks_url``, or by OpenID Connect discovery
    (``<issuer>/.well-known/openid-configuration`` → ``jwks_uri``). Every URL must be
    https, or http to a loopback host. Each fetch is bounded: :data:`MINTED_FETCH_TIMEOUT`
    seconds in total and :data:`MAX_DOCUMENT_BYTES` of body; redirects are not followed.
    A set is reused for ``ttl`` seconds; a token naming a ``kid`` the cached set lacks
    triggers one refetch (the issuer may have rotated its key), shared by the concurrent
    verifications that need it.

    Args:
        ttl: Seconds a discovered ``jwks_uri`` and a fetched set are reused (> 0).
        timeout: Seconds one fetch may take in total (> 0).
        transport: httpx transport to fetch with (tests pass a mock); default the network.
    """

    def __init__(
        self,
        *,
        ttl: float = JWKS_CACHE_SECONDS,
        timeout: float = MINTED_FETCH_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.ttl = ttl
        self.timeout = timeout
        self._transport = transport
        self._sets: dict[str, _KeySet] = {}
        self._discovered: dict[str, tuple[float, str]] = {}
        self._locks: dict[tuple[int, str], asyncio.Lock] = {}
        #: Fetches made, by URL (discovery documents and JWK sets); for tests and stats.
        self.fetches: dict[str, int] = {}

    def _lock(self, url: str) -> asyncio.Lock:
        # Per event loop too: an asyncio lock must not be shared across loops.
        loop = id(asyncio.get_running_loop())
        return self._locks.setdefault((loop, url), asyncio.Lock())

    async def _fetch_json(self, url: str, what: str) -> Any:
        try:
            check_secure_url(url, what)
        except ConfigurationError as exc:
            raise TokenVerificationError(str(exc)) from None
        self.fetches[url] = self.fetches.get(url, 0) + 1
        try:
            body = await asyncio.wait_for(self._read(url, what), self.timeout)
        except asyncio.TimeoutError:
            raise TokenVerificationError(
                f"could not fetch the {what} from {url} within {self.timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise TokenVerificationError(
                f"could not fetch the {what} from {url}: {type(exc).__name__}"
            ) from None
        return _json_of(body, what, url)

    async def _read(self, url: str, what: str) -> bytes:
        async with (
            httpx.AsyncClient(
                timeout=self.timeout, follow_redirects=False, transport=self._transport
            ) as client,
            client.stream("GET", url, headers={"Accept": "application/json"}) as answer,
        ):
            if answer.status_code != 200:
                raise TokenVerificationError(
                    f"could not fetch the {what} from {url}: HTTP {answer.status_code}"
                )
            declared = answer.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > MAX_DOCUMENT_BYTES:
                raise TokenVerificationError(f"the {what} at {url} is larger than 64 KiB")
            body = bytearray()
            async for chunk in answer.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise TokenVerificationError(f"the {what} at {url} is larger than 64 KiB")
            return bytes(body)

    async def jwks_uri(self, issuer: str, *, expect_issuer: bool = True) -> str:
        """Return the ``jwks_uri`` an issuer's discovery document names (cached).

        Args:
            issuer: The issuer URL (the token's ``iss``, or a configured location).
            expect_issuer: Require the document's ``issuer`` to equal ``issuer`` (OpenID
                Connect Discovery 1.0, section 4.3); False when ``issuer`` is a configured
                location rather than the token's own claim.

        Raises:
            TokenVerificationError: The document cannot be fetched, is not an object,
                names another issuer, or its ``jwks_uri`` is missing or not allowed.
        """
        now = time.monotonic()
        cached = self._discovered.get(issuer)
        if cached is not None and cached[0] > now:
            return cached[1]
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        async with self._lock(url):
            cached = self._discovered.get(issuer)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
            document = await self._fetch_json(url, "discovery document")
            if not isinstance(document, dict):
                raise TokenVerificationError(f"the discovery document at {url} is not an object")
            if expect_issuer and document.get("issuer") != issuer:
                raise TokenVerificationError(
                    f"the discovery document at {url} names issuer "
                    f"{_shown(document.get('issuer'))}, not the token's"
                )
            uri = document.get("jwks_uri")
            problem = url_problem(uri)
            if problem:
                raise TokenVerificationError(
                    f"the discovery document at {url} has no usable jwks_uri ({problem})"
                )
            assert isinstance(uri, str)  # url_problem refuses anything else
            self._discovered[issuer] = (time.monotonic() + self.ttl, uri)
            return uri

    async def _key_set(self, url: str, *, stale: int | None = None) -> tuple[_KeySet, bool]:
        """Return the set at ``url`` and whether it was fetched by this call.

        ``stale``: refetch when the cached set is still this version (an unknown kid);
        a set another verification refetched meanwhile is returned as it is.
        """
        cached = self._sets.get(url)
        if cached is not None and cached.expires > time.monotonic() and stale is None:
            return cached, False
        async with self._lock(url):
            cached = self._sets.get(url)
            usable = cached is not None and cached.expires > time.monotonic()
            if cached is not None and usable and (stale is None or cached.version != stale):
                return cached, False
            data = await self._fetch_json(url, "JWKS")
            keys = data.get("keys") if isinstance(data, dict) else None
            if not isinstance(keys, list):
                raise TokenVerificationError(f"the JWKS at {url} has no keys list")
            signing = [
                key for key in keys if isinstance(key, dict) and key.get("use") in (None, "sig")
            ]
            fresh = _KeySet(
                keys=signing,
                expires=time.monotonic() + self.ttl,
                version=(cached.version + 1) if cached is not None else 1,
            )
            self._sets[url] = fresh
            return fresh, True

    async def verify_signature(
        self,
        token: AccessToken,
        minted: MintedToken,
        *,
        jwks_url: str | None = None,
        discovery_url: str | None = None,
    ) -> None:
        """Check ``token``'s signature against its issuer's keys.

        Where the keys are, first match wins: ``jwks_url``; discovery at
        ``discovery_url`` (a configured issuer location, e.g. a loopback API that serves
        its own discovery); discovery at the token's ``iss``, whose document must name
        that same issuer.

        Args:
            token: The token.
            minted: What :func:`check_minted` read from it.
            jwks_url: Explicit JWK set URL (credentials block or ``USEGRANT_JWKS_URL``).
            discovery_url: Explicit issuer location to discover the JWK set at.

        Raises:
            TokenVerificationError: One line naming the token by fingerprint.
        """
        name = f"token {token.fingerprint} refused"
        try:
            if jwks_url is not None:
                url = jwks_url
            elif discovery_url is not None:
                url = await self.jwks_uri(discovery_url, expect_issuer=False)
            else:
                if minted.issuer is None:
                    raise TokenVerificationError(
                        "it has no iss claim to discover its keys by; set a jwks_url"
                    )
                problem = url_problem(minted.issuer)
                if problem:
                    raise TokenVerificationError(
                        f"its issuer cannot be used for discovery ({problem}); set a jwks_url"
                    )
                url = await self.jwks_uri(minted.issuer)
            key_set, fetched = await self._key_set(url)
            key = _pick_key(key_set.keys, minted, url)
            if key is None and not fetched:
                key_set, _ = await self._key_set(url, stale=key_set.version)
                key = _pick_key(key_set.keys, minted, url)
            if key is None:
                raise TokenVerificationError(
                    f"its kid {_shown(minted.kid)} is not in the JWKS at {url}"
                )
            _check_signature(token, minted, key, url)
        except TokenVerificationError as exc:
            raise TokenVerificationError(f"{name}: {exc}") from None


def _pick_key(keys: list[dict[str, Any]], minted: MintedToken, url: str) -> dict[str, Any] | None:
    """Return the key the token names; ``None`` when its kid is unknown (refetch)."""
    if minted.kid is None:
        if len(keys) == 1:
            return keys[0]
        raise TokenVerificationError(
            f"it names no kid and the JWKS at {url} holds {len(keys)} signing keys"
        )
    return next((key for key in keys if key.get("kid") == minted.kid), None)


def _check_signature(
    token: AccessToken, minted: MintedToken, jwk: dict[str, Any], url: str
) -> None:
    algorithm = minted.algorithm
    declared = jwk.get("alg")
    if declared is not None and declared != algorithm:
        raise TokenVerificationError(
            f"it uses {algorithm} but its key in the JWKS at {url} is for {_shown(declared)}"
        )
    kty, crv = _KEY_TYPES[algorithm]
    if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
        raise TokenVerificationError(
            f"it uses {algorithm} but its key in the JWKS at {url} is not a "
            f"{kty}{' ' + crv if crv else ''} key"
        )
    try:
        key = jwt.PyJWK(jwk, algorithm=algorithm)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        raise TokenVerificationError(f"its key in the JWKS at {url} is not usable") from None
    bits = getattr(key.key, "key_size", None)
    if kty == "RSA" and isinstance(bits, int) and bits < MIN_RSA_BITS:
        # A short RSA key can be factored: its signature proves nothing.
        raise TokenVerificationError(
            f"its RSA key in the JWKS at {url} has {bits} bits (fewer than {MIN_RSA_BITS})"
        )
    try:
        jwt.PyJWS().decode_complete(
            token.access_token.get_secret_value(), key.key, algorithms=[algorithm]
        )
    except jwt.PyJWTError:
        raise TokenVerificationError(
            f"its signature does not verify against the JWKS at {url}"
        ) from None


async def averify_minted(
    token: AccessToken,
    *,
    now: datetime,
    renew_before: float,
    mode: VerifyMode = "full",
    keys: JwksCache | None = None,
    jwks_url: str | None = None,
    discovery_url: str | None = None,
) -> MintedToken:
    """Run :func:`check_minted`, then (``mode="full"``) the signature check.

    Args:
        token: The token the API just answered with.
        now: The reference time (aware).
        renew_before: The target's refresh margin, in seconds.
        mode: ``"full"`` or ``"claims"`` (skip the signature only).
        keys: The run's :class:`JwksCache`; a new one when ``None``.
        jwks_url: Explicit JWK set URL, see :meth:`JwksCache.verify_signature`.
        discovery_url: Explicit issuer location, see :meth:`JwksCache.verify_signature`.

    Returns:
        What the claim checks read.

    Raises:
        TokenVerificationError: The first check that failed, in one line.
        ConfigurationError: ``mode`` is neither ``"full"`` nor ``"claims"``.
    """
    if mode not in ("full", "claims"):
        raise ConfigurationError(f"verify must be 'full' or 'claims', got {_shown(mode)}")
    minted = check_minted(token, now=now, renew_before=renew_before)
    if mode == "full":
        await (keys or JwksCache()).verify_signature(
            token, minted, jwks_url=jwks_url, discovery_url=discovery_url
        )
    return minted
