"""Fresh means proven: the verdict on what a target's sinks hold.

A target is **fresh** only when every readable sink holds the same token, that token is
the one the delivery record (:mod:`usegrant_flows.rotation.record`) names, or, with no
record, one :func:`prove` accepts (signed by the target's issuer, with ``sub`` and
``aud``), every write-only sink got it, and the refresh policy calls it fresh.

When the sinks disagree but one of them holds that token, and it is still fresh, the
others are **repaired**: the token is copied to them from the sink that holds it, with no
mint (a sink that was down during the last delivery, a file edited by hand). Without a
record, the newest proven token a sink holds is the one copied. Anything else is
**minted**: no sink holds the recorded token, it is due, nothing can be proven.

Example:
    >>> from usegrant_flows.rotation.record import DeliveryEntry
    >>> e = DeliveryEntry("0123456789ab", 0, 2_000_000_000, 0, 0b10)
    >>> [e.holds(0), e.holds(1)]
    [False, True]
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from usegrant_flows.api.models import AccessToken
from usegrant_flows.rotation.fleet import RotationTarget
from usegrant_flows.rotation.policy import effective_expiry, is_valid
from usegrant_flows.rotation.record import DeliveryEntry

__all__ = ["Verdict", "entry_for", "judge"]

#: Tells whether a held token is this target's (used only without a record).
Prover = Callable[[AccessToken], Awaitable[bool]]


@dataclass(frozen=True)
class Verdict:
    """What to do with a target.

    Attributes:
        kind: ``fresh`` (nothing to do), ``repair`` (copy ``token`` to ``stale``) or
            ``mint``.
        token: The token the sinks agree on (fresh) or the one to copy (repair).
        fingerprint: The fingerprint of the token the target holds (fresh, repair),
            also for a write-only target judged by its record alone.
        expires_at: Its expiry, when known.
        stale: Indexes of the sinks to repair.
    """

    kind: Literal["fresh", "repair", "mint"]
    token: AccessToken | None = None
    fingerprint: str | None = None
    expires_at: datetime | None = None
    stale: tuple[int, ...] = ()


_MINT = Verdict("mint")


def entry_for(token: AccessToken, sinks: int, at: datetime) -> DeliveryEntry:
    """Return the record entry of ``token`` delivered to the sinks of bitmask ``sinks``."""
    issued = token.issued_at
    return DeliveryEntry(
        fingerprint=token.fingerprint,
        issued_at=int(issued.timestamp()) if issued else 0,
        expires_at=int(effective_expiry(token).timestamp()),
        at=int(at.timestamp()),
        sinks=sinks,
    )


def _held(token: AccessToken, stale: Sequence[int]) -> Verdict:
    return Verdict(
        "repair" if stale else "fresh",
        token=token,
        fingerprint=token.fingerprint,
        expires_at=effective_expiry(token),
        stale=tuple(stale),
    )


async def judge(
    target: RotationTarget,
    readable: Sequence[bool],
    held: Sequence[AccessToken | None],
    entry: DeliveryEntry | None,
    *,
    now: datetime,
    prove: Prover,
) -> Verdict:
    """Decide whether the target is fresh, needs a repair, or a mint.

    Args:
        target: The target (its policy and identity).
        readable: Per sink, whether it can be read back.
        held: Per sink, the token it holds (``None``: none, unreadable, write-only).
        entry: The target's delivery record, ``None`` when there is none.
        now: The reference time (aware).
        prove: Whether a held token is this target's; asked only without a record.
    """
    readers = [i for i, r in enumerate(readable) if r]
    writers = [i for i, r in enumerate(readable) if not r]
    prints = [token.fingerprint if token is not None else None for token in held]

    def policy_fresh(token: AccessToken) -> bool:
        return target.policy.is_fresh(token, identity=target.identity, now=now)

    if entry is not None:
        if not readers:  # write-only: the record alone vouches
            point = target.policy.refresh_point(
                entry.issued(), entry.expiry(), identity=target.identity
            )
            if now < point and all(entry.holds(i) for i in writers):
                return Verdict("fresh", fingerprint=entry.fingerprint, expires_at=entry.expiry())
            return _MINT
        recorded = next((held[i] for i in readers if prints[i] == entry.fingerprint), None)
        if recorded is None or not policy_fresh(recorded):
            return _MINT
        stale = [i for i in readers if prints[i] != entry.fingerprint]
        stale += [i for i in writers if not entry.holds(i)]
        return _held(recorded, sorted(stale))

    # No record: the newest token a readable sink holds that is proven this target's.
    candidates: dict[str, AccessToken] = {}
    for i in readers:
        token = held[i]
        if token is not None and is_valid(token, now):
            candidates.setdefault(token.fingerprint, token)
    for token in sorted(candidates.values(), key=effective_expiry, reverse=True):
        if not policy_fresh(token):
            break  # older ones are due too (or sooner)
        if await prove(token):
            stale = [i for i in readers if prints[i] != token.fingerprint]
            return _held(token, sorted(stale + writers))  # write-only sinks: unknown, so send
    return _MINT
