"""The emulator's per-key rate limiter, a sliding window log.

A request is admitted when fewer than ``limit`` requests were admitted in the last
``window`` seconds. A refused request is not logged (it does not use quota) and gets
``Retry-After`` = the seconds until the oldest admitted request leaves the window,
rounded up to an integer (at least 1). Waiting exactly that long always frees a slot.

Example:
    >>> limiter = SlidingWindowLimiter()
    >>> limiter.acquire("k", limit=2, window=10.0, now=0.0)
    >>> limiter.acquire("k", limit=2, window=10.0, now=1.0)
    >>> limiter.acquire("k", limit=2, window=10.0, now=2.5)
    8
    >>> limiter.acquire("k", limit=2, window=10.0, now=10.0)
"""

from __future__ import annotations

import math
from collections import defaultdict, deque

__all__ = ["SlidingWindowLimiter", "max_in_sliding_window"]


class SlidingWindowLimiter:
    """A sliding-window-log rate limiter keyed by API key (not thread-safe by itself)."""

    def __init__(self) -> None:
        self._log: dict[str, deque[float]] = defaultdict(deque)

    def acquire(self, key: str, *, limit: int, window: float, now: float) -> int | None:
        """Admit a request or tell how long to wait.

        Args:
            key: The API key (any hashable identity of the caller).
            limit: Requests admitted per window, >= 1.
            window: Window length in seconds.
            now: The current monotonic time in seconds.

        Returns:
            ``None`` when admitted (and logged); else the integer seconds (>= 1)
            until a slot frees.
        """
        log = self._log[key]
        while log and log[0] <= now - window:
            log.popleft()
        if len(log) < limit:
            log.append(now)
            return None
        # The (len - limit + 1)-th oldest entry must leave before a slot frees.
        frees_at = log[len(log) - limit] + window
        return max(1, math.ceil(frees_at - now))

    def clear(self) -> None:
        """Forget every admitted request."""
        self._log.clear()


def max_in_sliding_window(times: list[float], window: float) -> int:
    """Return the most timestamps found in any half-open interval ``[t, t + window)``.

    Args:
        times: Timestamps in seconds, ascending.
        window: Interval length in seconds.

    Example:
        >>> max_in_sliding_window([0.0, 1.0, 2.0, 10.0, 10.5], 5.0)
        3
    """
    best = 0
    start = 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best
