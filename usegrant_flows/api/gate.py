"""The per-key circuit the clients consult before every attempt.

A 429 with ``Retry-After`` pauses every request through the gate until then; a 401
stops them all (:class:`~usegrant_flows.api.errors.AuthenticationError` without a
request). This is the API's own behaviour, so it lives beside the client; how many
requests a key may make at all is the request budget's business
(:mod:`usegrant_flows.quota`).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

from usegrant_flows.api.clock import SYSTEM_CLOCK, Clock
from usegrant_flows.api.errors import AuthenticationError, RateLimitError

__all__ = ["KeyGate"]


@dataclass
class KeyGate:
    """One API key's shared pause (after a 429) and stop (after a 401).

    The clients call :meth:`wait` / :meth:`await_open` before every attempt and
    :meth:`observe` with every API error. Share one gate between clients to make them
    pause and stop together; each client has its own gate by default. Pauses are per
    process: across processes and machines the request budget keeps the key below the
    quota in the first place.

    Attributes:
        clock: Where time is read and waited for (tests pass a fake one).
    """

    clock: Clock = SYSTEM_CLOCK
    _paused_until: float = field(default=0.0, init=False)
    _stopped: AuthenticationError | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def stopped(self) -> bool:
        """True once a 401 stopped the key."""
        return self._stopped is not None

    def paused_for(self) -> float:
        """Seconds left of the current pause (0 when open)."""
        return max(0.0, self._paused_until - self.clock.monotonic())

    def observe(self, exc: BaseException) -> float:
        """Learn from an error answer: a 429 with ``Retry-After`` pauses, a 401 stops.

        Returns:
            The clock time the gate is paused until after this answer (0 when the
            answer did not pause it): the caller's own retry wait covers that pause.
        """
        if isinstance(exc, RateLimitError) and exc.retry_after is not None:
            with self._lock:
                self._paused_until = max(
                    self._paused_until, self.clock.monotonic() + exc.retry_after
                )
                return self._paused_until
        if isinstance(exc, AuthenticationError) and exc.status_code == 401:
            with self._lock:
                if self._stopped is None:
                    self._stopped = exc
        return 0.0

    def _check(self, time_left: float, seen: float) -> float:
        """Raise if stopped, or if the pause outlasts ``time_left``; else return the wait."""
        stopped = self._stopped
        if stopped is not None:
            raise AuthenticationError(
                401,
                stopped.code,
                "the API key was rejected (401) earlier; no more requests are sent with it",
            )
        if self._paused_until <= seen:
            return 0.0
        wait = self.paused_for()
        if wait > 0 and wait >= time_left:
            raise RateLimitError(
                429,
                "paused",
                f"requests with this API key are paused for {wait:.1f} s after a 429 "
                "(Retry-After), longer than the call may wait",
                retry_after=wait,
            )
        return wait

    def wait(self, time_left: float = math.inf, *, seen: float = 0.0) -> None:
        """Block while paused; raise when stopped or when the pause outlasts ``time_left``.

        Args:
            time_left: Seconds the caller may still wait (what is left of its deadline).
            seen: A pause end (from :meth:`observe`) the caller already waits out by
                itself; only a later pause makes it wait here.

        Raises:
            AuthenticationError: The key was stopped by a 401 (no request is sent).
            RateLimitError: The pause lasts longer than ``time_left``.
        """
        while (pause := self._check(time_left, seen)) > 0:
            self.clock.sleep(pause)
            time_left -= pause

    async def await_open(self, time_left: float = math.inf, *, seen: float = 0.0) -> None:
        """Async form of :meth:`wait`."""
        while (pause := self._check(time_left, seen)) > 0:
            await self.clock.asleep(pause)
            time_left -= pause
