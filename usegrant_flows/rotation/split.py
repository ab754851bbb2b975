"""Splitting a fleet by work queue: which targets a run rotates itself, which go to a host.

A target that names a ``work_queue`` must be rotated by a worker polling that queue
(typically the one host whose files it writes). A rotation keeps the targets without a
queue and hands each queue's targets to a child flow run on that queue
(:mod:`usegrant_flows.rotation.dispatch`). This module is the pure part: no Prefect.

Example:
    >>> from usegrant_flows.rotation.fleet import RotationTarget
    >>> def target(name, queue=None):
    ...     return RotationTarget.model_validate({
    ...         "name": name, "work_queue": queue,
    ...         "provider_id": "00000000-0000-4000-8000-000000000001",
    ...         "client_id": "00000000-0000-4000-8000-000000000002",
    ...         "sinks": [{"type": "secret-block", "secret_block_name": name}],
    ...     })
    >>> split = split_fleet([target("a", "host-a"), target("b"), target("c", "host-a")])
    >>> [t.name for t in split.local], {q: [t.name for t in ts] for q, ts in split.queues.items()}
    (['b'], {'host-a': ['a', 'c']})
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from usegrant_flows.rotation.fleet import RotationTarget

__all__ = ["FleetSplit", "split_fleet"]


@dataclass(frozen=True)
class FleetSplit:
    """A fleet cut by work queue.

    Attributes:
        local: Targets without a queue, in fleet order: the run rotates them itself.
        queues: Each queue's targets, in fleet order; queues in order of first use.
    """

    local: list[RotationTarget] = field(default_factory=list)
    queues: dict[str, list[RotationTarget]] = field(default_factory=dict)

    @property
    def dispatched(self) -> int:
        """How many targets go to other queues."""
        return sum(len(targets) for targets in self.queues.values())


def split_fleet(targets: Sequence[RotationTarget], *, on_queue: str | None = None) -> FleetSplit:
    """Split a fleet into the targets this run rotates and those of each work queue.

    Args:
        targets: The fleet, in order.
        on_queue: The queue this run was dispatched to (a child run): its targets are
            rotated here, never dispatched again (a child never splits). ``None`` for a
            run that was not dispatched.

    Returns:
        The split; ``local`` keeps the targets without a queue (and those of
        ``on_queue``).
    """
    split = FleetSplit()
    for target in targets:
        queue = target.work_queue
        if queue is None or queue == on_queue:
            split.local.append(target)
        else:
            split.queues.setdefault(queue, []).append(target)
    return split
