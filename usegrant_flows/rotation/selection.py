"""What a deployment run may choose: a saved fleet, and targets in it by name.

A deployment's parameters come from whoever may start a run (the UI's custom-run form,
``prefect deployment run --params``). They only name what an operator saved: a
``UseGrant Fleet`` block and targets in it. This module turns those names into targets,
and refuses, in one line, a fleet that is not a saved block (a fleet given inline would
let a run aim tokens anywhere) and a target name the fleet does not have.

Example:
    >>> from usegrant_flows.rotation.fleet_block import UseGrantFleet
    >>> fleet = UseGrantFleet.model_validate({"targets": [{
    ...     "name": "aws", "provider_id": "00000000-0000-4000-8000-000000000001",
    ...     "client_id": "00000000-0000-4000-8000-000000000002",
    ...     "sinks": [{"type": "secret-block", "secret_block_name": "aws"}]}]})
    >>> [t.name for t in select_targets(fleet.targets, ["aws"], fleet="prod")]
    ['aws']
    >>> select_targets(fleet.targets, ["gcp"], fleet="prod")
    Traceback (most recent call last):
    ...
    usegrant_flows.api.errors.ConfigurationError: fleet 'prod' has no target 'gcp'; its targets: aws
"""

from __future__ import annotations

from collections.abc import Sequence

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.api.models import DEFAULT_EXPIRES_IN
from usegrant_flows.rotation.fleet import RotationTarget
from usegrant_flows.rotation.fleet_block import UseGrantFleet

__all__ = ["saved_fleet_name", "select_targets", "shortened"]

#: Most characters of the fleet's target names listed in an error.
MAX_LISTED = 240


def saved_fleet_name(fleet: object) -> str:
    """Return the name of a saved fleet block; refuse a fleet given inline.

    Raises:
        ConfigurationError: When ``fleet`` was not loaded from a saved block (a run's
            parameters gave its targets and sinks themselves).
    """
    name = getattr(fleet, "_block_document_name", None)
    if not isinstance(fleet, UseGrantFleet) or not name or getattr(fleet, "_is_anonymous", False):
        given = (
            "a fleet given inline"
            if isinstance(fleet, (dict, UseGrantFleet))
            else (f"a {type(fleet).__name__}")
        )
        raise ConfigurationError(
            "fleet must be a saved UseGrant Fleet block, chosen by name (the UI's block "
            'picker, or {"$ref": {"block_document_slug": "usegrant-fleet/NAME"}}); '
            f"got {given}"
        )
    return str(name)


def _listing(names: Sequence[str]) -> str:
    shown: list[str] = []
    size = 0
    for name in names:
        size += len(name) + 2
        if size > MAX_LISTED:
            return f"{', '.join(shown)} and {len(names) - len(shown)} more"
        shown.append(name)
    return ", ".join(shown) or "none"


def select_targets(
    targets: Sequence[RotationTarget], names: Sequence[str], *, fleet: str
) -> list[RotationTarget]:
    """Return the fleet's targets named in ``names`` (fleet order); all when empty.

    Args:
        targets: The fleet's targets.
        names: Target names chosen by the run; empty: every target.
        fleet: The fleet block's name, for the message.

    Raises:
        ConfigurationError: One line naming the first unknown name and listing the
            fleet's names (the first ones, for a large fleet).
    """
    if not names:
        return list(targets)
    known = {target.name for target in targets}
    for name in names:
        if name not in known:
            listed = _listing([target.name for target in targets])
            raise ConfigurationError(
                f"fleet {fleet!r} has no target {str(name)[:100]!r}; its targets: {listed}"
            )
    wanted = set(names)
    return [target for target in targets if target.name in wanted]


def shortened(target: RotationTarget, expires_in: int) -> RotationTarget:
    """Return ``target`` with a shorter token lifetime; ``0`` keeps the target's own.

    Args:
        target: The fleet's target.
        expires_in: Seconds, less than the target's lifetime (its ``expires_in``, or the
            API's 3600 when it sets none); 0: unchanged.

    Raises:
        ConfigurationError: When ``expires_in`` would not shorten the lifetime.
    """
    if expires_in == 0:
        return target
    lifetime = target.expires_in or DEFAULT_EXPIRES_IN
    if not 0 < expires_in < lifetime:
        raise ConfigurationError(
            f"expires_in may only shorten target {target.name!r}'s token lifetime: "
            f"1..{lifetime - 1} seconds, or 0 for its own {lifetime}; got {expires_in}"
        )
    return target.model_copy(update={"expires_in": expires_in})
