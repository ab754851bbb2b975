"""Request budgets per API key, without Prefect: the bucket maths, a local limiter, a key gate.

UseGrant admits at most ``B`` requests per API key in any ``W``-second interval (a
sliding window: 1000 per 3600 s by default) and answers 429 past it.

In one process, :class:`WindowLimiter` applies that very rule (a sliding-window log over
``W + slack`` seconds): up to ``B`` requests at once, then each one as an old one leaves
the window.

Across processes, Prefect's global concurrency limit with slot decay is the coordinator,
and it is a **token bucket** of capacity ``burst`` refilled at ``rate`` per second. A bucket
admits at most ``burst + rate * W`` requests in any ``W``-second interval, so choosing

* ``burst = max(1, ceil(B / 10))`` (a tenth of the budget for bursts and retries) and
* ``rate = (B - burst) / (W + slack)``, with ``slack = max(0.5 s, 1 % of W)`` to absorb
  the network delay between our clock and the API's,

keeps every interval of ``W`` seconds under ``B``: the bucket can never spend the quota.
The sustained rate is ``rate`` (900 requests per hour for the default 1000/h, less the
1 % slack: about 891/h); the first ``burst`` requests go at once.

The same numbers drive Prefect's global concurrency limit with slot decay (see
:mod:`usegrant_flows.quota.limiter`), scaled to whole slots: Prefect decays
``floor(slot_decay_per_second * seconds since the last update)`` slots and every update
(denials included) restarts that clock, so a decay below one slot per second can stall
under contention, and loses up to one slot per update. Each request therefore takes
``slots_per_request`` slots (at least 20, and enough for a decay of at least 10 slots
per second); the bound ``burst + rate * W`` is unchanged.

:class:`KeyGate` is the per-key circuit the clients consult before every attempt: a 429
with ``Retry-After`` pauses every request through the gate until then; a 401 stops
them all (:class:`~usegrant_flows.api.errors.AuthenticationError` without a request).

Example:
    >>> budget = Budget(requests=1000, window=3600)
    >>> budget.burst, round(budget.sustained_per_hour)
    (100, 891)
    >>> budget.burst + budget.rate * budget.window <= budget.requests
    True
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import deque
from dataclasses import dataclass

from usegrant_flows.api.clock import SYSTEM_CLOCK, Clock
from usegrant_flows.api.errors import ConfigurationError

__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_REQUESTS",
    "DEFAULT_WINDOW",
    "MIN_SLOTS_PER_REQUEST",
    "MIN_SLOT_DECAY_PER_SECOND",
    "Budget",
    "WindowLimiter",
    "key_fingerprint",
    "local_limiter",
    "reset_local_limiters",
]

#: The API's quota window in seconds (one hour).
DEFAULT_WINDOW = 3600.0
#: UseGrant's default quota: requests per API key and window.
DEFAULT_REQUESTS = 1000
#: Prefect decays whole slots only; each request takes enough slots to decay this many
#: slots per second at least (see the module docstring).
MIN_SLOT_DECAY_PER_SECOND = 10.0
#: ... and at least this many slots, so the fraction of a slot lost at each update of
#: the limit is a small fraction of a request.
MIN_SLOTS_PER_REQUEST = 20


def key_fingerprint(api_key: str) -> str:
    """Return the first 16 hex digits of the key's sha256: names a key, never reveals it.

    Example:
        >>> len(key_fingerprint("usegrant_example"))
        16
    """
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Budget:
    """A request budget: at most ``requests`` in any ``window`` seconds.

    Attributes:
        requests: Requests allowed per window (>= 1); UseGrant's default is 1000.
        window: The window in seconds (> 0); 3600 for the real API. Change it only for
            emulators and tests.

    Raises:
        ConfigurationError: For a budget below 1 or a window that is not > 0.
    """

    requests: int
    window: float = DEFAULT_WINDOW

    def __post_init__(self) -> None:
        if isinstance(self.requests, bool) or not isinstance(self.requests, int):
            raise ConfigurationError("max_requests_per_hour must be an integer >= 1")
        if self.requests < 1:
            raise ConfigurationError(f"max_requests_per_hour must be >= 1, got {self.requests}")
        ok = isinstance(self.window, (int, float)) and not isinstance(self.window, bool)
        if not ok or not math.isfinite(self.window) or self.window <= 0:
            raise ConfigurationError("quota_window_seconds must be a finite number > 0")

    @property
    def burst(self) -> int:
        """Requests that may go at once: a tenth of the budget, at least 1."""
        return max(1, math.ceil(self.requests / 10))

    @property
    def slack(self) -> float:
        """Seconds added to the window for network delay: max(0.5, 1 % of the window)."""
        return max(0.5, 0.01 * self.window)

    @property
    def rate(self) -> float:
        """Sustained requests per second once the burst is spent."""
        # A budget of 1 has no room after its burst; half a request keeps the bucket
        # moving while floor(burst + rate * W) stays 1.
        return max(self.requests - self.burst, 0.5) / (self.window + self.slack)

    @property
    def sustained_per_hour(self) -> float:
        """Sustained requests per hour (``rate * 3600``): what a fleet may plan on."""
        return self.rate * 3600.0

    @property
    def slots_per_request(self) -> int:
        """Slots of the Prefect limit one request takes (whole-slot decay, see above)."""
        return max(MIN_SLOTS_PER_REQUEST, math.ceil(MIN_SLOT_DECAY_PER_SECOND / self.rate))

    @property
    def slot_limit(self) -> int:
        """The Prefect limit's size in slots: ``burst * slots_per_request``."""
        return self.burst * self.slots_per_request

    @property
    def slot_decay_per_second(self) -> float:
        """The Prefect limit's slot decay: ``rate * slots_per_request``."""
        return self.rate * self.slots_per_request

    def describe(self) -> str:
        """Return e.g. ``"1,000 requests per 3600 s (burst 100, then 891/h)"``."""
        return (
            f"{self.requests:,} requests per {self.window:g} s "
            f"(burst {self.burst}, then {self.sustained_per_hour:,.0f}/h)"
        )


#: UseGrant's default quota, the budget of a key no block describes (the settings' key).
DEFAULT_BUDGET = Budget(DEFAULT_REQUESTS, DEFAULT_WINDOW)


class WindowLimiter:
    """The API's own rule, in process: at most ``budget.requests`` in any window.

    A sliding-window log of the moments requests were let through: a request may go
    when fewer than ``requests`` went in the last ``window + slack`` seconds. Each caller
    reserves its moment and sleeps until it (first come, first served; waiters never
    wake together). A cancelled waiter's reservation is not given back: it errs on the
    side of sending fewer requests. Thread- and asyncio-safe.

    Args:
        budget: The budget to keep.
        clock: Where time is read and waited for (tests pass a fake one).

    Example:
        >>> now = [0.0]
        >>> limiter = WindowLimiter(Budget(2, window=10), clock=Clock(monotonic=lambda: now[0]))
        >>> limiter.reserve(), limiter.reserve(), limiter.reserve()
        (0.0, 0.0, 10.5)
    """

    def __init__(self, budget: Budget, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.budget = budget
        self._span = budget.window + budget.slack
        self._clock = clock
        self._lock = threading.Lock()
        self._log: deque[float] = deque()
        self.granted = 0

    def reserve(self) -> float:
        """Take the next free moment and return the seconds to wait for it (>= 0)."""
        with self._lock:
            now = self._clock.monotonic()
            log = self._log
            while log and log[0] <= now - self._span:
                log.popleft()
            at = now
            if len(log) >= self.budget.requests:
                at = max(now, log[len(log) - self.budget.requests] + self._span)
            log.append(at)
            self.granted += 1
            return at - now

    def acquire(self) -> None:
        """Block until one more request may be sent."""
        wait = self.reserve()
        if wait > 0:
            self._clock.sleep(wait)

    async def aacquire(self) -> None:
        """Wait (without blocking the event loop) until one more request may be sent."""
        wait = self.reserve()
        if wait > 0:
            await self._clock.asleep(wait)


_local_lock = threading.Lock()
_local: dict[tuple[str, Budget], WindowLimiter] = {}


def local_limiter(api_key: str, budget: Budget) -> WindowLimiter:
    """Return this process's limiter for an API key and budget (one per key per process).

    Every client of the process that uses the key with this budget shares it, so the
    budget holds across flow runs and threads of one process (not across processes:
    that is what Prefect's global concurrency limit is for).

    Args:
        api_key: The key; only its sha256 fingerprint is kept.
        budget: The key's budget.
    """
    key = (key_fingerprint(api_key), budget)
    with _local_lock:
        bucket = _local.get(key)
        if bucket is None:
            bucket = _local[key] = WindowLimiter(budget)
        return bucket


def reset_local_limiters() -> None:
    """Forget every process-local limiter (for tests)."""
    with _local_lock:
        _local.clear()
