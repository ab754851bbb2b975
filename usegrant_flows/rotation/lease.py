"""Per-target leases in the Prefect server: one mint of a target at a time, on any machine.

The file locks of :mod:`usegrant_flows.rotation.locks` keep the runs of one machine
apart. Runs on different machines (two workers, a manual run beside a scheduled one)
meet here: the runner holds a slot of a Prefect global concurrency limit of size 1,
named ``usegrant-target-<hash of the target's identity>``, around its critical section
(re-read the sinks, mint, verify, write). The slot is a lease with a TTL
(:data:`LEASE_SECONDS`, Prefect's minimum): a worker that crashes while holding it
frees it when the lease expires, and the server's repossessor service reclaims it.

Cost: the steady state is **two API calls per target that is due** (acquire, release);
a target that is fresh before the lease is never leased. The first lease of a target
on a server adds two (the acquisition finds no limit, which is then created). A section
that outlives 3/4 of the TTL (a slow mint under retries) renews its lease. A busy
lease is retried after the server's ``Retry-After`` (capped at
:data:`MAX_RETRY_PAUSE` seconds), until the wait allowed runs out. A busy server (a 503
when SQLite is locked, a 429, a dropped connection) is asked again after a jittered
backoff (up to :data:`MAX_SERVER_PAUSE` seconds), within the same wait; and one run has
at most :data:`MAX_CALLS_IN_FLIGHT` lease calls in flight, so a fleet of thousands does
not send all its lease writes to the server at once.

Prefect's own ``concurrency()`` context manager is not used: it cannot create a
missing limit (``create_if_missing`` is gone in Prefect 3), and it renews every lease
at once on a thread of its own, a third call and a thread per target.

Without a Prefect server (``PREFECT_API_URL`` unset: the embedded API of one process),
:class:`TargetLeases` does nothing; the file lock is the guard there.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.context import FlowRunContext
from prefect.exceptions import MissingContextError, ObjectAlreadyExists
from prefect.logging import get_logger, get_run_logger

from usegrant_flows.quota.limiter import prefect_api_configured
from usegrant_flows.rotation.locks import LockTimeoutError

__all__ = [
    "LEASE_PREFIX",
    "LEASE_SECONDS",
    "MAX_CALLS_IN_FLIGHT",
    "MAX_RETRY_PAUSE",
    "MAX_SERVER_PAUSE",
    "TargetLeases",
    "lease_name",
]

#: Prefix of the per-target global concurrency limits.
LEASE_PREFIX = "usegrant-target-"
#: Lifetime of a lease in seconds (Prefect's minimum): how long a crashed holder blocks
#: its target, at most (plus the repossessor's loop).
LEASE_SECONDS = 60.0
#: Longest pause between two attempts at a busy lease, in seconds.
MAX_RETRY_PAUSE = 2.0
#: Longest pause before asking a busy server again, in seconds.
MAX_SERVER_PAUSE = 8.0
#: Lease calls one run has in flight at most: a fleet of thousands must not send its
#: targets' lease writes all at once to a SQLite-backed server ("database is locked").
MAX_CALLS_IN_FLIGHT = 4


def lease_name(identity: str) -> str:
    """Return the global concurrency limit of a target identity (name, provider, client).

    Example:
        >>> name = lease_name("aws:p:c")
        >>> name.startswith("usegrant-target-"), len(name)
        (True, 48)
    """
    return LEASE_PREFIX + hashlib.sha256(identity.encode()).hexdigest()[:32]


class TargetLeases:
    """The per-target leases of one flow run (see the module docstring).

    Args:
        timeout: Seconds to wait for a target another worker holds (> 0).
        enabled: Take leases; default: when a Prefect server is configured.

    Attributes:
        api_calls: Prefect API calls made so far (acquisitions, creations, renewals,
            releases), for measurement.
        leases: Leases taken so far.
        seconds: Time spent acquiring and releasing leases, in seconds (waits for a
            busy lease included).
    """

    def __init__(self, *, timeout: float = 120.0, enabled: bool | None = None) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")
        self.timeout = timeout
        self.enabled = prefect_api_configured() if enabled is None else enabled
        self.api_calls = 0
        self.leases = 0
        self.seconds = 0.0
        self._client: PrefectClient | None = None
        self._in_flight = asyncio.Semaphore(MAX_CALLS_IN_FLIGHT)
        self._stack = contextlib.AsyncExitStack()

    async def _get_client(self) -> PrefectClient:
        if self._client is None:  # one client (one connection pool) per run
            self._client = await self._stack.enter_async_context(get_client())
        return self._client

    @contextlib.asynccontextmanager
    async def hold(self, identity: str) -> AsyncIterator[None]:
        """Hold the lease of a target for the body of an ``async with``.

        Args:
            identity: The target's identity (``RotationTarget.identity``).

        Raises:
            LockTimeoutError: When another holder kept it for :attr:`timeout` seconds.
        """
        if not self.enabled:
            yield
            return
        started = time.monotonic()
        client = await self._get_client()
        lease_id = await self._acquire(client, lease_name(identity), identity)
        self.leases += 1
        self.seconds += time.monotonic() - started
        renewer = asyncio.create_task(self._renew(client, lease_id))
        try:
            yield
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            started = time.monotonic()
            # Shielded: a cancelled run still frees its target now, not a TTL later.
            with contextlib.suppress(Exception):
                self.api_calls += 1
                async with self._in_flight:
                    await asyncio.shield(client.release_concurrency_slots_with_lease(lease_id))
            self.seconds += time.monotonic() - started

    async def _acquire(self, client: PrefectClient, name: str, identity: str) -> UUID:
        deadline = time.monotonic() + self.timeout
        holder = _holder()
        target = identity.split(":", 1)[0]
        busy_server = 0  # consecutive answers of a server too busy to decide
        while True:
            self.api_calls += 1
            try:
                async with self._in_flight:
                    response = await client.increment_concurrency_slots_with_lease(
                        names=[name],
                        slots=1,
                        mode="concurrency",
                        lease_duration=LEASE_SECONDS,
                        holder=holder,
                    )
                body: dict[str, Any] = response.json()
                if not body.get("limits"):
                    # No such limit yet (the first lease of this target on this server).
                    self.api_calls += 1
                    with contextlib.suppress(ObjectAlreadyExists):  # another worker was first
                        async with self._in_flight:
                            await client.create_global_concurrency_limit(
                                GlobalConcurrencyLimitCreate(name=name, limit=1)
                            )
                    continue
                return UUID(str(body["lease_id"]))
            except httpx.HTTPStatusError as exc:
                status = exc.response.status_code
                if status == 423:  # Locked: another worker holds the target
                    pause, why = _retry_after(exc.response), "held by another worker"
                elif status in _TRANSIENT:
                    busy_server += 1
                    pause, why = _backoff(busy_server), f"Prefect server answered {status}"
                else:
                    raise
            except httpx.TransportError as exc:
                busy_server += 1
                pause, why = (
                    _backoff(busy_server),
                    f"Prefect server unreachable ({type(exc).__name__})",
                )
            if time.monotonic() + pause > deadline:
                raise LockTimeoutError(
                    f"no lease on target {target!r} within {self.timeout:g} s: {why} "
                    f"(Prefect lease {name})"
                ) from None
            await asyncio.sleep(pause)

    async def _renew(self, client: PrefectClient, lease_id: UUID) -> None:
        """Renew the lease every 3/4 of its TTL while the section runs (rarely needed)."""
        while True:
            await asyncio.sleep(LEASE_SECONDS * 0.75)
            self.api_calls += 1
            with contextlib.suppress(Exception):  # a missed renewal: the next one may work
                await client.renew_concurrency_lease(lease_id, lease_duration=LEASE_SECONDS)

    async def aclose(self) -> None:
        """Close the Prefect client; log what the leases cost, if any were taken."""
        if self.leases:
            _logger().info(
                "target leases: %d taken, %d Prefect API calls, %.2f s",
                self.leases,
                self.api_calls,
                self.seconds,
            )
        self._client = None
        await self._stack.aclose()


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:  # outside a flow or task run
        return get_logger("usegrant_flows.lease")


def _holder() -> ConcurrencyLeaseHolder | None:
    """Name the flow run holding the lease (shown by the server), when in one."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return None
    return ConcurrencyLeaseHolder(type="flow_run", id=context.flow_run.id)


#: Answers of a Prefect server that is busy (SQLite "database is locked" is a 503),
#: not a refusal: asked again after a pause.
_TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})


def _backoff(attempt: int) -> float:
    """Seconds before asking a busy server again: 0.2, 0.4, 0.8 ... capped, with jitter."""
    cap: float = min(MAX_SERVER_PAUSE, 0.2 * 2.0 ** (attempt - 1))
    return cap * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not secrecy


def _retry_after(response: httpx.Response) -> float:
    try:
        pause = float(response.headers.get("Retry-After", "0.5"))
    except ValueError:
        pause = 0.5
    return min(max(pause, 0.05), MAX_RETRY_PAUSE)
