"""Keys before quota: each issuer's keys are at hand before a request is spent on it.

A rotation verifies every minted token against its issuer's keys. Fetching them only
after the mint would spend a request whenever the keys cannot be had (a JWKS endpoint
that hangs, answers 500 or has no keys): the token is then refused and thrown away, one
request and one fetch timeout per target. So, before the first mint of an issuer in a
run, :class:`IssuerKeys` fetches its keys once (single-flight: the targets that need them
at the same time wait for that one fetch) and remembers the outcome for the rest of the
run. When the keys cannot be had, every target of that issuer ends without a request
(``failed_but_valid`` while its sinks hold a valid token, else ``failed``), and the run
pays at most one fetch timeout per issuer. The key sets themselves live in the process's
:class:`~usegrant_flows.api.jwks.JwksCache` (300 s), so later runs in the same process
reuse them.

An issuer is found, in this order: the credentials' ``jwks_url``; the API's own
discovery when it is a loopback host (the emulator); the ``iss`` of the token the
delivery record or a sink names. A target whose issuer is none of these (its first
delivery, discovery at an unknown ``iss``) mints first and verifies after, as before.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from usegrant_flows.api.errors import TokenVerificationError
from usegrant_flows.api.jwks import JwksCache

__all__ = ["IssuerKeys", "KeyLocation", "KeysUnavailableError"]


class KeysUnavailableError(TokenVerificationError):
    """Raised for every target of an issuer whose keys could not be fetched this run."""


@dataclass(frozen=True)
class KeyLocation:
    """Where an issuer's keys are: exactly one way is used, first set wins.

    Attributes:
        jwks_url: An explicit JWK set URL.
        discovery_url: A configured issuer location to discover the set at.
        issuer: An ``iss`` claim to discover the set at.
    """

    jwks_url: str | None = None
    discovery_url: str | None = None
    issuer: str | None = None

    @property
    def key(self) -> str:
        """The one string naming this issuer's keys within a run."""
        return self.jwks_url or self.discovery_url or self.issuer or ""

    @property
    def known(self) -> bool:
        """True when some location is set."""
        return bool(self.key)


class IssuerKeys:
    """The issuers' keys of one run: fetched once per issuer, before any mint.

    Args:
        cache: Where key sets are cached (the process's, usually).
    """

    def __init__(self, cache: JwksCache) -> None:
        self.cache = cache
        self._fetches: dict[str, asyncio.Task[str]] = {}

    async def ready(self, location: KeyLocation) -> None:
        """Return once the issuer's keys are cached; raise if they cannot be had.

        The first call per issuer in a run fetches (or finds them cached); concurrent
        and later calls share that outcome, a failure included.

        Raises:
            KeysUnavailableError: One line naming the location and why; no request was
                spent on the target.
        """
        if not location.known:
            return
        fetch = self._fetches.get(location.key)
        if fetch is None:
            fetch = asyncio.ensure_future(
                self.cache.prefetch(
                    jwks_url=location.jwks_url,
                    discovery_url=location.discovery_url,
                    issuer=location.issuer,
                )
            )
            self._fetches[location.key] = fetch
        try:
            await asyncio.shield(fetch)
        except TokenVerificationError as exc:
            raise KeysUnavailableError(
                f"the issuer's keys could not be fetched, so no token was minted: {exc}"
            ) from None

    @property
    def fetched(self) -> int:
        """How many issuers this run fetched (or found cached) keys for."""
        return len(self._fetches)
