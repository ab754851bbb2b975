"""Failures are heard: Prefect automations on a fleet's ``usegrant.token.*`` events.

:func:`fleet_automations` builds, for a fleet:

* one **reactive** automation, ``usegrant <fleet>: a token failed``: any
  ``usegrant.token.failed`` event of one of the fleet's targets sends a notification
  naming the target and the one-line reason;
* one reactive automation, ``usegrant <fleet>: a token is fresh again``: a target that
  failed and is then heard again (``minted``, ``fresh`` or ``repaired``) sends a second
  notification, so a failure is closed in the same channel;
* one **proactive** automation per target, ``usegrant <fleet>/<target>: quiet``: when no
  ``usegrant.token.minted``, ``.fresh`` or ``.repaired`` event of that target arrives
  within its window, the renewer has stopped (no worker, a paused deployment, a crash
  loop) and a notification says so. Once the target is heard again it re-arms. Its
  ``actions_on_resolve`` notification ("rotated again") is sent by servers that resolve
  single-event automations (Prefect Cloud); the open-source server (3.x) fires only on
  trigger, so there the previous automation closes a failure, and a quiet target's
  first new event simply stops the alerts.

The window a target's policy implies (:func:`quiet_window`): a token is valid from its
refresh point until it expires; three quarters of that span (at least 60 s) leaves a
quarter to act between the alert and the expiry, in the worst case where the last run
found the token fresh just before its refresh point. For the defaults (3600 s tokens,
refresh at 2/3) that is 900 s: any schedule under 15 minutes keeps a healthy target
quiet.

:func:`aapply_automations` creates them, or updates those of the same name, so running it
again changes nothing (idempotent by name). The notification goes through a notification
block the operator saved (a Slack or Microsoft Teams webhook, an email server, a custom
webhook...), named ``<block-type-slug>/<block-name>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from uuid import UUID

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.rotation.fleet import RotationTarget
from usegrant_flows.rotation.plan import API_DEFAULT_EXPIRES_IN

if TYPE_CHECKING:
    from prefect.events.schemas.automations import AutomationCore

__all__ = [
    "AUTOMATION_PREFIX",
    "HEARD_EVENTS",
    "AppliedAutomation",
    "aapply_automations",
    "fleet_automations",
    "quiet_window",
]

#: Every automation made here is named ``usegrant <fleet>...``.
AUTOMATION_PREFIX = "usegrant "
#: The events that say a target is looked after.
HEARD_EVENTS = frozenset(
    {"usegrant.token.minted", "usegrant.token.fresh", "usegrant.token.repaired"}
)
#: Shortest quiet window, in seconds (Prefect's proactive triggers need at least 10 s).
MIN_WINDOW = 60.0
_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
_PAGE = 200


def quiet_window(target: RotationTarget) -> timedelta:
    """Return how long a target may go unheard before its proactive alert fires.

    Three quarters of the span from the token's refresh point (jitter ignored) to its
    expiry, at least 60 s.

    Example:
        >>> t = RotationTarget(name="a", provider_id="00000000-0000-4000-8000-000000000001",
        ...                    client_id="00000000-0000-4000-8000-000000000002",
        ...                    sinks=[{"type": "file", "path": "/tmp/a"}])
        >>> quiet_window(t)
        datetime.timedelta(seconds=900)
    """
    lifetime = target.expires_in or API_DEFAULT_EXPIRES_IN
    expiry = _EPOCH + timedelta(seconds=lifetime)
    policy = target.policy.model_copy(update={"jitter": 0.0})
    point = policy.refresh_point(_EPOCH, expiry, identity=target.identity)
    span = (expiry - point).total_seconds()
    return timedelta(seconds=max(MIN_WINDOW, round(span * 0.75)))


def _checked_window(window: float | None) -> timedelta | None:
    if window is None:
        return None
    if not window >= 10:
        raise ConfigurationError(f"window must be >= 10 seconds, got {window}")
    return timedelta(seconds=window)


def fleet_automations(
    fleet: str,
    targets: Sequence[RotationTarget],
    *,
    notify_block_id: UUID,
    window: float | None = None,
) -> list[AutomationCore]:
    """Build the fleet's automations (see the module docstring); nothing is sent.

    Args:
        fleet: The fleet's name (its block's), in the automations' names.
        targets: The fleet's targets (at least one).
        notify_block_id: The notification block document's id.
        window: Seconds every target may go unheard (>= 10); default each target's
            :func:`quiet_window`.

    Raises:
        ConfigurationError: No targets, or a window under 10 s.
    """
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    if not targets:
        raise ConfigurationError(f"fleet {fleet!r} has no targets to alert on")
    fixed = _checked_window(window)
    names = sorted(t.name for t in targets)
    automations = [
        AutomationCore(
            name=f"{AUTOMATION_PREFIX}{fleet}: a token failed",
            description=f"A target of UseGrant fleet {fleet!r} ended failed or failed_but_valid.",
            trigger=EventTrigger(
                expect={"usegrant.token.failed"},
                match={"prefect.resource.id": "usegrant.client.*", "usegrant.target": names},
                posture=Posture.Reactive,
                threshold=1,
                within=timedelta(0),
            ),
            actions=[
                SendNotification(
                    block_document_id=notify_block_id,
                    subject=f"UseGrant fleet {fleet}: a token failed",
                    body=(
                        "Target {{ event.resource['usegrant.target'] }} ended "
                        "{{ event.payload['action'] }}: {{ event.payload['reason'] }}"
                    ),
                )
            ],
        )
    ]
    automations.append(
        AutomationCore(
            name=f"{AUTOMATION_PREFIX}{fleet}: a token is fresh again",
            description=f"A target of UseGrant fleet {fleet!r} that failed was heard again.",
            trigger=EventTrigger(
                after={"usegrant.token.failed"},
                expect=set(HEARD_EVENTS),
                for_each={"usegrant.target"},
                match={"prefect.resource.id": "usegrant.client.*", "usegrant.target": names},
                posture=Posture.Reactive,
                threshold=1,
                within=timedelta(0),
            ),
            actions=[
                SendNotification(
                    block_document_id=notify_block_id,
                    subject=f"UseGrant fleet {fleet}: a token is fresh again",
                    body=(
                        "Target {{ event.resource['usegrant.target'] }} is "
                        "{{ event.payload['action'] }} again after a failure."
                    ),
                )
            ],
        )
    )
    for target in targets:
        within = fixed or quiet_window(target)
        automations.append(
            AutomationCore(
                name=f"{AUTOMATION_PREFIX}{fleet}/{target.name}: quiet",
                description=(
                    f"No minted, fresh or repaired event of UseGrant target {target.name!r} "
                    f"within {within.total_seconds():g} s: its rotation has stopped."
                ),
                trigger=EventTrigger(
                    expect=set(HEARD_EVENTS),
                    match={
                        "prefect.resource.id": f"usegrant.client.{target.client_id}",
                        "usegrant.target": target.name,
                    },
                    posture=Posture.Proactive,
                    threshold=1,
                    within=within,
                ),
                actions=[
                    SendNotification(
                        block_document_id=notify_block_id,
                        subject=f"UseGrant target {target.name} is not being rotated",
                        body=(
                            f"No rotation of target {target.name} (fleet {fleet}) was heard "
                            f"for {within.total_seconds():g} s: its token will expire "
                            "unless a rotation runs."
                        ),
                    )
                ],
                actions_on_resolve=[
                    SendNotification(
                        block_document_id=notify_block_id,
                        subject=f"UseGrant target {target.name} is rotated again",
                        body=f"Target {target.name} (fleet {fleet}) was heard again.",
                    )
                ],
            )
        )
    return automations


@dataclass(frozen=True)
class AppliedAutomation:
    """One automation as :func:`aapply_automations` left it.

    Attributes:
        name: Its name.
        id: Its id in the Prefect server.
        created: True when created now, False when an existing one was updated.
    """

    name: str
    id: UUID
    created: bool


async def aapply_automations(automations: Sequence[AutomationCore]) -> list[AppliedAutomation]:
    """Create each automation, or update the one of the same name (idempotent).

    One read of the existing automations per 200, then one call per automation. Should several
    automations already share a name, the first is updated and the others are left.
    """
    from prefect.client.orchestration import get_client

    applied: list[AppliedAutomation] = []
    async with get_client() as client:
        existing: dict[str, Any] = {}
        offset = 0
        while True:
            page = await client.read_automations(limit=_PAGE, offset=offset)
            for seen in page:
                existing.setdefault(seen.name, seen)
            if len(page) < _PAGE:
                break
            offset += _PAGE
        for automation in automations:
            found = existing.get(automation.name)
            if found is None:
                new_id = await client.create_automation(automation)
                applied.append(AppliedAutomation(automation.name, new_id, True))
            else:
                await client.update_automation(found.id, automation)
                applied.append(AppliedAutomation(automation.name, found.id, False))
    return applied
