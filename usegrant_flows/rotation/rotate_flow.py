"""Keep a fleet of UseGrant tokens fresh in their sinks: the scheduled deployment.

Three flows share one body:

* ``rotate_tokens`` (flow ``rotate-tokens``, deployment ``rotate-tokens``): what a
  deployment run may ask, names only: a saved ``UseGrant Fleet`` block, target names in
  it (``target_names``), ``force`` (:mod:`usegrant_flows.rotation.selection`). Targets
  bound to a work queue go to child runs of ``rotate-tokens-on-host`` on that queue.
* ``rotate_tokens_on_host`` (flow ``rotate-tokens``, deployment
  ``rotate-tokens-on-host``): such a child. It takes the fleet, ``target_names`` and
  its ``queue``, and runs only on that queue.
* ``rotate_targets`` (flow ``rotate-targets``): for your own Python code, not deployed.
  Targets inline, from a fleet file or a fleet block; no dispatch to work queues.

Every run fails, naming the targets, when any target ends ``failed`` (no valid token
where it should be); the other targets are still delivered. When some targets end
``failed_but_valid`` (their sinks keep a valid old token), the run is Completed under the
name ``Degraded``, naming them, so the UI tells it from a clean run. The run's table
artifact ``usegrant-rotation`` has one row per target, and every target emits a
``usegrant.token.minted`` / ``.fresh`` / ``.repaired`` / ``.failed`` event. Before any
request the fleet is planned against its keys' request budgets (``max_requests_per_hour`` of each
credentials block): a fleet that needs more mints per hour than a budget sustains fails
the run with the numbers and what to change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

from prefect import State, flow, get_run_logger
from prefect.context import FlowRunContext
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
from usegrant_flows.rotation.fleet_block import UseGrantFleet, aload_fleet
from usegrant_flows.rotation.fleet_file import load_fleet_file
from usegrant_flows.rotation.params import (
    BatchSize,
    Concurrency,
    QueueTimeout,
    Spread,
    labelled,
    publish,
)
from usegrant_flows.rotation.plan import aplan_fleet
from usegrant_flows.rotation.policy import (
    DEGRADED,
    RotationAction,
    RotationResult,
    summarize_failures,
)
from usegrant_flows.rotation.selection import (
    saved_fleet_name,
    select_targets,
)
from usegrant_flows.rotation.split import split_fleet
from usegrant_flows.rotation.tasks import (
    ARTIFACT_KEY,
    publish_results,
    refuse_run,
    rotate_fleet,
    summary_line,
)

__all__ = ["rotate_targets", "rotate_tokens", "rotate_tokens_on_host"]

_FLEET = "The saved UseGrant Fleet block to rotate (usegrant-flows fleet push)."
_TARGETS = "Names of targets in the fleet; empty: every target."
_FORCE = "Mint every chosen target, even those whose sinks hold fresh tokens."
_CONCURRENCY = "Targets minted at once, 1..1000."
_BATCH = "Targets per Prefect task, 1..5000 (a task per target costs tens of ms)."
_SPREAD = (
    "Spread the refreshes due in this run over this many seconds (about the schedule "
    "interval), each target at a fixed offset; 0: at once. Missing or nearly expired "
    "tokens go at once."
)
_QUEUE_TIMEOUT = (
    "How long a work queue's child run may take, from creation to its end, in seconds "
    "(> 0). A queue no worker picks up in time is cancelled and its targets fail, named."
)


@flow(name="rotate-tokens", persist_result=False, log_prints=False)
async def rotate_tokens(
    fleet: Any = labelled(..., "Fleet", _FLEET),
    target_names: list[str] = labelled([], "Targets", _TARGETS),
    force: bool = labelled(False, "Force", _FORCE),
    concurrency: Concurrency = labelled(32, "Concurrency", _CONCURRENCY),
    batch_size: BatchSize = labelled(250, "Batch size", _BATCH),
    spread_seconds: Spread = labelled(0, "Spread (seconds)", _SPREAD),
    queue_timeout_seconds: QueueTimeout = labelled(
        600, "Work queue timeout (seconds)", _QUEUE_TIMEOUT
    ),
) -> list[RotationResult] | State:
    """Mint the chosen targets of a saved fleet that are due; skip the fresh ones.

    Targets that name a ``work_queue`` are rotated by a worker of that queue: each
    queue's targets go to one child run of ``rotate-tokens-on-host`` on that queue (by
    name: the fleet and target names), and the run waits for them (at most
    ``queue_timeout_seconds``) and gathers their rows into its artifact.

    Args:
        fleet: A saved ``UseGrant Fleet`` block (``usegrant-flows fleet push``); a fleet
            given inline is refused.
        target_names: Names of targets in the fleet; empty: all. An unknown name fails
            the run in one line listing the fleet's names.
        force: Mint every chosen target, even those whose sinks hold fresh tokens.
        concurrency: Targets minted at once, 1..1000.
        batch_size: Targets per Prefect task, 1..5000.
        spread_seconds: Spread the due refreshes over this many seconds (0: at once).
        queue_timeout_seconds: How long a work queue's child run may take (> 0).
    """
    options = _options(force, concurrency, batch_size, spread_seconds)
    try:
        name = saved_fleet_name(fleet)
        chosen = select_targets(fleet.targets, target_names, fleet=name)
    except ConfigurationError as exc:
        return await _refused(exc)
    reference = {"$ref": {"block_document_id": str(fleet._block_document_id)}}
    return await _rotate(
        chosen,
        options=options,
        queue=None,
        dispatch={"fleet": reference, **options, "timeout": queue_timeout_seconds},
    )


@flow(name="rotate-tokens", persist_result=False, log_prints=False)
async def rotate_tokens_on_host(
    fleet: Any = labelled(..., "Fleet", _FLEET),
    queue: Annotated[str, Field(min_length=1)] = labelled(
        ..., "Work queue", "The work queue this run was sent to; it runs only there."
    ),
    target_names: list[str] = labelled([], "Targets", _TARGETS),
    force: bool = labelled(False, "Force", _FORCE),
    concurrency: Concurrency = labelled(32, "Concurrency", _CONCURRENCY),
    batch_size: BatchSize = labelled(250, "Batch size", _BATCH),
    spread_seconds: Spread = labelled(0, "Spread (seconds)", _SPREAD),
) -> list[RotationResult] | State:
    """Rotate a work queue's targets of a saved fleet: the child run of ``rotate-tokens``.

    It rotates only the named targets bound to ``queue``, and only when the run really
    is on that queue: a run started elsewhere with another queue's name fails.

    Args:
        fleet: A saved ``UseGrant Fleet`` block.
        queue: The work queue this run was sent to.
        target_names: Names of the queue's targets in the fleet; empty: those bound to
            this queue or to none.
        force: Mint every chosen target, even those whose sinks hold fresh tokens.
        concurrency: Targets minted at once, 1..1000.
        batch_size: Targets per Prefect task, 1..5000.
        spread_seconds: Spread the due refreshes over this many seconds (0: at once).
    """
    options = _options(force, concurrency, batch_size, spread_seconds)
    try:
        name = saved_fleet_name(fleet)
        context = FlowRunContext.get()
        actual = context.flow_run.work_queue_name if context and context.flow_run else None
        if actual != queue:
            raise ConfigurationError(
                f"this run is on work queue {actual!r}, not {queue[:100]!r}: a host's "
                "targets are rotated only by that queue's worker"
            )
        chosen = select_targets(fleet.targets, target_names, fleet=name)
        if not target_names:  # the targets this queue may rotate
            chosen = [target for target in chosen if target.work_queue in (None, queue)]
    except ConfigurationError as exc:
        return await _refused(exc)
    return await _rotate(chosen, options=options, queue=queue, dispatch=None)


publish(rotate_tokens, fleet=UseGrantFleet)
publish(rotate_tokens_on_host, fleet=UseGrantFleet)


@flow(name="rotate-targets", persist_result=False, log_prints=False)
async def rotate_targets(
    targets: list[RotationTarget] | None = None,
    targets_file: str | None = None,
    fleet_block: str | None = None,
    concurrency: Concurrency = 32,
    force: bool = False,
    batch_size: BatchSize = 250,
    spread_seconds: Spread = 0,
) -> list[RotationResult] | State:
    """Rotate targets given by your own Python code (not a deployment's parameters).

    Python callers are operators: targets may come inline, from a fleet file or from a
    fleet block (all added up). Do not deploy this flow: whoever may run a deployment
    of it could aim tokens anywhere. Targets bound to a work queue fail here, named:
    only the ``rotate-tokens`` deployment dispatches to work queues.

    Args:
        targets: Targets given directly.
        targets_file: Path of a YAML or JSON fleet file.
        fleet_block: Name of a saved ``UseGrant Fleet`` block.
        concurrency: Targets minted at once, 1..1000.
        force: Mint every target, even those whose sinks hold fresh tokens.
        batch_size: Targets per Prefect task, 1..5000.
        spread_seconds: Spread the due refreshes over this many seconds (0: at once).
    """
    options = _options(force, concurrency, batch_size, spread_seconds)
    try:
        fleet = list(targets or [])
        if targets_file:
            fleet += load_fleet_file(targets_file)
        if fleet_block:
            fleet += await aload_fleet(fleet_block)
        if not fleet:
            raise ConfigurationError("no targets: give `targets`, `targets_file` or `fleet_block`")
    except ConfigurationError as exc:
        return await _refused(exc)
    return await _rotate(fleet, options=options, queue=None, dispatch=None)


def _options(force: bool, concurrency: int, batch_size: int, spread: float) -> dict[str, Any]:
    return {
        "force": force,
        "concurrency": concurrency,
        "batch_size": batch_size,
        "spread_seconds": spread,
    }


async def _refused(exc: ConfigurationError) -> State:
    return await refuse_run(
        exc,
        title="UseGrant token rotation did not start",
        key=ARTIFACT_KEY,
        description="UseGrant token rotation",
    )


async def _rotate(
    fleet: list[RotationTarget],
    *,
    options: dict[str, Any],
    queue: str | None,
    dispatch: dict[str, Any] | None,
) -> list[RotationResult] | State:
    """Plan, rotate (dispatching work queues' targets when allowed), report."""
    try:
        plan = await aplan_fleet(fleet)
        local, parts = await _split(fleet, queue=queue, dispatch=dispatch)
    except ConfigurationError as exc:
        return await _refused(exc)
    work: list[Awaitable[list[RotationResult]]] = list(parts)
    if local:
        work.insert(
            0,
            rotate_fleet(
                local,
                concurrency=options["concurrency"],
                force=options["force"],
                batch_size=options["batch_size"],
                spread=options["spread_seconds"],
                plan=plan,
            ),
        )
    results = [row for part in await asyncio.gather(*work) for row in part]
    if queue is not None:
        await publish_part(results, queue)
    await publish_results(results, plan=plan)
    get_run_logger().info("%s", summary_line(results))
    message = summarize_failures(results)
    if message:
        get_run_logger().error("%s", message)
        return Failed(message=message)
    degraded = summarize_failures(results, action=RotationAction.FAILED_BUT_VALID)
    if degraded:
        # Completed (the sinks hold valid tokens) but not clean: the UI shows the name.
        get_run_logger().warning("%s", degraded)
        return Completed(name=DEGRADED, message=degraded, data=results)
    return results


async def _split(
    fleet: list[RotationTarget], *, queue: str | None, dispatch: dict[str, Any] | None
) -> tuple[list[RotationTarget], list[Awaitable[list[RotationResult]]]]:
    """Return the run's own targets and the work that rotates (or refuses) the others."""
    split = split_fleet(fleet, on_queue=queue)
    if not split.queues:
        return split.local, []
    if queue is not None:  # a child never dispatches again (that could loop)
        why = f"but this run was dispatched to {queue!r}: not dispatched again"
        return split.local, _refuse_queues(
            split.queues, lambda other: f"names work queue {other!r}, {why}"
        )
    if dispatch is None:
        why = "only the rotate-tokens deployment dispatches to work queues"
        return split.local, _refuse_queues(
            split.queues, lambda other: f"work queue {other!r}: {why}"
        )
    deployment, refusal = await host_deployment(None)
    if deployment is None:
        return split.local, _refuse_queues(
            split.queues, lambda other: f"work queue {other!r}: {refusal}"
        )
    get_run_logger().info(
        "%d targets go to work queues %s (deployment %s)",
        split.dispatched,
        ", ".join(split.queues),
        deployment,
    )
    parameters = {key: value for key, value in dispatch.items() if key != "timeout"}
    return split.local, [
        dispatch_queues(
            split.queues,
            deployment=deployment,
            parameters=parameters,
            timeout=dispatch["timeout"],
        )
    ]


def _refuse_queues(
    queues: Mapping[str, list[RotationTarget]], reason: Callable[[str], str]
) -> list[Awaitable[list[RotationResult]]]:
    """The work of queues that are not dispatched: each target failed, with its reason."""
    rows = [row for name, targets in queues.items() for row in failed_rows(targets, reason(name))]
    return [_ready(rows)]


async def _ready(rows: list[RotationResult]) -> list[RotationResult]:
    return rows
