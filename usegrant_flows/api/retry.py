"""Retry policy for the clients, built on tenacity.

One :class:`RetryPolicy` turns into a tenacity ``Retrying`` (sync) or
``AsyncRetrying`` (async) with the same stop, wait, retry and logging rules, so the two
clients cannot drift apart.
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random_exponential,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from usegrant_flows.api.errors import (
    ConfigurationError,
    UseGrantAPIError,
    UseGrantConnectionError,
    is_transient,
)

__all__ = [
    "MAX_RETRY_AFTER",
    "RetryPolicy",
    "async_retrying",
    "is_testing",
    "parse_retry_after",
    "retrying",
    "set_testing",
]

logger = logging.getLogger("usegrant_flows.api.client")

#: Longest ``Retry-After`` honoured, in seconds (one day); longer values are cut to it.
MAX_RETRY_AFTER = 86_400.0

_testing = False


def set_testing(enabled: bool = True) -> None:
    """Skip the sleeps between retry attempts (for test suites).

    Attempts, stop rules and the deadline check stay as in production: only the
    actual sleeping is skipped, so a test with retries runs instantly.

    Args:
        enabled: True to skip sleeps, False to sleep again.

    Example:
        >>> from usegrant_flows.api.client import set_testing
        >>> set_testing(True)
        >>> set_testing(False)
    """
    global _testing
    _testing = enabled


def is_testing() -> bool:
    """Tell whether :func:`set_testing` turned the waits off."""
    return _testing


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"RetryPolicy.{name} must be a finite number of seconds {bound}")


@dataclass(frozen=True)
class RetryPolicy:
    """How the clients retry transient failures.

    Transient failures are connection errors and timeouts (any ``httpx.TransportError``,
    dropped connections included) and the answers 408, 429 and 5xx. Nothing else is
    retried. Waits grow exponentially with full jitter: before attempt ``n + 1`` the
    client sleeps a random time in ``[0, min(max_backoff, initial_backoff * 2**(n-1))]``
    seconds, unless the answer carried ``Retry-After``, which is honoured exactly. A
    retry whose wait would end past ``deadline`` is not made: the last error is raised.

    The defaults suit production: 5 attempts, 30 s in total, 0.5 s initial backoff,
    8 s maximum backoff, jitter on.

    Attributes:
        max_attempts: Attempts in total, first one included (>= 1).
        deadline: Seconds from the first attempt after which no new attempt starts (> 0).
        initial_backoff: Upper bound of the first wait, in seconds (>= 0).
        max_backoff: Upper bound of any backoff wait, in seconds (>= initial_backoff).
        jitter: True for full jitter; False waits exactly the exponential bound.

    Example:
        >>> policy = RetryPolicy(max_attempts=3, deadline=10.0)
        >>> policy.max_attempts, policy.deadline, policy.initial_backoff, policy.max_backoff
        (3, 10.0, 0.5, 8.0)
    """

    max_attempts: int = 5
    deadline: float = 30.0
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    jitter: bool = True

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ConfigurationError("RetryPolicy.max_attempts must be an integer >= 1")
        _positive("deadline", self.deadline)
        _positive("initial_backoff", self.initial_backoff, allow_zero=True)
        _positive("max_backoff", self.max_backoff, allow_zero=True)
        if self.max_backoff < self.initial_backoff:
            raise ConfigurationError("RetryPolicy.max_backoff must be >= initial_backoff")
        if not isinstance(self.jitter, bool):
            raise ConfigurationError("RetryPolicy.jitter must be True or False")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Parse a ``Retry-After`` header into seconds from now (>= 0).

    Args:
        value: Delta-seconds (``"120"``) or an HTTP date
            (``"Fri, 27 Nov 2026 16:00:00 GMT"``); ``None`` when the header is absent.
        now: The reference time for HTTP dates (aware); defaults to the current time.

    Returns:
        Seconds to wait, at most :data:`MAX_RETRY_AFTER` (a shared client's gate keeps
        the pause, so an absurd value must not stop a key for the life of a worker),
        or ``None`` when absent or unparseable.

    Example:
        >>> parse_retry_after("7")
        7.0
        >>> from datetime import datetime, timezone
        >>> parse_retry_after("Fri, 27 Nov 2026 16:00:30 GMT",
        ...                   now=datetime(2026, 11, 27, 16, 0, tzinfo=timezone.utc))
        30.0
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit() alone accepts "²"
        return min(float(value), MAX_RETRY_AFTER)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000" dates parse naive; HTTP dates are UTC
        moment = moment.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return min(max(0.0, (moment - now).total_seconds()), MAX_RETRY_AFTER)


def retry_after_of(exc: BaseException | None) -> float | None:
    """Return the ``Retry-After`` seconds an API error carried, if any."""
    if isinstance(exc, UseGrantAPIError):
        return exc.retry_after
    return None


class _BackoffOrRetryAfter(wait_base):
    """Wait what ``Retry-After`` asked for, else exponential backoff (full jitter)."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._backoff: wait_base
        if policy.jitter:
            self._backoff = wait_random_exponential(
                multiplier=policy.initial_backoff, max=policy.max_backoff
            )
        else:
            self._backoff = wait_exponential(
                multiplier=policy.initial_backoff, max=policy.max_backoff
            )

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        requested = retry_after_of(outcome.exception() if outcome else None)
        if requested is not None:
            return requested
        return float(self._backoff(retry_state))


def backoff_wait(policy: RetryPolicy) -> wait_base:
    """Return the tenacity wait strategy of ``policy`` (exposed for tests)."""
    return _BackoffOrRetryAfter(policy)


def _describe_failure(exc: BaseException | None) -> str:
    if isinstance(exc, UseGrantAPIError):
        return f"HTTP {exc.status_code}"
    if isinstance(exc, UseGrantConnectionError) and exc.__cause__ is not None:
        return type(exc.__cause__).__name__
    return type(exc).__name__


def _log_retry(policy: RetryPolicy) -> Callable[[RetryCallState], None]:
    """Log one WARNING line per call (its first retry); later retries log at DEBUG.

    An unreachable API used to print a warning per retry, four lines before the
    error itself; the first line now says how far the retries may go.
    """

    def before_sleep(retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        failure = _describe_failure(outcome.exception() if outcome else None)
        number = retry_state.attempt_number + 1
        if retry_state.attempt_number == 1:
            logger.warning(
                "UseGrant request failed (%s); retrying in %.2f s, attempt %d/%d "
                "(up to %d attempts within %g s; later retries log at DEBUG)",
                failure,
                retry_state.upcoming_sleep,
                number,
                policy.max_attempts,
                policy.max_attempts,
                policy.deadline,
            )
        else:
            logger.debug(
                "UseGrant request failed (%s); retrying in %.2f s, attempt %d/%d",
                failure,
                retry_state.upcoming_sleep,
                number,
                policy.max_attempts,
            )

    return before_sleep


def _sleep(seconds: float) -> None:
    if not _testing:
        time.sleep(seconds)


async def _asleep(seconds: float) -> None:
    if not _testing:
        import anyio  # only async users pay for it

        await anyio.sleep(seconds)


class _StopBeforeDeadline(stop_base):
    """Stop when the next attempt would start at or past the deadline.

    Time spent is the larger of the real elapsed time and the sum of the waits
    planned so far, so that :func:`set_testing` (which skips the sleeps) keeps the
    same number of attempts as production. ``excluded`` returns seconds that do not
    count (time spent queued for the request budget).
    """

    def __init__(self, deadline: float, excluded: Callable[[], float] | None = None) -> None:
        self._deadline = deadline
        self._excluded = excluded

    def __call__(self, retry_state: RetryCallState) -> bool:
        elapsed = retry_state.seconds_since_start or 0.0
        if self._excluded is not None:
            elapsed -= self._excluded()
        spent = max(elapsed, retry_state.idle_for)
        return spent + retry_state.upcoming_sleep >= self._deadline


def _stop(policy: RetryPolicy, excluded: Callable[[], float] | None) -> stop_base:
    return stop_after_attempt(policy.max_attempts) | _StopBeforeDeadline(policy.deadline, excluded)


def retrying(policy: RetryPolicy, excluded: Callable[[], float] | None = None) -> Retrying:
    """Return a tenacity ``Retrying`` that applies ``policy`` to a sync call.

    Args:
        policy: The retry policy.
        excluded: Returns seconds not counted against the deadline (budget waits).
    """
    return Retrying(
        sleep=_sleep,
        stop=_stop(policy, excluded),
        wait=_BackoffOrRetryAfter(policy),
        retry=retry_if_exception(is_transient),
        before_sleep=_log_retry(policy),
        reraise=True,
    )


def async_retrying(
    policy: RetryPolicy, excluded: Callable[[], float] | None = None
) -> AsyncRetrying:
    """Return a tenacity ``AsyncRetrying`` that applies ``policy`` to an async call.

    Args:
        policy: The retry policy.
        excluded: Returns seconds not counted against the deadline (budget waits).
    """
    return AsyncRetrying(
        sleep=_asleep,
        stop=_stop(policy, excluded),
        wait=_BackoffOrRetryAfter(policy),
        retry=retry_if_exception(is_transient),
        before_sleep=_log_retry(policy),
        reraise=True,
    )
