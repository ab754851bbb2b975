"""Where the library reads time and waits: one injectable clock instead of global switches.

Code that waits (the key gate, the request budget, the rotation runner) takes a
:class:`Clock`; production uses :data:`SYSTEM_CLOCK`, tests pass one whose ``sleep``
only advances a counter, so no test depends on how fast the machine is.

Example:
    >>> now = [0.0]
    >>> def advance(seconds: float) -> None:
    ...     now[0] += seconds
    >>> clock = Clock(monotonic=lambda: now[0], sleep=advance)
    >>> clock.sleep(2.5); clock.monotonic()
    2.5
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["SYSTEM_CLOCK", "Clock"]


@dataclass(frozen=True)
class Clock:
    """A monotonic time source with the sleeps that go with it.

    Attributes:
        monotonic: Seconds from an arbitrary origin, never going back.
        sleep: Blocks the calling thread for the given seconds (>= 0).
        async_sleep: Waits the given seconds without blocking the event loop; ``None``
            (the default) means :func:`asyncio.sleep` for the real ``time.sleep``, and
            ``sleep`` itself for a fake one, so a test clock needs only ``monotonic``
            and ``sleep``.
    """

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    async_sleep: Callable[[float], Awaitable[None]] | None = None

    async def asleep(self, seconds: float) -> None:
        """Wait ``seconds`` (>= 0) without blocking the event loop (see ``async_sleep``)."""
        if self.async_sleep is not None:
            await self.async_sleep(seconds)
        elif self.sleep is time.sleep:
            await asyncio.sleep(seconds)
        else:
            self.sleep(seconds)


#: The real clock: ``time.monotonic``, ``time.sleep`` and ``asyncio.sleep``.
SYSTEM_CLOCK = Clock()
