"""Fault settings, the per-key rate limiter and the request counters of the emulator.

Faults apply to the token route only (``POST /v1/providers/.../tokens``) except the
latency, which delays every answer but those of the ``/_emulator`` control routes.
For each token request one number ``u`` is drawn from a seeded :class:`random.Random`:
``u < drop_rate`` closes the connection without an answer; else
``u < drop_rate + fail_rate`` answers ``fail_status``. Only then are the API key and the
rate limit checked, as a proxy in front of the API would fail before the API counts the
request.

The rate limit is a **sliding window log** per API key: a request is admitted when fewer
than ``rate_limit`` requests were admitted in the last ``rate_window`` seconds. A refused
request is not logged (it does not use quota) and gets ``Retry-After`` = the seconds
until the oldest admitted request leaves the window, rounded up to an integer (at
least 1). Waiting exactly that long always frees a slot.

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
from collections import Counter, defaultdict, deque
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Faults", "RequestStats", "SlidingWindowLimiter", "max_in_sliding_window"]


class Faults(BaseModel):
    """Faults and limits the emulator injects.

    Attributes:
        latency_ms: Milliseconds added to every answer, 0..60000.
        fail_rate: Share of token requests answered with ``fail_status``, 0..1.
        fail_status: Status of the failed answers, 400..599: 502/503/504 come with an
            HTML body (a proxy page), 429 with ``Retry-After: 1``, others with
            ``{"code", "message"}``.
        rate_limit: Requests admitted per API key per ``rate_window``; ``None`` for no
            limit (the real API allows 1000 per hour).
        rate_window: Length of the rate-limit window in seconds, > 0 (default 3600).
        drop_rate: Share of token requests whose connection is closed without an
            answer, 0..1. ``fail_rate + drop_rate`` must not exceed 1.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    latency_ms: float = Field(default=0.0, ge=0, le=60_000)
    fail_rate: float = Field(default=0.0, ge=0, le=1)
    fail_status: int = Field(default=503, ge=400, le=599)
    rate_limit: int | None = Field(default=None, ge=1)
    rate_window: float = Field(default=3600.0, gt=0)
    drop_rate: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _rates_add_up(self) -> Faults:
        if self.fail_rate + self.drop_rate > 1:
            raise ValueError("fail_rate + drop_rate must not exceed 1")
        return self


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


class RequestStats:
    """Counters of the answered requests (not thread-safe by itself).

    Attributes:
        started: Monotonic time (seconds) of the last reset.
    """

    def __init__(self, now: float) -> None:
        self.started = now
        self.by_route: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.by_client: dict[str, Counter[str]] = defaultdict(Counter)
        self.token_call_times: list[float] = []
        self.tokens_issued = 0

    def token_call(self, now: float) -> None:
        """Record the arrival of a token request (any outcome, drops included)."""
        self.token_call_times.append(now)

    def answered(self, route: str, outcome: str, client_id: str | None) -> None:
        """Record how a request ended.

        Args:
            route: The route template, e.g. ``GET /.well-known/jwks``.
            outcome: The status as a string (``"201"``) or ``"dropped"``.
            client_id: The ``clientId`` path parameter of a token request.
        """
        self.by_route[route] += 1
        self.by_status[outcome] += 1
        if client_id is not None:
            self.by_client[client_id][outcome] += 1
        if outcome in ("200", "201") and client_id is not None:
            self.tokens_issued += 1

    def snapshot(self, rate_window: float) -> dict[str, Any]:
        """Return the counters as JSON-ready data.

        Args:
            rate_window: Window length in seconds for the per-window call counts.

        Returns:
            ``total``, ``by_route``, ``by_status``, ``by_client`` (client id ->
            ``{"total", "by_status"}``), ``tokens_issued``, ``dropped`` and
            ``token_calls``: ``{"rate_window", "total", "per_window"`` (counts in
            consecutive fixed windows from the last reset), ``"max_in_any_window"``
            (most calls in any sliding window of that length)``}``.
        """
        times = self.token_call_times
        per_window: list[int] = []
        if times:
            windows = int((times[-1] - self.started) // rate_window) + 1
            per_window = [0] * windows
            for moment in times:
                per_window[int((moment - self.started) // rate_window)] += 1
        return {
            "total": sum(self.by_route.values()),
            "by_route": dict(self.by_route),
            "by_status": dict(self.by_status),
            "by_client": {
                client: {"total": sum(counts.values()), "by_status": dict(counts)}
                for client, counts in self.by_client.items()
            },
            "tokens_issued": self.tokens_issued,
            "dropped": self.by_status.get("dropped", 0),
            "token_calls": {
                "rate_window": rate_window,
                "total": len(times),
                "per_window": per_window,
                "max_in_any_window": max_in_sliding_window(times, rate_window),
            },
        }
