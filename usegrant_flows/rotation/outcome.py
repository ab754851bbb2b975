"""What one target's rotation ends in: its result row and its event.

The runner (:mod:`usegrant_flows.rotation.runner`) decides; this module builds the
row every outcome ends in (never a token), runs the sinks' preflight, delivers a token to
every sink, and emits the target's Prefect event: ``usegrant.token.minted``,
``usegrant.token.fresh``, or ``usegrant.token.failed`` (both failure outcomes), about
the resource ``usegrant.client.<client id>``, with the row (less ids) as its payload.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from usegrant_flows.sinks.base import TokenSink

__all__ = ["deliver", "emit", "failed", "fresh", "preflight", "row"]


async def preflight(target: RotationTarget, sinks: Sequence[TokenSink]) -> RotationResult | None:
    """Preflight every sink; return the ``failed`` row of the first refusal, or ``None``.

    Runs before any read or request: a sink that cannot take a token makes the target
    ``failed`` at no cost (a mint would spend a request for nothing).
    """
    for sink in sinks:
        try:
            await sink.apreflight()
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


def fresh(target: RotationTarget, held: Sequence[AccessToken | None]) -> RotationResult:
    """Return the ``fresh`` row: the held token that expires first names it."""
    token = soonest(held)
    return row(
        target,
        RotationAction.FRESH,
        fingerprint=token.fingerprint if token else None,
        expires_at=effective_expiry(token) if token else None,
    )


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
) -> RotationResult:
    """Write ``token`` to every sink; a failed write leaves that sink's old token."""
    metadata = {
        "providerId": str(target.provider_id),
        "clientId": str(target.client_id),
        "target": target.name,
    }
    written: list[str] = []
    failed: list[str] = []
    still_held: list[AccessToken | None] = []
    first_error: BaseException | None = None
    for sink, old in zip(sinks, held, strict=True):
        try:
            await sink.awrite(token, metadata)
        except Exception as exc:
            failed.append(sink.describe())
            still_held.append(old)
            first_error = first_error or exc
        else:
            written.append(sink.describe())
    fields: dict[str, Any] = {
        "fingerprint": token.fingerprint,
        "expires_at": effective_expiry(token),
        "sinks_written": tuple(written),
        "sinks_failed": tuple(failed),
    }
    if first_error is None:
        return row(target, RotationAction.MINTED, **fields)
    action = fallback_action(still_held)
    note = (
        "; the failed sinks keep their valid old token"
        if action is RotationAction.FAILED_BUT_VALID
        else ""
    )
    return row(
        target,
        action,
        error_class=type(first_error).__name__,
        reason=f"{failed[0]}: {reason(target, first_error)}{note}"[:300],
        **fields,
    )


def emit(result: RotationResult) -> None:
    """Emit the target's ``usegrant.token.<outcome>`` event (the row, never a token)."""
    kind = {
        RotationAction.MINTED: "minted",
        RotationAction.FRESH: "fresh",
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
