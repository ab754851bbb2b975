"""Rotating a fleet of targets from Prefect: batched tasks and the result artifact.

A Prefect task costs tens of milliseconds of engine time, so a fleet is **not** one task
per target: targets are cut into batches (default 250), each batch is one async task,
and inside it targets run concurrently on asyncio. All batches of a flow run share one
:class:`~usegrant_flows.rotation.runner.FleetRunner` (concurrency limit, clients,
locks; see :mod:`usegrant_flows.rotation.runner` for what happens to each target).
Batch tasks must be awaited in the flow's event loop (call them, don't ``.submit()``
them), which :func:`rotate_fleet` does. Results are small rows, so memory stays flat in
the fleet size.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

from prefect import State, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed
from prefect.utilities.annotations import quote

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.api.redact import redact
from usegrant_flows.rotation.destinations import check_destinations
from usegrant_flows.rotation.fleet import RotationTarget
from usegrant_flows.rotation.plan import FleetPlan, check_fleet_plan
from usegrant_flows.rotation.policy import RotationAction, RotationResult
from usegrant_flows.rotation.runner import FleetRunner

__all__ = [
    "ARTIFACT_KEY",
    "MAX_ARTIFACT_ROWS",
    "publish_results",
    "refuse_run",
    "rotate_batch",
    "rotate_fleet",
    "summary_line",
]

#: Key of the table artifact every rotation run creates (newest version wins in the UI).
ARTIFACT_KEY = "usegrant-rotation"
#: Rows shown in the table artifact at most; failures come first. Every target still
#: gets its event.
MAX_ARTIFACT_ROWS = 2000


@task(
    name="rotate-batch",
    task_run_name="rotate {label}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
async def rotate_batch(
    targets: list[RotationTarget], runner: FleetRunner, label: str = "batch"
) -> list[RotationResult]:
    """Rotate a batch of targets concurrently; one result per target, in order.

    The batch claims all its targets at once in the Prefect server (one write, one read,
    when its first due target needs its lease) and its due targets are minted under that
    claim (:mod:`usegrant_flows.rotation.lease`).
    Before it gives them back, at once, it writes their delivery record, one call per
    changed chunk (:mod:`usegrant_flows.rotation.record`): the run that takes a target
    next finds the token in the sinks and the record naming it.

    Args:
        targets: The batch (typically 100..500 targets).
        runner: The flow run's shared :class:`FleetRunner`.
        label: Shown in the task run's name, e.g. ``"1-250 of 1000"``.
    """
    async with runner.leases.claim(t.identity for t in targets):
        results = list(await asyncio.gather(*(runner.rotate(t) for t in targets)))
        # Recorded before the claim goes: the next holder sees the token and its record.
        await runner.flush_record(targets)
    return results


async def rotate_fleet(
    targets: Sequence[RotationTarget],
    *,
    concurrency: int = 32,
    force: bool = False,
    batch_size: int = 250,
    lock_dir: str | Path | None = None,
    on_result: Callable[[RotationResult], None] | None = None,
    spread: float = 0.0,
    plan: FleetPlan | None = None,
) -> list[RotationResult]:
    """Rotate every target in batches of ``batch_size`` and return their results.

    Call it from an async flow. Never raises for a target's failure: each one is a row.
    Before anything else the fleet is planned against its keys' request budgets
    (:mod:`usegrant_flows.quota.limiter`); a fleet that does not fit is refused before any
    request.

    Args:
        targets: The fleet; names must be unique.
        concurrency: Targets in flight at once (>= 1).
        force: Mint even when the sinks hold fresh tokens.
        batch_size: Targets per Prefect task (>= 1).
        lock_dir: Directory of the per-target locks; default :func:`default_lock_dir`.
        on_result: Called with each result as it completes.
        spread: Seconds over which the refreshes due in this run are spread (fixed
            offset per target; see :class:`FleetRunner`); 0 mints them at once.
        plan: The fleet's plan when the caller made it already (:func:`aplan_fleet`).

    Raises:
        QuotaPlanError: When the fleet needs more mints per hour than a key's budget
            sustains (a ``ConfigurationError``; the message has the numbers).
        ConfigurationError: For duplicate names, two targets writing one destination, or
            a bad concurrency/batch size.
    """
    if batch_size < 1:
        raise ConfigurationError(f"batch_size must be >= 1, got {batch_size}")
    dupes = sorted(name for name, n in Counter(t.name for t in targets).items() if n > 1)
    if dupes:
        raise ConfigurationError(f"target names must be unique; repeated: {', '.join(dupes)}")
    check_destinations((t.name, t.sinks) for t in targets)
    if plan is None:
        from usegrant_flows.rotation.plan import aplan_fleet

        plan = await aplan_fleet(targets)
    check_fleet_plan(plan)
    runner = FleetRunner(
        concurrency=concurrency,
        force=force,
        lock_dir=lock_dir,
        on_result=on_result,
        spread=spread,
    )
    total = len(targets)
    try:
        batches = [
            rotate_batch(
                # quote: Prefect would otherwise walk every target of every batch
                # (about a millisecond per target) looking for upstream futures.
                cast("list[RotationTarget]", quote(list(targets[i : i + batch_size]))),
                runner,
                label=f"{i + 1}-{min(i + batch_size, total)} of {total}",
            )
            for i in range(0, total, batch_size)
        ]
        results: list[RotationResult] = []
        for batch in await asyncio.gather(*batches):
            results.extend(batch)
        return results
    finally:
        await runner.aclose()


_ORDER = {
    RotationAction.FAILED: 0,
    RotationAction.FAILED_BUT_VALID: 1,
    RotationAction.MINTED: 2,
    RotationAction.REPAIRED: 3,
    RotationAction.FRESH: 4,
}


def summary_line(results: Sequence[RotationResult]) -> str:
    """Return e.g. ``"3 targets: 2 minted, 1 fresh, 0 failed_but_valid, 0 failed"``."""
    counts = {action: 0 for action in RotationAction}
    for result in results:
        counts[result.action] += 1
    parts = ", ".join(f"{counts[a]} {a.value}" for a in RotationAction)
    return f"{len(results)} targets: {parts}"


async def publish_results(
    results: Sequence[RotationResult],
    *,
    key: str = ARTIFACT_KEY,
    plan: FleetPlan | None = None,
) -> None:
    """Create the run's table artifact: one row per target, failures first.

    Args:
        results: Every target's result.
        key: Artifact key (lowercase letters, digits, dashes).
        plan: The fleet's plan: its request budget used and left per key is added to
            the description.
    """
    ordered = sorted(results, key=lambda r: _ORDER[r.action])
    rows = [r.as_row() for r in ordered[:MAX_ARTIFACT_ROWS]]
    description = f"**UseGrant token rotation**: {summary_line(results)}."
    if len(ordered) > MAX_ARTIFACT_ROWS:
        description += (
            f" Showing the first {MAX_ARTIFACT_ROWS} rows (failures first); "
            "every target has its usegrant.token.* event."
        )
    if plan is not None:
        minted = sum(1 for r in results if r.action is RotationAction.MINTED)
        lines = "".join(f"\n- {line}" for line in plan.lines())
        description += f"\n\n**Request budget** (this run minted {minted}):{lines}"
    await acreate_table_artifact(table=rows, key=key, description=description)


async def refuse_run(exc: ConfigurationError, *, title: str, key: str, description: str) -> State:
    """Fail a run that could not start: one scrubbed line, logged and in its artifact.

    Args:
        exc: Why the run could not start.
        title: The markdown artifact's heading.
        key: Artifact key (lowercase letters, digits, dashes).
        description: The artifact's description.

    Returns:
        A Failed state whose message is that line.
    """
    message = redact(" ".join(str(exc).split()))
    get_run_logger().error("%s", message)
    await acreate_markdown_artifact(
        markdown=f"### {title}\n\n{message}", key=key, description=description
    )
    return Failed(message=message)
