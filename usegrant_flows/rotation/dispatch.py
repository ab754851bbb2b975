"""Handing a work queue's targets to the worker of that queue, and gathering what it did.

A rotation run splits its fleet (:mod:`usegrant_flows.rotation.split`); each work queue's
targets become one child flow run (``run_deployment(..., as_subflow=True)``) of the
companion deployment ``<deployment>-on-host`` on that queue, so the worker polling it
(on the host whose files the targets write) rotates them. The child receives names
only: a reference to the saved fleet block, the target names and the queue. The
companion exists because the scheduled deployment has a concurrency limit of 1: a child
of that deployment would wait for the slot its own parent holds until the bound.

Results never travel as Prefect results (``persist_result=False``: nothing of a run is
stored). A child publishes its rows (fingerprints, never tokens) as a table artifact
with key :data:`PART_ARTIFACT_KEY`; the parent reads it through the Prefect client once
the child is final. Every wait is bounded: a child that no worker picks up within the
bound is cancelled and its targets are reported as such; a child still running at the
bound is left to finish, and its targets are reported as not confirmed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

from prefect.artifacts import acreate_table_artifact
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import ArtifactSort
from prefect.context import FlowRunContext
from prefect.deployments import arun_deployment
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled

from usegrant_flows.rotation.fleet import RotationTarget
from usegrant_flows.rotation.policy import RotationAction, RotationResult

__all__ = [
    "HOST_SUFFIX",
    "PART_ARTIFACT_KEY",
    "dispatch_queues",
    "failed_rows",
    "host_deployment",
    "publish_part",
]

#: Key of the table artifact in which a child run publishes its rows for its parent.
PART_ARTIFACT_KEY = "usegrant-rotation-part"
#: Suffix of the companion deployment that runs a queue's targets (no concurrency limit).
HOST_SUFFIX = "-on-host"
#: Seconds between two looks at a child run's state.
POLL_SECONDS = 2.0


def failed_rows(targets: Sequence[RotationTarget], reason: str) -> list[RotationResult]:
    """Return a ``failed`` row per target, all with the same one-line reason."""
    return [
        RotationResult(
            target=t.name,
            provider_id=str(t.provider_id),
            client_id=str(t.client_id),
            action=RotationAction.FAILED,
            error_class="DispatchError",
            reason=reason[:300],
        )
        for t in targets
    ]


async def host_deployment(explicit: str | None) -> tuple[str | None, str | None]:
    """Name the deployment that runs a queue's targets, or say why there is none.

    Args:
        explicit: ``"flow/deployment"`` given by the caller; ``None``: this run's own
            deployment with :data:`HOST_SUFFIX` (or itself when it is the companion).

    Returns:
        ``(name, None)``, or ``(None, reason)`` when this run is not a deployment run.
    """
    context = FlowRunContext.get()
    flow_run = context.flow_run if context is not None else None
    if flow_run is None or flow_run.deployment_id is None:
        return None, "this run is not a deployment run, so it cannot dispatch to a work queue"
    if explicit:
        return explicit, None
    async with get_client() as client:
        deployment = await client.read_deployment(flow_run.deployment_id)
        flow = await client.read_flow(deployment.flow_id)
    name = deployment.name
    return f"{flow.name}/{name if name.endswith(HOST_SUFFIX) else name + HOST_SUFFIX}", None


async def publish_part(results: Sequence[RotationResult], queue: str) -> None:
    """Publish a child run's rows (no token) for its parent to gather."""
    rows = [result.model_dump(mode="json") for result in results]
    await acreate_table_artifact(
        table=rows,
        key=PART_ARTIFACT_KEY,
        description=f"UseGrant rotation on work queue `{queue}`: {len(rows)} targets.",
    )


async def dispatch_queues(
    queues: Mapping[str, Sequence[RotationTarget]],
    *,
    deployment: str,
    parameters: Mapping[str, Any],
    timeout: float,
) -> list[RotationResult]:
    """Run each queue's targets as a child run on that queue; return every target's row.

    Args:
        queues: Each work queue's targets.
        deployment: ``"flow/deployment"`` of the children.
        parameters: The children's other parameters: ``fleet`` (a reference to the
            saved fleet block) and the options; ``target_names`` and ``queue`` are
            set here.
        timeout: Seconds a child may take from creation to a final state (> 0).

    Returns:
        One row per dispatched target, queue after queue.
    """
    async with get_client() as client:
        parts = await asyncio.gather(
            *(
                _run_queue(client, queue, list(targets), deployment, parameters, timeout)
                for queue, targets in queues.items()
            )
        )
    return [row for part in parts for row in part]


async def _run_queue(
    client: PrefectClient,
    queue: str,
    targets: list[RotationTarget],
    deployment: str,
    parameters: Mapping[str, Any],
    timeout: float,
) -> list[RotationResult]:
    # Names only: the child loads the same saved fleet and picks these targets.
    child_parameters = {
        **parameters,
        "target_names": [t.name for t in targets],
        "queue": queue,
    }
    try:
        flow_run = await arun_deployment(
            name=deployment,
            client=client,
            parameters=child_parameters,
            work_queue_name=queue,
            timeout=timeout,
            poll_interval=POLL_SECONDS,
            as_subflow=True,
            flow_run_name=f"on {queue}: {len(targets)} targets",
        )
    except ObjectNotFound:
        return failed_rows(
            targets, f"deployment {deployment!r} not found: deploy it (see prefect.yaml)"
        )
    state = flow_run.state
    if state is None or not state.is_final():
        return await _late(client, flow_run, queue, targets, timeout)
    rows = await _read_part(client, flow_run)
    found = {row.target: row for row in rows}
    why = f"the run on work queue {queue!r} ended {state.name} ({state.message or 'no message'})"
    return [found.get(t.name) or failed_rows([t], why)[0] for t in targets]


async def _late(
    client: PrefectClient,
    flow_run: FlowRun,
    queue: str,
    targets: list[RotationTarget],
    timeout: float,
) -> list[RotationResult]:
    """Report a child that is not final at the bound; cancel it if no worker took it."""
    state_type = flow_run.state.type if flow_run.state is not None else None
    if state_type is StateType.SCHEDULED:  # Scheduled, Late, AwaitingConcurrencySlot
        reason = f"no worker picked up work queue {queue!r} within {timeout:g} s"
        await client.set_flow_run_state(flow_run.id, Cancelled(message=reason), force=True)
        return failed_rows(targets, f"{reason}{await _queue_status(client, flow_run, queue)}")
    return failed_rows(
        targets,
        f"the run on work queue {queue!r} ({flow_run.name}) did not finish within "
        f"{timeout:g} s; it was left running",
    )


async def _queue_status(client: PrefectClient, flow_run: FlowRun, queue: str) -> str:
    """`` (queue NOT_READY, last polled never)``, or ``""`` when it cannot be read."""
    try:
        work_queue = await client.read_work_queue_by_name(
            queue, work_pool_name=flow_run.work_pool_name
        )
    except Exception:
        return ""
    polled = work_queue.last_polled.isoformat() if work_queue.last_polled else "never"
    status = work_queue.status.value if work_queue.status else "unknown"
    return f" (queue {status}, last polled {polled})"


async def _read_part(client: PrefectClient, flow_run: FlowRun) -> list[RotationResult]:
    """Read the rows a child published (its newest :data:`PART_ARTIFACT_KEY` artifact)."""
    artifacts = await client.read_artifacts(
        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[PART_ARTIFACT_KEY])),
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])),
        sort=ArtifactSort.CREATED_DESC,
        limit=1,
    )
    if not artifacts:
        return []
    data: Any = artifacts[0].data
    if isinstance(data, str):
        data = json.loads(data)
    if not isinstance(data, list):
        return []
    rows: list[RotationResult] = []
    for row in data:
        try:
            rows.append(RotationResult.model_validate(row))
        except ValueError:
            continue  # not a row of ours: the target is reported as without a result
    return rows
