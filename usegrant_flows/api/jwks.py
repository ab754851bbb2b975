"""The issuers' signing keys for minted tokens, fetched with bounds and cached.

:class:`JwksCache` finds an issuer's JWK set from an explicit ``jwks_url`` or by OpenID
Connect discovery (``{iss}/.well-known/openid-configuration``), each fetch bounded in
time and size and never following redirects, caches it per issuer, and refetches once
on an unknown ``kid`` (the issuer may have rotated its key). :func:`averify_minted` runs
the claim checks of :mod:`usegrant_flows.api.claims` and then the signature.
:meth:`JwksCache.prefetch` fetches an issuer's keys ahead of a mint (keys before quota),
and :func:`shared_jwks_cache` is the one cache of a process, so the runs of a
long-lived worker reuse keys within their TTL.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from usegrant_flows.api.checks import check_secure_url, url_problem
from usegrant_flows.api.claims import (
    MINTED_FETCH_TIMEOUT,
    MintedToken,
    VerifyMode,
    check_minted,
    shown,
)
from usegrant_flows.api.errors import ConfigurationError, TokenVerificationError
from usegrant_flows.api.models import AccessToken
from usegrant_flows.api.signature import check_signature, pick_key
from usegrant_flows.api.verify import JWKS_CACHE_SECONDS, MAX_DOCUMENT_BYTES, json_document

__all__ = ["JwksCache", "averify_minted", "shared_jwks_cache"]


@dataclass
class _KeySet:
    keys: list[dict[str, Any]]
    expires: float  # time.monotonic() after which the set is fetched again
    version: int  # bumped on every fetch, so concurrent refetches collapse into one
    refetched: bool = False  # fetched again for an unknown kid: not again until it expires


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
        # Per event loop: an asyncio lock must not be shared across loops, and a cache
        # shared by the runs of a process outlives each run's loop.
        self._locks: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Lock]
        ] = weakref.WeakKeyDictionary()
        #: Fetches made, by URL (discovery documents and JWK sets); for tests and stats.
        self.fetches: dict[str, int] = {}

    def _lock(self, url: str) -> asyncio.Lock:
        locks = self._locks.setdefault(asyncio.get_running_loop(), {})
        return locks.setdefault(url, asyncio.Lock())

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
        return json_document(body, what, url)

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
                    f"{shown(document.get('issuer'))}, not the token's"
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
                refetched=stale is not None,
            )
            self._sets[url] = fresh
            return fresh, True

    async def key_set_url(
        self,
        *,
        jwks_url: str | None = None,
        discovery_url: str | None = None,
        issuer: str | None = None,
    ) -> str:
        """Return the URL of an issuer's JWK set, discovering it when needed (cached).

        First match wins: ``jwks_url``; discovery at ``discovery_url`` (a configured
        location); discovery at ``issuer`` (the token's ``iss``), whose document must name
        that same issuer.

        Raises:
            TokenVerificationError: No location is given, or discovery failed.
        """
        if jwks_url is not None:
            return jwks_url
        if discovery_url is not None:
            return await self.jwks_uri(discovery_url, expect_issuer=False)
        if issuer is None:
            raise TokenVerificationError(
                "it has no iss claim to discover its keys by; set a jwks_url"
            )
        problem = url_problem(issuer)
        if problem:
            raise TokenVerificationError(
                f"its issuer cannot be used for discovery ({problem}); set a jwks_url"
            )
        return await self.jwks_uri(issuer)

    async def prefetch(
        self,
        *,
        jwks_url: str | None = None,
        discovery_url: str | None = None,
        issuer: str | None = None,
    ) -> str:
        """Make sure an issuer's keys are at hand before a token is minted for it.

        Costs nothing while the cached set is younger than ``ttl``; otherwise one
        discovery (when needed) and one JWKS fetch, each bounded by ``timeout``. The
        location is chosen as in :meth:`key_set_url`.

        Returns:
            The JWK set's URL.

        Raises:
            TokenVerificationError: One line: the keys cannot be had (unreachable, a
                timeout, an error status, no keys list).
        """
        url = await self.key_set_url(jwks_url=jwks_url, discovery_url=discovery_url, issuer=issuer)
        await self._key_set(url)
        return url

    def verify_cached(
        self,
        token: AccessToken,
        minted: MintedToken,
        *,
        jwks_url: str | None = None,
        discovery_url: str | None = None,
    ) -> bool:
        """Check ``token``'s signature with keys already at hand: no I/O, no event loop.

        The same check as :meth:`verify_signature` (same arguments), for a caller that
        must not wait on a fetch: it runs in the caller's thread, in about 0.15 ms for an
        ES256 token.

        Returns:
            True when the signature verified; False when the keys are not at hand (the
            location is not discovered yet, the set is not fetched or older than
            ``ttl``, or it lacks the token's ``kid``): :meth:`verify_signature` then
            fetches what is missing.

        Raises:
            TokenVerificationError: The key at hand refuses the token (one line naming
                it by fingerprint).
        """
        location = discovery_url if discovery_url is not None else minted.issuer
        url = jwks_url
        if url is None and location is not None:
            discovered = self._discovered.get(location)
            if discovered is not None and discovered[0] > time.monotonic():
                url = discovered[1]
        key_set = self._sets.get(url) if url is not None else None
        if url is None or key_set is None or key_set.expires <= time.monotonic():
            return False
        try:
            key = pick_key(key_set.keys, minted, url)
            if key is None:
                return False
            check_signature(token, minted, key, url)
        except TokenVerificationError as exc:
            raise TokenVerificationError(f"token {token.fingerprint} refused: {exc}") from None
        return True

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
            url = await self.key_set_url(
                jwks_url=jwks_url, discovery_url=discovery_url, issuer=minted.issuer
            )
            key_set, fetched = await self._key_set(url)
            key = pick_key(key_set.keys, minted, url)
            if key is None and not fetched and not key_set.refetched:
                # One refetch per set lifetime: tokens naming a kid the issuer does not
                # publish cost one fetch per run, not one per target.
                key_set, _ = await self._key_set(url, stale=key_set.version)
                key = pick_key(key_set.keys, minted, url)
            if key is None:
                raise TokenVerificationError(
                    f"its kid {shown(minted.kid)} is not in the JWKS at {url}"
                )
            check_signature(token, minted, key, url)
        except TokenVerificationError as exc:
            raise TokenVerificationError(f"{name}: {exc}") from None


_SHARED: JwksCache | None = None


def shared_jwks_cache() -> JwksCache:
    """Return the process's one :class:`JwksCache` (default bounds, the network).

    The runs of a long-lived process (``serve()``, a test session) share it, so an
    issuer's keys are fetched at most once per ``ttl`` (300 s) per process, whatever the
    number of runs. A failed fetch is not cached here: the next run asks again.
    """
    global _SHARED
    if _SHARED is None:
        _SHARED = JwksCache()
    return _SHARED


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
        raise ConfigurationError(f"verify must be 'full' or 'claims', got {shown(mode)}")
    minted = check_minted(token, now=now, renew_before=renew_before)
    if mode == "full":
        await (keys or JwksCache()).verify_signature(
            token, minted, jwks_url=jwks_url, discovery_url=discovery_url
        )
    return minted
