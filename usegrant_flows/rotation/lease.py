"""Leases across machines: one mint of a target at a time, on any worker, in bulk.

The file locks of :mod:`usegrant_flows.rotation.locks` keep the runs of one machine
apart. Runs on different machines (two workers, a manual run beside a scheduled one)
meet here, through **claims** in the Prefect server's database
(:mod:`usegrant_flows.rotation.claims`): a claim lists the targets a run holds.

- A batch claims all its targets at once (:meth:`TargetLeases.claim`) when its first
  due target needs its lease: one write, one read of every claim; all or none (no run
  holds some while waiting for others). Three API calls per batch; none when nothing
  in it is due.
- The runner holds a target's lease around its critical section (re-read the sinks,
  mint, verify, write) with :meth:`TargetLeases.hold`: free when the batch's claim has
  the target; otherwise it waits while another run's claim lists it, the run's waiting
  targets asked for together every 0.5 to :data:`MAX_RETRY_PAUSE` seconds.
- A claim lasts :data:`LEASE_SECONDS` after its last write; the run rewrites it every
  :data:`KEEP_SECONDS` when it shrank and every third of the TTL (renewal). A dead
  holder's claim is stale one TTL later (server's clock): the next run deletes it and
  takes its targets. Claims are database rows: a server restart loses none.
- A busy or restarting server (503, 429, 5xx, a dropped connection) is asked again after
  a jittered backoff (up to :data:`MAX_SERVER_PAUSE` s) within the wait, so waits after
  a restart are bounded; at most :data:`MAX_CALLS_IN_FLIGHT` claim calls in flight.

Without a Prefect server (``PREFECT_API_URL`` unset: the embedded API of one process),
:class:`TargetLeases` does nothing; the file lock is the guard there.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx
from prefect.client.orchestration import PrefectClient, get_client

from usegrant_flows.quota.limiter import prefect_api_configured
from usegrant_flows.rotation.claims import (
    Claim,
    SeenClaim,
    backoff,
    chunks,
    create_claim,
    delete_claim,
    holder_name,
    lease_logger,
    live_keys,
    read_claims,
    rewrite_claim,
    server_trouble,
    target_key,
)
from usegrant_flows.rotation.locks import LockTimeoutError

__all__ = [
    "KEEP_SECONDS",
    "LEASE_SECONDS",
    "MAX_CALLS_IN_FLIGHT",
    "MAX_RETRY_PAUSE",
    "MAX_SERVER_PAUSE",
    "TargetLeases",
]

#: Lifetime of a claim in seconds after its last write: how long a dead holder blocks
#: its targets, at most.
LEASE_SECONDS = 60.0
#: Seconds between two looks at this run's claims (shrink the released, renew the old).
KEEP_SECONDS = 10.0
#: Longest pause between two looks at targets another run holds, in seconds.
MAX_RETRY_PAUSE = 2.0
#: Longest pause before asking a busy server again, in seconds.
MAX_SERVER_PAUSE = 8.0
#: Claim calls one run has in flight at most.
MAX_CALLS_IN_FLIGHT = 4
T = TypeVar("T")


class TargetLeases:
    """The leases of one flow run's targets (see the module docstring).

    Args:
        timeout: Seconds to wait for a target another run holds (> 0).
        enabled: Take leases; default: when a Prefect server is configured.
        ttl: Seconds a claim lasts after its last write (>= 1; tests use a few).

    Attributes:
        api_calls: Prefect API calls made so far (claim writes, reads, deletions), for
            measurement.
        leases: Targets held so far.
        seconds: Time spent claiming, waiting and releasing, in seconds.
    """

    def __init__(
        self, *, timeout: float = 120.0, enabled: bool | None = None, ttl: float = LEASE_SECONDS
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")
        if ttl < 1:
            raise ValueError("ttl must be >= 1 second")
        self.timeout = timeout
        self.ttl = ttl
        self.enabled = prefect_api_configured() if enabled is None else enabled
        self.api_calls = 0
        self.leases = 0
        self.seconds = 0.0
        self._client: PrefectClient | None = None
        self._stack = contextlib.AsyncExitStack()
        self._in_flight = asyncio.Semaphore(MAX_CALLS_IN_FLIGHT)
        self._claims: dict[str, Claim] = {}  # ours, by name
        self._granted: dict[str, Claim] = {}  # target key -> our claim holding it
        self._busy: dict[str, asyncio.Lock] = {}  # one section per target in this run
        self._batches: dict[str, _Batch] = {}  # target key -> its open batch
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}
        self._why = "held by another run"
        self._pump: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None
        self._holder = holder_name()

    async def _get_client(self) -> PrefectClient:
        if self._client is None:  # one client (one connection pool) per run
            self._client = await self._stack.enter_async_context(get_client())
        return self._client

    @contextlib.asynccontextmanager
    async def claim(self, identities: Iterable[str]) -> AsyncIterator[None]:
        """Claim a batch's targets together, for the body of an ``async with``.

        Nothing is sent until the first :meth:`hold` of one of them: then one write and
        one read take them all, or none when another run holds one (they are then
        asked for again, all together). Held until the batch ends (after its delivery
        record is written); the claim is deleted then.

        Args:
            identities: The targets' identities (``RotationTarget.identity``).
        """
        if not self.enabled:
            yield
            return
        batch = _Batch({target_key(identity) for identity in identities} - set(self._granted))
        for key in batch.keys:
            self._batches[key] = batch
        try:
            yield
        finally:
            for key in batch.keys:
                if self._batches.get(key) is batch:
                    del self._batches[key]
            started = time.monotonic()
            await asyncio.shield(self._release(batch.keys))
            self.seconds += time.monotonic() - started

    @contextlib.asynccontextmanager
    async def hold(self, identity: str) -> AsyncIterator[None]:
        """Hold the lease of a target for the body of an ``async with``.

        Args:
            identity: The target's identity (``RotationTarget.identity``).

        Raises:
            LockTimeoutError: When another run held it for :attr:`timeout` seconds.
        """
        if not self.enabled:
            yield
            return
        key = target_key(identity)
        async with self._busy.setdefault(key, asyncio.Lock()):
            started = time.monotonic()
            batch = self._batches.get(key)
            if batch is not None and not self._holds(key):
                async with batch.lock:  # the batch's first due target claims them all
                    if not batch.taken:
                        batch.taken = True
                        with contextlib.suppress(httpx.HTTPError, OSError):  # see _wait_for
                            await self._take(batch.keys - set(self._granted), whole=True)
            if not self._holds(key):
                await self._wait_for(key, identity.split(":", 1)[0])
            self.leases += 1
            self.seconds += time.monotonic() - started
            try:
                yield
            finally:
                # Inside a batch claim the target stays held until the batch ends, after
                # the batch's delivery record is written: a run that takes it next then
                # sees both the new token and its record.
                if key not in self._batches:
                    started = time.monotonic()
                    await asyncio.shield(self._release([key]))
                    self.seconds += time.monotonic() - started

    def granted_at(self, identity: str) -> float | None:
        """When the target was granted (``time.monotonic()``); ``None``: leases off, not held.

        A record read started later sees what the target's last holder recorded.
        """
        claim = self._granted.get(target_key(identity))
        return claim.confirmed_at if claim is not None else None

    def _holds(self, key: str) -> bool:
        """True when one of our claims has ``key`` and was written recently enough."""
        claim = self._granted.get(key)
        if claim is None:
            return False
        if time.monotonic() - claim.written_at < self.ttl * 0.75:
            return True
        # Not renewed for most of its TTL (a server that was down): others may take it
        # soon, so do not start a section on it; claim it again.
        self._granted.pop(key, None)
        claim.keys.discard(key)
        return False

    async def _wait_for(self, key: str, target: str) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        self._wake.set()
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run_pump())
        try:
            await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except asyncio.TimeoutError:
            raise LockTimeoutError(
                f"no lease on target {target!r} within {self.timeout:g} s: {self._why}"
            ) from None
        finally:
            waiters = self._waiting.get(key, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._waiting.pop(key, None)

    async def _run_pump(self) -> None:
        """Ask for the waited-for targets together until none is waited for."""
        attempt = 0
        while self._waiting:
            self._wake.clear()
            keys = set(self._waiting) - set(self._granted)
            pause = random.uniform(0.5, MAX_RETRY_PAUSE)  # noqa: S311 - jitter, not secrecy
            try:
                others = live_keys(await self._read(), set(self._claims))
                for group in self._groups(keys):
                    if not group & others:
                        await self._take(group, whole=len(group) > 1)
                attempt, self._why = 0, "held by another run"
            except Exception as exc:  # a busy, restarting or refusing server: ask again
                attempt += 1
                pause, self._why = backoff(attempt, MAX_SERVER_PAUSE), server_trouble(exc)
            for key in list(self._waiting):
                if key in self._granted:
                    for future in self._waiting.pop(key):
                        if not future.done():
                            future.set_result(None)
            if self._waiting:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), pause)
                await asyncio.sleep(0.1)  # let waiters arriving together share a round

    def _groups(self, keys: set[str]) -> list[set[str]]:
        """The waited-for keys by batch (the whole batch's open keys), others alone."""
        groups: dict[object, set[str]] = {}
        for key in keys:
            batch = self._batches.get(key)
            group = (batch.keys - set(self._granted)) if batch is not None else {key}
            groups[id(batch) if batch is not None else key] = group
        return list(groups.values())

    async def _take(self, keys: set[str], *, whole: bool = False) -> None:
        """Write claims for ``keys``, read every claim, keep those nobody else lists.

        ``whole`` (a batch): all or none. A batch keeps its targets until it ends; one
        holding some while it waits for others could wait on a run doing the same.
        """
        if not keys:
            return
        client = await self._get_client()
        mine: list[Claim] = []
        try:
            for chunk in chunks(sorted(keys)):
                claim = Claim.new(chunk)
                self._claims[claim.name] = claim
                mine.append(claim)
                await self._call(
                    create_claim(
                        client, claim, ttl=self.ttl, holder=self._holder, now=time.monotonic()
                    )
                )
            others = live_keys(await self._read(), set(self._claims))
        except BaseException:
            for claim in mine:  # unconfirmed: take nothing, leave nothing behind
                self._claims.pop(claim.name, None)
                with contextlib.suppress(Exception):
                    await self._call(delete_claim(client, claim.name))
            raise
        confirmed = time.monotonic()
        if whole and keys & others:
            others = set(keys)
        for claim in mine:
            claim.keys -= others
            claim.confirmed_at = confirmed
            for key in claim.keys:
                self._granted[key] = claim
        for claim in mine:
            if not claim.keys:
                await self._drop(claim)
            elif claim.keys != claim.written:  # give back what another run also claimed
                with contextlib.suppress(httpx.HTTPError, OSError):
                    await self._call(
                        rewrite_claim(
                            client, claim, ttl=self.ttl, holder=self._holder, now=claim.written_at
                        )
                    )
        if self._claims and (self._keeper is None or self._keeper.done()):
            self._keeper = asyncio.create_task(self._keep())

    async def _read(self) -> list[SeenClaim]:
        client = await self._get_client()
        seen = await self._call(read_claims(client))
        for claim in seen:  # a dead holder's claim: delete it, its targets are free
            if claim.stale and claim.name not in self._claims:
                with contextlib.suppress(httpx.HTTPError, OSError):
                    await self._call(delete_claim(client, claim.name))
        return seen

    async def _release(self, keys: Iterable[str]) -> None:
        """Give back targets; a claim left with none is deleted (one call)."""
        emptied: dict[str, Claim] = {}
        for key in keys:
            claim = self._granted.pop(key, None)
            if claim is not None:
                claim.keys.discard(key)
                if not claim.keys:
                    emptied[claim.name] = claim
        for claim in emptied.values():
            with contextlib.suppress(Exception):
                await self._drop(claim)

    async def _drop(self, claim: Claim) -> None:
        self._claims.pop(claim.name, None)
        client = await self._get_client()
        await self._call(delete_claim(client, claim.name))

    async def _keep(self) -> None:
        """Shrink and renew this run's claims while it has any (see the module docstring)."""
        while self._claims:
            await asyncio.sleep(min(KEEP_SECONDS, self.ttl / 4))
            client = await self._get_client()
            for claim in list(self._claims.values()):
                old = time.monotonic() - claim.written_at > self.ttl / 3
                if claim.name not in self._claims or (claim.keys == claim.written and not old):
                    continue
                started = time.monotonic()
                try:
                    kept = await self._call(
                        rewrite_claim(client, claim, ttl=self.ttl, holder=self._holder, now=started)
                    )
                except (httpx.HTTPError, OSError):
                    continue  # a busy or restarting server: try again next time
                if not kept:  # deleted as stale by another run: its targets are not ours
                    self._claims.pop(claim.name, None)
                    for key in claim.keys:
                        self._granted.pop(key, None)

    async def _call(self, call: Awaitable[T]) -> T:
        self.api_calls += 1
        async with self._in_flight:
            return await call

    async def aclose(self) -> None:
        """Delete what is still claimed, close the client; log what the leases cost."""
        for task in (self._pump, self._keeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for claim in list(self._claims.values()):
            with contextlib.suppress(Exception):
                await self._drop(claim)
        self._granted.clear()
        if self.api_calls:
            lease_logger().info(
                "target leases: %d taken, %d Prefect API calls, %.2f s",
                self.leases,
                self.api_calls,
                self.seconds,
            )
        self._client = None
        await self._stack.aclose()


@dataclass
class _Batch:
    """A batch's targets, claimed together on the first lease one of them needs."""

    keys: set[str]
    taken: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
