"""What a target's sinks hold: read without failing, and judged against the policy.

The runner reads every sink before it decides to mint and again under the target's
lock; an unreadable or write-only sink counts as holding nothing, so it never blocks a
mint, and a target is fresh only when every readable sink vouches for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from usegrant_flows.api.models import AccessToken
from usegrant_flows.rotation.fleet import RotationTarget
from usegrant_flows.rotation.policy import effective_expiry, is_valid
from usegrant_flows.sinks.base import TokenSink

__all__ = ["all_fresh", "read_all", "soonest"]


async def read_all(sinks: Sequence[TokenSink]) -> list[AccessToken | None]:
    """Read every sink; a write-only or unreadable sink counts as holding nothing."""
    held: list[AccessToken | None] = []
    for sink in sinks:
        if not sink.readable:
            held.append(None)
            continue
        try:
            held.append(await sink.aread())
        except Exception:  # corrupt or unreadable: the next write replaces it
            held.append(None)
    return held


def all_fresh(
    target: RotationTarget, sinks: Sequence[TokenSink], held: Sequence[AccessToken | None]
) -> bool:
    """Tell whether every readable sink holds a token the target's policy calls fresh.

    A target with no readable sink (webhooks only) is never fresh: nothing can vouch.
    """
    readable = [token for sink, token in zip(sinks, held, strict=True) if sink.readable]
    now = datetime.now(timezone.utc)
    return bool(readable) and all(
        token is not None and target.policy.is_fresh(token, identity=target.identity, now=now)
        for token in readable
    )


def soonest(held: Sequence[AccessToken | None]) -> AccessToken | None:
    """Return the still-valid held token that expires first, or ``None``."""
    now = datetime.now(timezone.utc)
    valid = [token for token in held if token is not None and is_valid(token, now)]
    return min(valid, key=effective_expiry, default=None)
