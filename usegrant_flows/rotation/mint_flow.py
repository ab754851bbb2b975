"""Mint one token of a saved fleet now: for ad-hoc runs from the UI (Run > Custom run).

The run names what the operator saved: a ``UseGrant Fleet`` block and one of its
targets; the token goes to that target's sinks, minted with its credentials. The only
choice about the token itself is a shorter lifetime than the target's.
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import State, flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.states import Failed
from pydantic import Field

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.api.models import MAX_EXPIRES_IN
from usegrant_flows.rotation.fleet_block import UseGrantFleet
from usegrant_flows.rotation.params import labelled, publish
from usegrant_flows.rotation.policy import RotationAction, RotationResult
from usegrant_flows.rotation.selection import (
    saved_fleet_name,
    select_targets,
    shortened,
)
from usegrant_flows.rotation.tasks import refuse_run, rotate_fleet

#: Key of the markdown artifact each run creates.
ARTIFACT_KEY = "usegrant-mint-token"


@flow(name="mint-token", persist_result=False, log_prints=False)
async def mint_token(
    fleet: Any = labelled(..., "Fleet", "The saved UseGrant Fleet block holding the target."),
    target: Annotated[str, Field(min_length=1, max_length=200)] = labelled(
        ..., "Target", "Name of the target in the fleet: its client, credentials and sinks."
    ),
    expires_in: Annotated[int, Field(ge=0, le=MAX_EXPIRES_IN)] = labelled(
        0,
        "Expires in (seconds)",
        "A shorter token lifetime than the target's, in seconds; 0: the target's own.",
    ),
) -> RotationResult | State:
    """Mint a token for one target of a saved fleet and write it to the target's sinks.

    The run fails with a one-line reason (unknown target, bad key, a sink that is not
    ours...) when the token did not reach every sink; what the sinks held before stays.

    Args:
        fleet: A saved ``UseGrant Fleet`` block; a fleet given inline is refused.
        target: The target's name in the fleet.
        expires_in: Token lifetime in seconds, less than the target's own; 0: the
            target's (its ``expires_in``, or the API's 3600).
    """
    logger = get_run_logger()
    try:
        name = saved_fleet_name(fleet)
        [chosen] = select_targets(fleet.targets, [target], fleet=name)
        if chosen.work_queue is not None:
            raise ConfigurationError(
                f"target {chosen.name!r} is rotated on work queue {chosen.work_queue!r}: "
                f'run rotate-tokens with targets ["{chosen.name}"] and force instead'
            )
        chosen = shortened(chosen, expires_in)
        [result] = await rotate_fleet([chosen], concurrency=1, force=True)
    except ConfigurationError as exc:
        return await refuse_run(
            exc,
            title=f"UseGrant token for target `{target[:200]}`: not minted",
            key=ARTIFACT_KEY,
            description="UseGrant mint-token run",
        )
    await acreate_markdown_artifact(
        markdown=result.to_markdown(), key=ARTIFACT_KEY, description="UseGrant mint-token run"
    )
    if result.action is not RotationAction.MINTED:
        message = f"token for target {chosen.name} not delivered: {result.reason}"
        logger.error("%s", message)
        return Failed(message=message)
    logger.info(
        "minted token %s (expires %s) -> %s",
        result.fingerprint,
        result.expires_at,
        ", ".join(result.sinks_written),
    )
    return result


publish(mint_token, fleet=UseGrantFleet)
