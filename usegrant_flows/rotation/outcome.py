"""What one target's rotation ends in: its result row and its event.

The runner (:mod:`usegrant_flows.rotation.runner`) decides; this module builds the
row every outcome ends in (never a token), runs the sinks' preflight, delivers a token to
every sink, and emits the target's Prefect event: ``usegrant.token.minted``,
``usegrant.token.fresh``, ``usegrant.token.repaired``, or ``usegrant.token.failed``
(both failure outcomes), about
the resource ``usegrant.client.<client id>``, with the row (less ids) as its payload.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from prefect.events import emit_event

from usegrant_flows.api.models import AccessToken
from usegrant_flows.rotation.fleet import RotationTarget
from usegrant_flows.rotation.holdings import soonest
from usegrant_flows.rotation.policy import (
    RotationAction,
    RotationResult,
    effective_expiry,
    explain_error,
    fallback_action,
)
from usegrant_flows.sinks.base import SinkError, TokenSink

__all__ = ["ReadBackError", "deliver", "emit", "failed", "fresh", "preflight", "row"]


def sink_metadata(target: RotationTarget) -> dict[str, str]:
    """What sinks are told about the target (never a secret): remote sinks mark it."""
    return {
        "providerId": str(target.provider_id),
        "clientId": str(target.client_id),
        "target": target.name,
    }


async def preflight(target: RotationTarget, sinks: Sequence[TokenSink]) -> RotationResult | None:
    """Preflight every sink; return the ``failed`` row of the first refusal, or ``None``.

    Runs before any read or request: a sink that cannot take a token makes the target
    ``failed`` at no cost (a mint would spend a request for nothing).
    """
    metadata = sink_metadata(target)
    for sink in sinks:
        try:
            await sink.apreflight(metadata)
        except Exception as exc:
            return row(
                target,
                RotationAction.FAILED,
                error_class=type(exc).__name__,
                reason=f"{sink.describe()}: {reason(target, exc)}"[:300],
            )
    return None


def row(target: RotationTarget, action: RotationAction, **fields: Any) -> RotationResult:
    """Return the target's result row with ``action`` and the given fields."""
    return RotationResult(
        target=target.name,
        provider_id=str(target.provider_id),
        client_id=str(target.client_id),
        action=action,
        **fields,
    )


def fresh(
    target: RotationTarget, fingerprint: str | None, expires_at: datetime | None
) -> RotationResult:
    """Return the ``fresh`` row of the token every sink of the target holds."""
    return row(target, RotationAction.FRESH, fingerprint=fingerprint, expires_at=expires_at)


def reason(target: RotationTarget, exc: BaseException) -> str:
    """Return the one-line reason of ``exc`` for ``target``."""
    return explain_error(
        exc,
        credentials=target.credentials,
        provider_id=target.provider_id,
        client_id=target.client_id,
    )


def failed(
    target: RotationTarget, exc: BaseException, held: Sequence[AccessToken | None]
) -> RotationResult:
    """Return the row of a target that got no new token: why, and what its sinks keep."""
    token = soonest(held)
    return row(
        target,
        fallback_action(held),
        fingerprint=token.fingerprint if token else None,
        expires_at=effective_expiry(token) if token else None,
        error_class=type(exc).__name__,
        reason=reason(target, exc),
    )


async def deliver(
    target: RotationTarget,
    token: AccessToken,
    sinks: Sequence[TokenSink],
    held: Sequence[AccessToken | None],
    *,
    only: Sequence[int] | None = None,
    action: RotationAction = RotationAction.MINTED,
) -> tuple[RotationResult, int]:
    """Write ``token`` to the sinks, read each readable one back; a failure keeps the old.

    A readable sink counts as delivered only when reading it back right after the write
    gives the token just written (a Vault KV version, Secrets Manager's ``AWSCURRENT``,
    an SSM parameter's latest version, a file as consumers read it). A store that takes
    a write and then serves something else (a secret scheduled for deletion) fails it.

    Args:
        target: The target.
        token: The token (just minted, or the one a repair copies).
        sinks: The target's sinks.
        held: What each sink held before.
        only: Indexes of the sinks to write (a repair); default every sink. The others
            already hold ``token``.
        action: The outcome when every write lands: ``minted`` or ``repaired``.

    Returns:
        The row, and the bitmask of the sinks that now hold ``token`` (for the record).
    """
    metadata = sink_metadata(target)
    chosen = set(range(len(sinks)) if only is None else only)
    written: list[str] = []
    failed: list[str] = []
    still_held: list[AccessToken | None] = []
    first_error: BaseException | None = None
    holding = 0
    for index, (sink, old) in enumerate(zip(sinks, held, strict=True)):
        if index not in chosen:
            holding |= 1 << index
            continue
        try:
            await sink.awrite(token, metadata)
            if sink.readable:
                await _read_back(sink, token)
        except Exception as exc:
            failed.append(sink.describe())
            still_held.append(old if not isinstance(exc, ReadBackError) else exc.held)
            first_error = first_error or exc
        else:
            written.append(sink.describe())
            holding |= 1 << index
    fields: dict[str, Any] = {
        "fingerprint": token.fingerprint,
        "expires_at": effective_expiry(token),
        "sinks_written": tuple(written),
        "sinks_failed": tuple(failed),
    }
    if first_error is None:
        return row(target, action, **fields), holding
    outcome = fallback_action(still_held)
    note = (
        "; the failed sinks keep their valid old token"
        if outcome is RotationAction.FAILED_BUT_VALID
        else ""
    )
    result = row(
        target,
        outcome,
        error_class=type(first_error).__name__,
        reason=f"{failed[0]}: {reason(target, first_error)}{note}"[:300],
        **fields,
    )
    return result, holding


class ReadBackError(SinkError):
    """Raised when a sink, read right after a write, does not give the token written."""

    def __init__(self, message: str, held: AccessToken | None) -> None:
        super().__init__(message)
        self.held = held


async def _read_back(sink: TokenSink, token: AccessToken) -> None:
    try:
        back = await sink.aread()
    except Exception as exc:
        raise ReadBackError(
            f"the write was accepted but reading it back failed ({type(exc).__name__}): "
            "consumers cannot read it",
            None,
        ) from None
    if back is None or back.fingerprint != token.fingerprint:
        what = f"token {back.fingerprint}" if back is not None else "no token"
        raise ReadBackError(
            f"the write was accepted but the sink reads back {what}, not token {token.fingerprint}",
            back,
        )


def emit(result: RotationResult) -> None:
    """Emit the target's ``usegrant.token.<outcome>`` event (the row, never a token)."""
    kind = {
        RotationAction.MINTED: "minted",
        RotationAction.FRESH: "fresh",
        RotationAction.REPAIRED: "repaired",
    }.get(result.action, "failed")
    payload = result.model_dump(mode="json", exclude={"target", "provider_id", "client_id"})
    emit_event(
        event=f"usegrant.token.{kind}",
        resource={
            "prefect.resource.id": f"usegrant.client.{result.client_id}",
            "prefect.resource.name": result.target,
            "usegrant.provider-id": result.provider_id,
            "usegrant.target": result.target,
        },
        payload=payload,
    )
