"""The emulator's request counters, as served by ``GET /_emulator/stats``."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from usegrant_flows.emulator.faults import FAULT_NAMES
from usegrant_flows.emulator.limiter import max_in_sliding_window

__all__ = ["RequestStats"]


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
        self.faults_injected: Counter[str] = Counter()

    def token_call(self, now: float) -> None:
        """Record the arrival of a token request (any outcome, drops included)."""
        self.token_call_times.append(now)

    def answered(
        self, route: str, outcome: str, client_id: str | None, fault: str | None = None
    ) -> None:
        """Record how a request ended.

        Args:
            route: The route template, e.g. ``GET /.well-known/jwks``.
            outcome: The status as a string (``"201"``) or ``"dropped"``.
            client_id: The ``clientId`` path parameter of a token request.
            fault: The injected fault (one of :data:`FAULT_NAMES`), if any. A faulty
                ``201`` is not counted in ``tokens_issued``: no sound token was issued.
        """
        self.by_route[route] += 1
        self.by_status[outcome] += 1
        if client_id is not None:
            self.by_client[client_id][outcome] += 1
        if fault is not None:
            self.faults_injected[fault] += 1
        elif outcome in ("200", "201") and client_id is not None:
            self.tokens_issued += 1

    def snapshot(self, rate_window: float) -> dict[str, Any]:
        """Return the counters as JSON-ready data.

        Args:
            rate_window: Window length in seconds for the per-window call counts.

        Returns:
            ``total``, ``by_route``, ``by_status``, ``by_client`` (client id ->
            ``{"total", "by_status"}``), ``tokens_issued``, ``dropped``,
            ``faults_injected`` (every name of :data:`FAULT_NAMES` -> count, zeros
            included) and ``token_calls``: ``{"rate_window", "total", "per_window"``
            (counts in consecutive fixed windows from the last reset),
            ``"max_in_any_window"`` (most calls in any sliding window of that length)``}``.
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
            "faults_injected": {name: self.faults_injected[name] for name in FAULT_NAMES},
            "token_calls": {
                "rate_window": rate_window,
                "total": len(times),
                "per_window": per_window,
                "max_in_any_window": max_in_sliding_window(times, rate_window),
            },
        }
