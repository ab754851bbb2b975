"""Keep a fleet of UseGrant tokens fresh in their sinks: the scheduled deployment."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Annotated, Any

from prefect import State, flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.states import Completed, Failed
from pydantic import Field

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.rotation.dispatch import (
    dispatch_queues,
    failed_rows,
    host_deployment,
    publish_part,
)
from usegrant_flows.rotation.fleet import RotationTarget
from usegrant_flows.rotation.fleet_block import aload_fleet
from usegrant_flows.rotation.fleet_file import load_fleet_file
from usegrant_flows.rotation.plan import FleetPlan, aplan_fleet
from usegrant_flows.rotation.policy import (
    DEGRADED,
    RotationAction,
    RotationResult,
    summarize_failures,
)
from usegrant_flows.rotation.split import split_fleet
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
    fleet_block: str | None = None,
    concurrency: Annotated[int, Field(ge=1, le=1000)] = 32,
    force: bool = False,
    batch_size: Annotated[int, Field(ge=1, le=5000)] = 250,
    spread_seconds: Annotated[float, Field(ge=0, le=86400)] = 0,
    queue_timeout_seconds: Annotated[float, Field(gt=0, le=86400)] = 600,
    host_deployment_name: str | None = None,
    dispatched_queue: str | None = None,
) -> list[RotationResult] | State:
    """Mint the tokens that are due and write them to their sinks; skip the fresh ones.

    The run fails, naming the targets, when any target ends ``failed`` (no valid token
    where it should be); the other targets are still delivered. When some targets end
    ``failed_but_valid`` (their sinks keep a valid old token), the run is Completed
    under the name ``Degraded``, naming them, so the UI tells it from a clean run. The
    run's table artifact ``usegrant-rotation`` has one row per target, and every target
    emits a ``usegrant.token.minted`` / ``.fresh`` / ``.repaired`` / ``.failed`` event.

    Args:
        targets: Targets given directly (provider/client ids, options, sinks, policy).
        targets_file: Path of a YAML or JSON fleet file, relative to the working
            directory; its targets are added to ``targets``.
        fleet_block: Name of a saved ``UseGrant Fleet`` block (``usegrant-flows fleet
            push``); its targets are added too.
        concurrency: Targets minted at once, 1..1000.
        force: Mint every target, even those whose sinks hold fresh tokens.
        batch_size: Targets per Prefect task, 1..5000 (a task per target would cost
            tens of milliseconds each).
        spread_seconds: Spread the refreshes due in this run over this many seconds
            (about the schedule interval), each target at a fixed offset; 0: at once.
            Tokens that are missing or about to expire go at once.
        queue_timeout_seconds: How long a work queue's child run may take, from its
            creation to its end, in seconds (> 0, default 600). A queue that no worker
            picks up in time is cancelled and its targets fail, named.
        host_deployment_name: ``"flow/deployment"`` that runs a work queue's targets;
            default: this run's deployment name + ``-on-host``.
        dispatched_queue: Set by the parent on a child run: the work queue it runs on.
            A child rotates the targets it was given and never dispatches again.

    Targets that name a ``work_queue`` are rotated by a worker of that queue: each
    queue's targets go to one child flow run on that queue, and the run waits for them
    (at most ``queue_timeout_seconds``) and gathers their rows into its artifact. A run
    outside a deployment cannot dispatch: such targets fail with the reason.

    Before any request the fleet is planned against its keys' request budgets
    (``max_requests_per_hour`` of each credentials block): a fleet that needs more mints
    per hour than a budget sustains fails the run with the numbers and what to change.
    """
    logger = get_run_logger()
    try:
        fleet = list(targets or [])
        if targets_file:
            fleet += load_fleet_file(targets_file)
        if fleet_block:
            fleet += await aload_fleet(fleet_block)
        if not fleet:
            raise ConfigurationError("no targets: give `targets`, `targets_file` or `fleet_block`")
        plan = await aplan_fleet(fleet)
        results = await _rotate_split(
            fleet,
            plan=plan,
            dispatched_queue=dispatched_queue,
            host_deployment_name=host_deployment_name,
            queue_timeout=queue_timeout_seconds,
            options={
                "concurrency": concurrency,
                "force": force,
                "batch_size": batch_size,
                "spread_seconds": spread_seconds,
            },
        )
    except ConfigurationError as exc:
        logger.error("%s", exc)
        await acreate_markdown_artifact(
            markdown=f"### UseGrant token rotation did not start\n\n{exc}",
            key=ARTIFACT_KEY,
            description="UseGrant token rotation",
        )
        return Failed(message=str(exc))
    if dispatched_queue is not None:
        await publish_part(results, dispatched_queue)
    await publish_results(results, plan=plan)
    logger.info("%s", summary_line(results))
    message = summarize_failures(results)
    if message:
        logger.error("%s", message)
        return Failed(message=message)
    degraded = summarize_failures(results, action=RotationAction.FAILED_BUT_VALID)
    if degraded:
        # Completed (the sinks hold valid tokens) but not clean: the UI shows the name.
        logger.warning("%s", degraded)
        return Completed(name=DEGRADED, message=degraded, data=results)
    return results


async def _rotate_split(
    fleet: list[RotationTarget],
    *,
    plan: FleetPlan,
    dispatched_queue: str | None,
    host_deployment_name: str | None,
    queue_timeout: float,
    options: dict[str, Any],
) -> list[RotationResult]:
    """Rotate the run's own targets while each work queue's run rotates its own.

    Returns:
        One row per target: the run's own first, then each queue's.
    """
    split = split_fleet(fleet, on_queue=dispatched_queue)
    refused: list[RotationResult] = []
    name: str | None = None
    if split.queues and dispatched_queue is not None:
        # A child never dispatches again (that could loop between queues).
        for queue, targets in split.queues.items():
            refused += failed_rows(
                targets,
                f"names work queue {queue!r}, but this run was dispatched to "
                f"{dispatched_queue!r}: not dispatched again",
            )
    elif split.queues:
        name, why = await host_deployment(host_deployment_name)
        if name is None:
            for queue, targets in split.queues.items():
                refused += failed_rows(targets, f"work queue {queue!r}: {why}")
        else:
            get_run_logger().info(
                "%d targets go to work queues %s (deployment %s)",
                split.dispatched,
                ", ".join(split.queues),
                name,
            )
    work: list[Awaitable[list[RotationResult]]] = []
    if split.local:
        work.append(
            rotate_fleet(
                split.local,
                concurrency=options["concurrency"],
                force=options["force"],
                batch_size=options["batch_size"],
                spread=options["spread_seconds"],
                plan=plan,
            )
        )
    if name is not None:
        work.append(
            dispatch_queues(
                split.queues, deployment=name, parameters=options, timeout=queue_timeout
            )
        )
    parts = await asyncio.gather(*work)  # own targets while the queues' runs go
    return [row for part in parts for row in part] + refused
