"""Keep a fleet of UseGrant tokens fresh in their sinks: the scheduled deployment."""

from __future__ import annotations

from typing import Annotated

from prefect import State, flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.states import Failed
from pydantic import Field

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.rotation.fleet import RotationTarget
from usegrant_flows.rotation.fleet_file import load_fleet_file
from usegrant_flows.rotation.plan import aplan_fleet
from usegrant_flows.rotation.policy import RotationResult, summarize_failures
from usegrant_flows.rotation.tasks import (
    ARTIFACT_KEY,
    publish_results,
    rotate_fleet,
    summary_line,
)


@flow(name="rotate-tokens", persist_result=False, log_prints=False)
async def rotate_tokens(
    targets: list[RotationTarget] | None = None,
    targets_file: str | None = None,
    concurrency: Annotated[int, Field(ge=1, le=1000)] = 32,
    force: bool = False,
    batch_size: Annotated[int, Field(ge=1, le=5000)] = 250,
    spread_seconds: Annotated[float, Field(ge=0, le=86400)] = 0,
) -> list[RotationResult] | State:
    """Mint the tokens that are due and write them to their sinks; skip the fresh ones.

    The run fails, naming the targets, when any target ends ``failed`` (no valid token
    where it should be); the other targets are still delivered. The run's table
    artifact ``usegrant-rotation`` has one row per target, and every target emits a
    ``usegrant.token.minted`` / ``.fresh`` / ``.failed`` event.

    Args:
        targets: Targets given directly (provider/client ids, options, sinks, policy).
        targets_file: Path of a YAML or JSON fleet file, relative to the working
            directory; its targets are added to ``targets``.
        concurrency: Targets minted at once, 1..1000.
        force: Mint every target, even those whose sinks hold fresh tokens.
        batch_size: Targets per Prefect task, 1..5000 (a task per target would cost
            tens of milliseconds each).
        spread_seconds: Spread the refreshes due in this run over this many seconds
            (about the schedule interval), each target at a fixed offset; 0: at once.
            Tokens that are missing or about to expire go at once.

    Before any request the fleet is planned against its keys' request budgets
    (``max_requests_per_hour`` of each credentials block): a fleet that needs more mints
    per hour than a budget sustains fails the run with the numbers and what to change.
    """
    logger = get_run_logger()
    try:
        fleet = list(targets or [])
        if targets_file:
            fleet += load_fleet_file(targets_file)
        if not fleet:
            raise ConfigurationError("no targets: give `targets` or `targets_file`")
        plan = await aplan_fleet(fleet)
        results = await rotate_fleet(
            fleet,
            concurrency=concurrency,
            force=force,
            batch_size=batch_size,
            spread=spread_seconds,
            plan=plan,
        )
    except ConfigurationError as exc:
        logger.error("%s", exc)
        await acreate_markdown_artifact(
            markdown=f"### UseGrant token rotation did not start\n\n{exc}",
            key=ARTIFACT_KEY,
            description="UseGrant token rotation",
        )
        return Failed(message=str(exc))
    await publish_results(results, plan=plan)
    logger.info("%s", summary_line(results))
    message = summarize_failures(results)
    if message:
        logger.error("%s", message)
        return Failed(message=message)
    return results
