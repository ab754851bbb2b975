"""When to mint a new token, and what a rotation ends in.

This module is pure logic (no Prefect, no network): the refresh policy, the four
outcomes of a target's rotation, the rules that pick the outcome, and the one-line
reasons a person can act on.

The rules, in the order a rotation applies them:

1. **When is a token fresh?** A token is due for refresh once ``refresh_fraction``
   (default 2/3, as cert-manager) of its lifetime has passed, or once fewer than
   ``renew_before`` seconds (default 300) are left, whichever comes first. The lifetime
   runs from the JWT's ``iat`` to its expiry; the expiry is the *earlier* of the JWT's
   ``exp`` claim and the API's ``expiresAt`` (when they disagree we trust the one that
   runs out first). A token without ``iat`` only has the ``renew_before`` floor. The
   refresh point moves earlier by a jitter of up to ``jitter`` x lifetime, derived from
   the target's identity (deterministic, so a given target always refreshes at the same
   point, while a fleet minted at once spreads its refreshes).
2. **When is a mint skipped?** When every readable sink holds the token the delivery
   record names (or, with no record, one proven this target's), every write-only sink
   is recorded as holding it, and it is fresh by rule 1; sinks that disagree are
   repaired from one that holds it, without a mint
   (:mod:`usegrant_flows.rotation.verdict`, ``docs/state-and-alerts.md``).
3. **One mint per target**, written to all of the target's sinks.
4. **Keep the last good token.** A failed mint writes nothing; a failed sink write
   leaves that sink's previous token as it was (sinks write atomically).
5. **Outcome** (:class:`RotationAction`):

   * ``minted``: a new token reached every sink;
   * ``fresh``: every readable sink held the same fresh token, the one delivered last
     (:mod:`usegrant_flows.rotation.verdict`), nothing was minted;
   * ``repaired``: some sinks disagreed; the fresh token the others hold was copied to
     them, nothing was minted;
   * ``failed_but_valid``: the mint, or some sink writes, failed, but every sink that did
     not receive the new token still holds an unexpired old one (readable sinks only:
     a failed write-only sink cannot vouch, so it makes the target ``failed``);
   * ``failed``: some sink holds no valid token after this rotation.

Example:
    >>> from datetime import datetime, timedelta, timezone
    >>> policy = RefreshPolicy(jitter=0)
    >>> issued = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> policy.refresh_point(issued, issued + timedelta(hours=1), identity="t")
    datetime.datetime(2026, 1, 1, 0, 40, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from usegrant_flows.api.models import MAX_EXPIRES_IN, AccessToken
from usegrant_flows.api.redact import redact
from usegrant_flows.rotation.reasons import explain_error

__all__ = [
    "DEGRADED",
    "RefreshPolicy",
    "RotationAction",
    "RotationResult",
    "effective_expiry",
    "explain_error",
    "fallback_action",
    "is_valid",
    "summarize_failures",
]


class RotationAction(str, Enum):
    """How one target's rotation ended."""

    MINTED = "minted"
    FRESH = "fresh"
    REPAIRED = "repaired"
    FAILED_BUT_VALID = "failed_but_valid"
    FAILED = "failed"


class RefreshPolicy(BaseModel):
    """When a token held by a sink is due for refresh.

    Attributes:
        refresh_fraction: Refresh once this fraction of the token's lifetime has passed,
            0 < x < 1 (default 2/3).
        renew_before: Absolute floor, in seconds (0..172800, default 300): refresh once
            fewer than this many seconds are left, whatever the fraction says. Keep it
            above the time your consumers cache a token between reads.
        jitter: Up to this fraction of the lifetime (0..0.2, default 0.05) is taken off
            the refresh point, derived from the target's identity: deterministic per
            target, spread over a fleet.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # strict: a boolean (YAML `yes`) is never a number here.
    refresh_fraction: float = Field(
        default=2 / 3,
        strict=True,
        gt=0,
        lt=1,
        title="Refresh at (fraction of lifetime)",
        description="Refresh once this fraction of the token's lifetime has passed.",
    )
    renew_before: int = Field(
        default=300,
        strict=True,
        ge=0,
        le=MAX_EXPIRES_IN,
        title="Renew before expiry (seconds)",
        description="Refresh once fewer than this many seconds are left.",
    )
    jitter: float = Field(
        default=0.05,
        strict=True,
        ge=0,
        le=0.2,
        title="Jitter (fraction of lifetime)",
        description="Refresh up to this fraction of the lifetime earlier, fixed per target.",
    )

    def refresh_point(
        self, issued_at: datetime | None, expires_at: datetime, *, identity: str
    ) -> datetime:
        """Return the moment from which a token is due for refresh.

        Args:
            issued_at: When the token was issued (aware), or ``None`` if unknown.
            expires_at: When the token expires (aware).
            identity: A stable string naming the target, for the jitter.

        Returns:
            The earlier of the fraction point (minus jitter) and the floor.
        """
        floor = expires_at - timedelta(seconds=self.renew_before)
        if issued_at is None:
            return floor
        lifetime = (expires_at - issued_at).total_seconds()
        if lifetime <= 0:
            return issued_at
        offset = lifetime * (self.refresh_fraction - self.jitter * _unit_hash(identity))
        return min(issued_at + timedelta(seconds=offset), floor)

    def is_fresh(self, token: AccessToken, *, identity: str, now: datetime | None = None) -> bool:
        """Tell whether ``token`` can stay where it is for now.

        Args:
            token: The token a sink holds.
            identity: A stable string naming the target, for the jitter.
            now: The reference time (aware); defaults to the current UTC time.
        """
        now = now or datetime.now(timezone.utc)
        point = self.refresh_point(token.issued_at, effective_expiry(token), identity=identity)
        return now < point


def _unit_hash(identity: str) -> float:
    """Map ``identity`` to a number in [0, 1), the same on every machine and run."""
    digest = hashlib.sha256(identity.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def effective_expiry(token: AccessToken) -> datetime:
    """Return the earlier of the JWT's ``exp`` claim and the API's ``expiresAt``.

    Args:
        token: The token.

    Returns:
        An aware UTC datetime; ``expiresAt`` alone when the JWT has no numeric ``exp``.
    """
    exp = token.claims().get("exp")
    if isinstance(exp, (int, float)) and not isinstance(exp, bool):
        try:
            from_claim = datetime.fromtimestamp(exp, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return token.expires_at
        return min(from_claim, token.expires_at)
    return token.expires_at


def is_valid(token: AccessToken | None, now: datetime) -> bool:
    """Tell whether ``token`` exists and has not expired at ``now``."""
    return token is not None and effective_expiry(token) > now


def fallback_action(
    still_held: Sequence[AccessToken | None], now: datetime | None = None
) -> RotationAction:
    """Pick the outcome of a rotation whose new token did not reach some sinks.

    Args:
        still_held: For every sink that did not get the new token, the token it holds
            now (``None`` when it holds none or cannot be read, as a webhook).
        now: The reference time (aware); defaults to the current UTC time.

    Returns:
        ``failed_but_valid`` when each of those sinks holds an unexpired token,
        ``failed`` otherwise.

    Example:
        >>> fallback_action([None]).value
        'failed'
    """
    now = now or datetime.now(timezone.utc)
    if all(is_valid(token, now) for token in still_held):
        return RotationAction.FAILED_BUT_VALID
    return RotationAction.FAILED


class RotationResult(BaseModel):
    """What happened to one target: one row of the run's artifact. Never holds a token.

    Attributes:
        target: The target's name.
        provider_id: The UseGrant provider id.
        client_id: The UseGrant client id.
        action: How the rotation ended.
        fingerprint: Fingerprint of the token the sinks now hold (the new one when
            minted, the old one otherwise), if any.
        expires_at: Expiry of that token (UTC), if any.
        sinks_written: Descriptions of the sinks that received the new token.
        sinks_failed: Descriptions of the sinks whose write failed.
        error_class: Class name of the error, when something failed.
        reason: One line a person can act on, when something failed.
    """

    model_config = ConfigDict(frozen=True)

    target: str
    provider_id: str
    client_id: str
    action: RotationAction
    fingerprint: str | None = None
    expires_at: datetime | None = None
    sinks_written: tuple[str, ...] = ()
    sinks_failed: tuple[str, ...] = ()
    error_class: str | None = None
    reason: str | None = None

    @field_validator("reason")
    @classmethod
    def _scrubbed(cls, value: str | None) -> str | None:
        # Every reason reaches logs, states, events and artifacts: no secret may ride.
        return redact(value) if value is not None else None

    def as_row(self) -> dict[str, str]:
        """Return the result as a table row of short strings (for a table artifact)."""
        return {
            "target": self.target,
            "client": self.client_id,
            "action": self.action.value,
            "fingerprint": self.fingerprint or "",
            "expires at": self.expires_at.strftime("%Y-%m-%d %H:%M:%SZ") if self.expires_at else "",
            "sinks written": ", ".join(self.sinks_written),
            "sinks failed": ", ".join(self.sinks_failed),
            "error": self.error_class or "",
            "reason": self.reason or "",
        }

    def to_markdown(self) -> str:
        """Return a short markdown report for a person (never the token).

        Example:
            >>> r = RotationResult(target="aws", provider_id="p", client_id="c",
            ...                    action=RotationAction.FRESH)
            >>> print(r.to_markdown().splitlines()[0])
            ### UseGrant token for client `c`: fresh
        """
        expiry = self.expires_at.strftime("%Y-%m-%d %H:%M:%S UTC") if self.expires_at else "-"
        lines = [
            f"### UseGrant token for client `{self.client_id}`: {self.action.value}",
            "",
            "| | |",
            "|---|---|",
            f"| target | {self.target} |",
            f"| provider | `{self.provider_id}` |",
            f"| client | `{self.client_id}` |",
            f"| fingerprint | `{self.fingerprint or '-'}` |",
            f"| expires at | {expiry} |",
            f"| written to | {', '.join(self.sinks_written) or '-'} |",
        ]
        if self.sinks_failed:
            lines.append(f"| not written to | {', '.join(self.sinks_failed)} |")
        if self.reason:
            lines += ["", f"**What went wrong** ({self.error_class}): {self.reason}"]
        return "\n".join(lines)


#: Name of the Completed state of a run some of whose targets ended ``failed_but_valid``:
#: the Prefect UI shows it on the run instead of "Completed".
DEGRADED = "Degraded"


def summarize_failures(
    results: Iterable[RotationResult],
    *,
    limit: int = 10,
    action: RotationAction = RotationAction.FAILED,
) -> str | None:
    """Return one message naming the targets that ended ``action``, or ``None``.

    Args:
        results: Every target's result.
        limit: How many targets to name before "and N more" (>= 1).
        action: ``failed`` (the run fails) or ``failed_but_valid`` (the run is
            :data:`DEGRADED`).

    Example:
        >>> r = RotationResult(target="aws", provider_id="p", client_id="c",
        ...                    action=RotationAction.FAILED, reason="bad key")
        >>> summarize_failures([r])
        '1 of 1 targets failed: aws (bad key)'
    """
    total = 0
    failed: list[RotationResult] = []
    for result in results:
        total += 1
        if result.action is action:
            failed.append(result)
    if not failed:
        return None
    named = ", ".join(f"{r.target} ({r.reason})" if r.reason else r.target for r in failed[:limit])
    more = f", and {len(failed) - limit} more" if len(failed) > limit else ""
    return f"{len(failed)} of {total} targets {action.value}: {named}{more}"
