"""The request budget of an API key, shared by every flow run on every worker.

UseGrant allows ``max_requests_per_hour`` requests per API key (1000 by default) and
answers 429 past it. Every request made with a ``UseGrantCredentials`` block, retries
included, first takes a slot from a **Prefect global concurrency limit with slot decay**
named after the block (``usegrant-quota-<block name>``), through Prefect's own
``rate_limit``. The Prefect server is the coordinator, so the budget holds across
processes, workers and machines that talk to the same Prefect API.

The limit is a token bucket sized so that it can never admit more than the budget in
any window (see :mod:`usegrant_flows.quota.budget`): a tenth of the budget as a burst, the
rest spread evenly over the hour (891/h sustained for the default 1000/h). Each request
occupies ``slots_per_request`` slots so that Prefect's whole-slot decay never stalls.

Without a Prefect server (the embedded/ephemeral API, or a block built in code and never
saved) an in-process limiter enforces the budget in this process: the API's own rule,
at most ``max_requests_per_hour`` in any hour (plus 1 % slack), shared by every client of
the process that uses the key.

:func:`apply_quota` (and ``usegrant-flows quota apply``) creates or updates the limit;
it is idempotent, and the limiter also applies it on first use in a process, so the
block's ``max_requests_per_hour`` is the single source of truth.

Example:
    >>> limit_name("prod")
    'usegrant-quota-prod'
    >>> spec = QuotaSpec.for_budget(Budget(1000))
    >>> spec.limit, round(spec.slot_decay_per_second, 3), spec.slots_per_request
    (4100, 10.149, 41)
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass

from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import rate_limit as arate_limit
from prefect.concurrency.sync import rate_limit
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.settings import get_current_settings
from prefect.utilities.asyncutils import run_coro_as_sync
from pydantic import SecretStr

from usegrant_flows.quota.budget import Budget, WindowLimiter, local_limiter

__all__ = [
    "LIMIT_PREFIX",
    "Budget",
    "QuotaLimiter",
    "QuotaSpec",
    "QuotaStatus",
    "aapply_quota",
    "apply_quota",
    "aread_quota",
    "limit_name",
    "prefect_api_configured",
    "read_quota",
]

#: Prefix of the global concurrency limits this module manages.
LIMIT_PREFIX = "usegrant-quota-"


def limit_name(block_name: str) -> str:
    """Return the global concurrency limit's name for a credentials block name."""
    return f"{LIMIT_PREFIX}{block_name}"


def prefect_api_configured() -> bool:
    """True when ``PREFECT_API_URL`` points at a Prefect server (or Cloud).

    False for the embedded/ephemeral API, which a single process starts for itself:
    there the in-process limiter is the budget.
    """
    return get_current_settings().api.url is not None


@dataclass(frozen=True)
class QuotaSpec:
    """The global concurrency limit that enforces a budget.

    Attributes:
        limit: Size of the limit in slots (``burst * slots_per_request``).
        slot_decay_per_second: Slots freed per second (``rate * slots_per_request``).
        slots_per_request: Slots one request occupies.
    """

    limit: int
    slot_decay_per_second: float
    slots_per_request: int

    @classmethod
    def for_budget(cls, budget: Budget) -> QuotaSpec:
        """Return the limit's settings for ``budget``."""
        return cls(budget.slot_limit, budget.slot_decay_per_second, budget.slots_per_request)


@dataclass(frozen=True)
class QuotaStatus:
    """A global concurrency limit as the server holds it now.

    Attributes:
        name: The limit's name.
        limit: Its size in slots.
        active_slots: Slots occupied at the last update (before decay since then).
        slot_decay_per_second: Its slot decay.
        active: Whether the limit is enforced.
    """

    name: str
    limit: int
    active_slots: int
    slot_decay_per_second: float
    active: bool

    def describe(self, slots_per_request: int) -> str:
        """One line for people: burst size and state, in requests."""
        burst = self.limit // slots_per_request
        held = self.active_slots / slots_per_request
        rate = self.slot_decay_per_second / slots_per_request * 3600
        state = "" if self.active else " (inactive: not enforced)"
        return (
            f"{self.name}: burst {burst} requests, {rate:,.0f} requests/h sustained, "
            f"{held:.1f} requests' worth in use at the last update{state}"
        )


async def aapply_quota(block_name: str, budget: Budget) -> QuotaSpec:
    """Create or update the block's global concurrency limit (idempotent).

    Args:
        block_name: The credentials block's name.
        budget: Its budget (``UseGrantCredentials.budget()``).

    Returns:
        The limit's settings.
    """
    spec = QuotaSpec.for_budget(budget)
    async with get_client() as client:
        for attempt in (1, 2):
            try:
                await client.upsert_global_concurrency_limit_by_name(
                    limit_name(block_name),
                    spec.limit,
                    slot_decay_per_second=spec.slot_decay_per_second,
                )
                break
            except ObjectAlreadyExists:
                # Two processes created it at once (the upsert is read-then-write):
                # the second pass finds it and updates it.
                if attempt == 2:
                    raise
    return spec


def apply_quota(block_name: str, budget: Budget) -> QuotaSpec:
    """Sync form of :func:`aapply_quota`."""
    return run_coro_as_sync(aapply_quota(block_name, budget))


async def aread_quota(block_name: str) -> QuotaStatus | None:
    """Return the block's global concurrency limit, or ``None`` when it does not exist."""
    async with get_client() as client:
        try:
            gcl = await client.read_global_concurrency_limit_by_name(limit_name(block_name))
        except ObjectNotFound:
            return None
    return QuotaStatus(
        name=gcl.name,
        limit=gcl.limit,
        active_slots=gcl.active_slots,
        slot_decay_per_second=gcl.slot_decay_per_second,
        active=gcl.active,
    )


def read_quota(block_name: str) -> QuotaStatus | None:
    """Sync form of :func:`aread_quota`."""
    return run_coro_as_sync(aread_quota(block_name))


# Limits this process has applied already: (API URL, limit name, spec).
_applied: set[tuple[str, str, QuotaSpec]] = set()
_applied_lock = threading.Lock()


class QuotaLimiter:
    """The request budget of one API key: a ``RequestLimiter`` for the clients.

    With a Prefect server configured and a saved block, every request takes
    ``slots_per_request`` slots of the global limit ``usegrant-quota-<block>`` (created
    or updated on first use in the process). Otherwise the key's process-wide
    :class:`~usegrant_flows.quota.budget.WindowLimiter` is used. Waits have no timeout: a
    request that does not fit now goes out when the budget allows (in the next window,
    if it must).

    Args:
        api_key: The key (only its fingerprint is kept, for the in-process bucket).
        budget: The key's budget.
        block_name: The saved credentials block's name; ``None`` for a block built in
            code or the settings, which always use the in-process limiter.

    Attributes:
        mode: ``"global"`` (Prefect limit) or ``"local"`` (in-process limiter).
        requests: Requests let through by this limiter so far.
    """

    def __init__(self, api_key: SecretStr, budget: Budget, block_name: str | None) -> None:
        self.budget = budget
        self.block_name = block_name
        self.spec = QuotaSpec.for_budget(budget)
        self.requests = 0
        self._local: WindowLimiter | None = None
        if block_name is not None and prefect_api_configured():
            self.mode = "global"
        else:
            self.mode = "local"
            self._local = local_limiter(api_key.get_secret_value(), budget)
        self._alock: asyncio.Lock | None = None
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._pump: asyncio.Task[None] | None = None

    @property
    def name(self) -> str | None:
        """The global limit's name (``None`` in local mode)."""
        return limit_name(self.block_name) if self.block_name is not None else None

    def _applied_key(self) -> tuple[str, str, QuotaSpec]:
        return (str(get_current_settings().api.url), str(self.name), self.spec)

    def acquire(self) -> None:
        """Block until the budget allows one more request."""
        if self._local is not None:
            self._local.acquire()
        else:
            assert self.block_name is not None
            key = self._applied_key()
            with _applied_lock:
                if key not in _applied:
                    apply_quota(self.block_name, self.budget)
                    _applied.add(key)
            rate_limit(key[1], occupy=self.spec.slots_per_request, strict=True)
        self.requests += 1

    async def aacquire(self) -> None:
        """Wait until the budget allows one more request."""
        if self._local is not None:
            await self._local.aacquire()
        else:
            assert self.block_name is not None
            key = self._applied_key()
            if key not in _applied:
                if self._alock is None:
                    self._alock = asyncio.Lock()
                async with self._alock:
                    if key not in _applied:
                        await aapply_quota(self.block_name, self.budget)
                        with _applied_lock:
                            _applied.add(key)
            await self._queue_for_slot(key[1])
        self.requests += 1

    async def _queue_for_slot(self, name: str) -> None:
        """Wait for a slot; coroutines waiting together share one acquisition.

        Prefect serializes acquisitions per limit and process, one server round trip
        each, which caps a process at a few dozen requests per second. So one pump takes
        the slots of every coroutine waiting at that moment (at most the burst) in one
        ``rate_limit`` call and lets them all go; the bucket's bound is unchanged since
        each request still holds its slots before it is sent.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run_pump(name))
        await future

    async def _run_pump(self, name: str) -> None:
        waiters = self._waiters
        try:
            while waiters:
                count = min(len(waiters), self.budget.burst)
                await arate_limit(name, occupy=count * self.spec.slots_per_request, strict=True)
                released = 0
                while released < count and waiters:
                    future = waiters.popleft()
                    if not future.done():  # a cancelled waiter's slots are simply unused
                        future.set_result(None)
                        released += 1
        except Exception as exc:  # e.g. the Prefect API is unreachable: every waiter hears
            while waiters:
                future = waiters.popleft()
                if not future.done():
                    future.set_exception(exc)
        except BaseException:  # cancelled with its loop
            while waiters:
                waiters.popleft().cancel()
            raise

    def __repr__(self) -> str:
        where = self.name if self.mode == "global" else "in-process"
        return f"QuotaLimiter({where}, {self.budget.describe()})"
