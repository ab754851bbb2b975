"""The checks a token from a single call passes before the caller sees it.

A rotation verifies every token before any sink sees it; :func:`check_issued` and
:func:`acheck_issued` run the same checks for the single-token tasks and
``usegrant-flows token create``: the claims (:func:`usegrant_flows.api.claims.check_minted`)
and, in ``"full"`` mode, the signature against the issuer's keys
(:func:`usegrant_flows.api.jwks.averify_minted`). The keys are cached for the whole
process, in the cache rotations use too (:func:`usegrant_flows.api.jwks.shared_jwks_cache`,
:data:`~usegrant_flows.api.verify.JWKS_CACHE_SECONDS` seconds), so a task called in a loop
fetches them once; while they are cached, :func:`check_issued` checks in the caller's
thread, with no I/O.

Where the keys are, first match wins: the ``jwks_url`` of the credentials
(``USEGRANT_JWKS_URL`` for the settings); discovery at the API's base URL when it is a
loopback host (the emulator mints tokens whose issuer domain does not resolve here);
discovery at the token's own ``iss``.

A token that fails is an :class:`~usegrant_flows.api.errors.InvalidResponseError`: the
API answered 2xx with a token that cannot be trusted. Its one line names the token by
fingerprint and the check that failed; nothing is returned.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone
from typing import Literal, get_args
from urllib.parse import urlsplit

from usegrant_flows.api.checks import is_loopback
from usegrant_flows.api.claims import check_minted, shown
from usegrant_flows.api.errors import (
    ConfigurationError,
    InvalidResponseError,
    TokenVerificationError,
)
from usegrant_flows.api.jwks import JwksCache, averify_minted, shared_jwks_cache
from usegrant_flows.api.models import AccessToken

__all__ = ["TrustMode", "acheck_issued", "check_issued", "check_mode", "key_source"]

#: ``"full"``: claims and signature (the default); ``"claims"``: the claims only, for
#: callers that cannot reach the issuer's keys; ``"off"``: no check at all.
TrustMode = Literal["full", "claims", "off"]


def check_mode(value: object) -> TrustMode:
    """Return ``value`` if it is a :data:`TrustMode`, else raise ConfigurationError.

    Example:
        >>> check_mode("claims")
        'claims'
    """
    if isinstance(value, str) and value in get_args(TrustMode):
        return value  # type: ignore[return-value]
    raise ConfigurationError(f"verify must be 'full', 'claims' or 'off', got {shown(value)}")


def key_source(base_url: str | None, jwks_url: str | None) -> tuple[str | None, str | None]:
    """Return ``(jwks_url, discovery_url)`` for tokens minted at ``base_url``.

    Example:
        >>> key_source("http://127.0.0.1:8080", None)
        (None, 'http://127.0.0.1:8080')
    """
    if jwks_url is not None:
        return jwks_url, None
    local = base_url is not None and is_loopback(urlsplit(base_url).hostname or "")
    return None, (base_url if local else None)


async def acheck_issued(
    token: AccessToken,
    *,
    mode: TrustMode = "full",
    base_url: str | None = None,
    jwks_url: str | None = None,
    keys: JwksCache | None = None,
) -> AccessToken:
    """Return ``token`` once it passed the checks ``mode`` asks for.

    Args:
        token: The token the API just answered with.
        mode: See :data:`TrustMode`.
        base_url: The API base URL the token came from.
        jwks_url: Explicit JWK set URL (credentials or ``USEGRANT_JWKS_URL``).
        keys: Key cache; the process's shared one when ``None``.

    Raises:
        InvalidResponseError: The token failed a check (or its keys could not be had).
        ConfigurationError: ``mode`` is not a :data:`TrustMode`.
    """
    mode = check_mode(mode)
    if mode == "off":
        return token
    found_jwks, discovery = key_source(base_url, jwks_url)
    try:
        await averify_minted(
            token,
            now=datetime.now(timezone.utc),
            renew_before=0.0,
            mode=mode,
            keys=keys or shared_jwks_cache(),
            jwks_url=found_jwks,
            discovery_url=discovery,
        )
    except TokenVerificationError as exc:
        raise InvalidResponseError(str(exc)) from None
    return token


def check_issued(
    token: AccessToken,
    *,
    mode: TrustMode = "full",
    base_url: str | None = None,
    jwks_url: str | None = None,
    keys: JwksCache | None = None,
) -> AccessToken:
    """Sync form of :func:`acheck_issued`: same arguments, result and errors.

    While the issuer's keys are cached, the checks run in the caller's thread, with no
    I/O (:meth:`~usegrant_flows.api.jwks.JwksCache.verify_cached`): about 0.15 ms for
    an ES256 token. Only a call that must fetch keys (the first of the process, then
    one per :data:`~usegrant_flows.api.verify.JWKS_CACHE_SECONDS` seconds, or an
    unknown ``kid``) runs :func:`acheck_issued` on one private event loop in a daemon
    thread, started on first use and shared by every sync caller of the process; each
    fetch there is bounded (:class:`~usegrant_flows.api.jwks.JwksCache`).
    """
    mode = check_mode(mode)
    if mode == "off":
        return token
    cache = keys or shared_jwks_cache()
    found_jwks, discovery = key_source(base_url, jwks_url)
    try:
        minted = check_minted(token, now=datetime.now(timezone.utc), renew_before=0.0)
        if mode == "claims" or cache.verify_cached(
            token, minted, jwks_url=found_jwks, discovery_url=discovery
        ):
            return token
    except TokenVerificationError as exc:
        raise InvalidResponseError(str(exc)) from None
    call = acheck_issued(token, mode=mode, base_url=base_url, jwks_url=jwks_url, keys=cache)
    return asyncio.run_coroutine_threadsafe(call, _checks_loop()).result()


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _checks_loop() -> asyncio.AbstractEventLoop:
    """The private event loop of :func:`check_issued`, running in its daemon thread."""
    global _loop
    with _loop_lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            name = "usegrant-flows token checks"
            threading.Thread(target=loop.run_forever, name=name, daemon=True).start()
            _loop = loop
        return _loop
