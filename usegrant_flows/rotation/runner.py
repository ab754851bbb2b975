"""One target's rotation, and what the batches of a flow run share.

Per target, the rules of :mod:`usegrant_flows.rotation.policy` apply: preflight every sink
(a sink that cannot take a token fails the target before any request); read every sink;
skip when every readable sink holds a fresh token; otherwise take the target's lock
(:mod:`usegrant_flows.rotation.locks`), read again (another run may just have minted), mint
once, verify the new token (:func:`usegrant_flows.api.verify.averify_minted`: claims, and
the signature against the issuer's keys unless the target says ``verify: claims``) and
only then write it to every sink. A refused token is written nowhere: the sinks keep
what they held. Each target's result is a small row (never a token) and
one Prefect event: ``usegrant.token.minted``, ``usegrant.token.fresh`` or
``usegrant.token.failed`` (both failure outcomes), about the resource
``usegrant.client.<client id>``. A token lives only while its own target is written.

A :class:`FleetRunner` holds what every target of a flow run shares: the concurrency
limit, one ``AsyncUseGrantClient`` per API key and base URL (:class:`ClientPool`), the
loaded sink blocks, the per-target locks and the issuers' JWK sets (:class:`JwksCache`).
:mod:`usegrant_flows.rotation.tasks` cuts a fleet into batch tasks that use one runner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prefect.settings import PREFECT_HOME

from usegrant_flows.api.checks import is_loopback
from usegrant_flows.api.claims import MintedToken
from usegrant_flows.api.clock import SYSTEM_CLOCK, Clock
from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.api.jwks import JwksCache, averify_minted, shared_jwks_cache
from usegrant_flows.api.models import AccessToken
from usegrant_flows.api.settings import load_settings
from usegrant_flows.api.verify import ALLOWED_ALGORITHMS
from usegrant_flows.client_pool import ClientPool
from usegrant_flows.credentials import aload_credentials
from usegrant_flows.loading import aload_block
from usegrant_flows.quota.limiter import prefect_api_configured
from usegrant_flows.rotation.fleet import BlockSinkSpec, RotationTarget
from usegrant_flows.rotation.holdings import all_fresh, read_all
from usegrant_flows.rotation.issuer_keys import IssuerKeys, KeyLocation
from usegrant_flows.rotation.lease import TargetLeases
from usegrant_flows.rotation.locks import TargetLocks
from usegrant_flows.rotation.outcome import deliver, emit, failed, fresh, preflight
from usegrant_flows.rotation.plan import stagger_offset
from usegrant_flows.rotation.policy import RotationAction, RotationResult, effective_expiry
from usegrant_flows.rotation.record import (
    DeliveryEntry,
    DeliveryRecord,
    MemoryRecord,
    PrefectRecord,
)
from usegrant_flows.rotation.verdict import Verdict, entry_for, judge
from usegrant_flows.sinks.base import TokenSink

__all__ = ["FleetRunner", "default_lock_dir"]


def default_lock_dir() -> Path:
    """Return ``$PREFECT_HOME/usegrant-flows/locks``, shared by the runs of one machine."""
    return Path(PREFECT_HOME.value()) / "usegrant-flows" / "locks"


class FleetRunner:
    """What the batches of one flow run share (see the module docstring).

    Args:
        concurrency: Targets in flight at once across all batches (>= 1).
        force: Mint even when the sinks hold fresh tokens.
        lock_dir: Directory of the per-target locks; default :func:`default_lock_dir`.
        lock_timeout: Seconds to wait for a target another run holds.
        on_result: Called with each target's result as it completes (progress display).
        spread: Seconds over which the refreshes due in this run are spread (>= 0): a
            target whose sinks all hold a valid token waits a fixed offset in
            ``[0, spread)`` derived from its identity (never past its ``renew_before``
            margin) before it mints. Missing tokens are delivered at once.
        clock: Where the stagger waits (tests pass a fake one).
        jwks: The issuers' JWK sets; default the process's
            (:func:`~usegrant_flows.api.jwks.shared_jwks_cache`; tests pass one with a
            mock transport). Each issuer's keys are fetched before its first mint of the
            run (:mod:`~usegrant_flows.rotation.issuer_keys`).
        leases: Per-target leases across machines (:mod:`~usegrant_flows.rotation.lease`),
            taken with the file lock; default: a Prefect server's, when one is configured.
        record: The delivery record (:mod:`~usegrant_flows.rotation.record`); default
            the Prefect server's when one is configured, else the process's memory.
    """

    def __init__(
        self,
        *,
        concurrency: int = 32,
        force: bool = False,
        lock_dir: str | Path | None = None,
        lock_timeout: float = 120.0,
        on_result: Callable[[RotationResult], None] | None = None,
        spread: float = 0.0,
        clock: Clock = SYSTEM_CLOCK,
        jwks: JwksCache | None = None,
        leases: TargetLeases | None = None,
        record: DeliveryRecord | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be >= 1, got {concurrency}")
        if not spread >= 0:
            raise ConfigurationError(f"spread must be >= 0 seconds, got {spread}")
        self.force = force
        self.spread = spread
        self.clock = clock
        self.clients = ClientPool()
        self.locks = TargetLocks(lock_dir or default_lock_dir(), timeout=lock_timeout)
        self.leases = leases or TargetLeases(timeout=lock_timeout)
        self.on_result = on_result
        self._limit = asyncio.Semaphore(concurrency)
        self._blocks: dict[str, TokenSink] = {}
        self.jwks = jwks or shared_jwks_cache()
        self.issuer_keys = IssuerKeys(self.jwks)
        if record is None:
            record = PrefectRecord() if prefect_api_configured() else MemoryRecord()
        self.record = record
        self._key_sources: dict[str | None, tuple[str | None, str | None]] = {}
        self._key_sources_lock = asyncio.Lock()  # one credentials load per name, not per target

    async def sinks_for(self, target: RotationTarget) -> list[TokenSink]:
        """Return the target's sink blocks, loading saved blocks once per run."""
        sinks: list[TokenSink] = []
        for spec in target.sinks:
            if not isinstance(spec, BlockSinkSpec):
                sinks.append(spec.build())
                continue
            sink = self._blocks.get(spec.block)
            if sink is None:
                loaded = await aload_block(TokenSink, spec.block, what="token sink block")
                sink = self._blocks.setdefault(spec.block, loaded)
            sinks.append(sink)
        return sinks

    async def rotate(self, target: RotationTarget) -> RotationResult:
        """Rotate one target under the shared concurrency limit; never raises."""
        if self.spread > 0 and not self.force:
            await self._stagger(target)  # outside the limit: waiting takes no slot
        async with self._limit:
            try:
                result = await self._rotate(target)
            except Exception as exc:  # a bug or an unexpected error: report, don't stop
                result = failed(target, exc, [None])
        emit(result)
        if self.on_result is not None:
            self.on_result(result)
        return result

    async def _rotate(self, target: RotationTarget) -> RotationResult:
        try:
            sinks = await self.sinks_for(target)
        except Exception as exc:
            return failed(target, exc, [None])
        refusal = await preflight(target, sinks)
        if refusal is not None:
            return refusal
        held = await read_all(sinks)
        verdict, entry = await self._judge(target, sinks, held)
        if verdict.kind == "fresh":
            return self._fresh(target, verdict, entry)
        try:
            async with self.locks.hold(target.name), self.leases.hold(target.identity):
                granted = self.leases.granted_at(target.identity)
                if granted is not None:  # its last holder recorded before letting it go
                    await self.record.refresh(granted)
                held = await read_all(sinks)  # another run may just have delivered
                verdict, entry = await self._judge(target, sinks, held)
                if verdict.kind == "fresh":
                    return self._fresh(target, verdict, entry)
                if verdict.kind == "repair" and verdict.token is not None:
                    result, holding = await deliver(
                        target,
                        verdict.token,
                        sinks,
                        held,
                        only=verdict.stale,
                        action=RotationAction.REPAIRED,
                    )
                    self._note(target, verdict.token, holding)
                    return result
                return await self._mint(target, sinks, held)
        except Exception as exc:  # LockTimeoutError, or the lock directory is unusable
            return failed(target, exc, held)

    async def _judge(
        self, target: RotationTarget, sinks: Sequence[TokenSink], held: list[AccessToken | None]
    ) -> tuple[Verdict, DeliveryEntry | None]:
        if self.force:
            return Verdict("mint"), None
        entry = await self.record.get(target.identity)

        async def prove(token: AccessToken) -> bool:
            return await self.prove(target, token)

        readable = [sink.readable for sink in sinks]
        now = datetime.now(timezone.utc)
        return await judge(target, readable, held, entry, now=now, prove=prove), entry

    def _fresh(
        self, target: RotationTarget, verdict: Verdict, entry: DeliveryEntry | None
    ) -> RotationResult:
        if verdict.token is not None and entry is None:
            # Proven without a record: record it, so the next runs judge by the record.
            self._note(target, verdict.token, (1 << len(target.sinks)) - 1)
        return fresh(target, verdict.fingerprint, verdict.expires_at)

    def _note(self, target: RotationTarget, token: AccessToken, holding: int) -> None:
        if holding:
            entry = entry_for(token, holding, datetime.now(timezone.utc))
            self.record.note(target.identity, entry)

    async def flush_record(self, targets: Sequence[RotationTarget]) -> None:
        """Write the record of a batch's targets (one call per changed chunk); never raises.

        A record that cannot be written is logged: the next run may mint or repair those
        targets once more, and nothing else is lost.
        """
        try:
            await self.record.flush(t.identity for t in targets)
        except Exception as exc:
            logging.getLogger(__name__).warning(
                "the delivery record of %d targets was not written: %s",
                len(targets),
                type(exc).__name__,
            )

    async def _mint(
        self, target: RotationTarget, sinks: Sequence[TokenSink], held: list[AccessToken | None]
    ) -> RotationResult:
        try:
            client = await self.clients.get(target.credentials)
            if target.verify == "full":  # keys before quota: no mint without them
                await self.issuer_keys.ready(await self.key_location(target, client, held))
            token = await client.create_token(
                target.provider_id, target.client_id, **target.token_options()
            )
        except Exception as exc:
            return failed(target, exc, held)
        try:
            await self._verify(target, client, token)
        except Exception as exc:  # refused: written nowhere, the sinks keep theirs
            return failed(target, exc, held)
        result, holding = await deliver(target, token, sinks, held)
        self._note(target, token, holding)
        return result

    async def prove(self, target: RotationTarget, token: AccessToken) -> bool:
        """Tell whether a held token is this target's (used only without a record).

        Its algorithm is asymmetric, it names a subject and an audience, and (``verify:
        full``) its signature verifies against the target's issuer keys, found as for a
        mint. Keys that cannot be had prove nothing (the target is then due, and its mint
        is refused before any request).
        """
        try:
            header, claims = token.header(), token.claims()
        except ValueError:
            return False
        algorithm, kid, issuer = header.get("alg"), header.get("kid"), claims.get("iss")
        if algorithm not in ALLOWED_ALGORITHMS or not claims.get("sub") or not claims.get("aud"):
            return False
        if target.verify != "full":
            return True
        try:
            client = await self.clients.get(target.credentials)
            jwks_url, discovery = await self.key_source(target, client)
            minted = MintedToken(
                algorithm=str(algorithm),
                kid=kid if isinstance(kid, str) else None,
                issuer=issuer if isinstance(issuer, str) else None,
            )
            await self.jwks.verify_signature(
                token, minted, jwks_url=jwks_url, discovery_url=discovery
            )
        except Exception:
            return False
        return True

    async def key_source(
        self, target: RotationTarget, client: Any
    ) -> tuple[str | None, str | None]:
        """Return where the target's issuer keys are: ``(jwks_url, discovery_url)``.

        ``jwks_url`` is the credentials block's ``jwks_url`` (``USEGRANT_JWKS_URL`` for
        the settings). Without one, a client whose API base URL is a loopback host (the
        emulator, a test double) is asked for discovery itself: such a server mints
        tokens naming an issuer domain that does not resolve here. Otherwise both are
        ``None``: discovery at the token's own ``iss``. Looked up once per credentials.

        Args:
            target: The target.
            client: Its API client (its ``base_url`` is used).
        """
        name = target.credentials
        known = self._key_sources.get(name)
        if known is not None:
            return known
        async with self._key_sources_lock:
            if name not in self._key_sources:
                if name is None:
                    jwks_url = load_settings().jwks_url
                else:
                    jwks_url = (await aload_credentials(name)).jwks_url
                base = getattr(client, "base_url", None)
                local = isinstance(base, str) and is_loopback(urlsplit(base).hostname or "")
                discovery = base if jwks_url is None and local else None
                self._key_sources[name] = (jwks_url, discovery)
            return self._key_sources[name]

    async def key_location(
        self, target: RotationTarget, client: Any, held: Sequence[AccessToken | None]
    ) -> KeyLocation:
        """Return where the target's issuer keys are, known before a mint when possible.

        The configured source (:meth:`key_source`) first; else the ``iss`` of a token
        its sinks hold; else nothing is known (the keys are fetched after the mint).
        """
        jwks_url, discovery = await self.key_source(target, client)
        if jwks_url is not None or discovery is not None:
            return KeyLocation(jwks_url=jwks_url, discovery_url=discovery)
        for token in held:
            issuer = token.claims().get("iss") if token is not None else None
            if isinstance(issuer, str) and issuer:
                return KeyLocation(issuer=issuer)
        return KeyLocation()

    async def _verify(self, target: RotationTarget, client: Any, token: AccessToken) -> None:
        """Refuse a minted token that fails the target's checks (TokenVerificationError)."""
        jwks_url = discovery = None
        if target.verify == "full":
            jwks_url, discovery = await self.key_source(target, client)
        margin = float(target.policy.renew_before)
        if target.expires_in is not None:
            # A token must outlive the refresh margin (else it is due at once), but a
            # target that asks for a lifetime shorter than its margin (a 60 s token from
            # the mint flow, say) gets it: it need only outlive half that lifetime.
            margin = min(margin, target.expires_in / 2)
        await averify_minted(
            token,
            now=datetime.now(timezone.utc),
            renew_before=margin,
            mode=target.verify,
            keys=self.jwks,
            jwks_url=jwks_url,
            discovery_url=discovery,
        )

    async def _stagger(self, target: RotationTarget) -> None:
        """Wait the target's offset when it is due but every sink still holds a token."""
        delay = stagger_offset(target.identity, self.spread)
        if delay <= 0:
            return
        try:
            sinks = await self.sinks_for(target)
        except Exception:  # reported by _rotate
            return
        if await preflight(target, sinks) is not None:
            return  # reported by _rotate, which preflights again
        held = await read_all(sinks)
        readable = [token for sink, token in zip(sinks, held, strict=True) if sink.readable]
        if not readable or any(token is None for token in readable):
            return  # something to deliver now
        if all_fresh(target, sinks, held):
            return  # nothing due: no reason to wait
        margin = timedelta(seconds=target.policy.renew_before)
        latest = min(effective_expiry(t) for t in readable if t is not None) - margin
        wait = min(delay, (latest - datetime.now(timezone.utc)).total_seconds())
        if wait > 0:
            await self.clock.asleep(wait)

    async def aclose(self) -> None:
        """Close the shared clients."""
        await self.clients.aclose()
        await self.leases.aclose()
