"""Per-target advisory file locks, so overlapping rotations never mint or write together.

Scope: **one machine**. A lock is ``flock(2)`` on a file in a lock directory (by default
``$PREFECT_HOME/usegrant-flows/locks``; every flow run that should coordinate must use
the same directory). ``flock`` locks belong to an open file description, so two runs in
one process exclude each other as well as two processes. Runs on different machines do
not see each other's locks: coordinating those comes with the quota work (a shared
budget per API key).

Lock files are never deleted (deleting a lock file that another process has open is a
classic race); each is empty and named by a hash of the target's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from usegrant_flows.api.errors import UseGrantError

__all__ = ["LockTimeoutError", "TargetLocks"]


class LockTimeoutError(UseGrantError):
    """Raised when another run held a target's lock for longer than the wait allowed."""


class TargetLocks:
    """Advisory locks, one per target name, in a directory.

    Args:
        directory: Where lock files live; created with mode 0700 when missing.
        timeout: Seconds to wait for a busy lock before giving up (> 0).
    """

    def __init__(self, directory: str | Path, *, timeout: float = 120.0) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")
        self.directory = Path(directory)
        self.timeout = timeout
        self._directory_ready = False

    def path_for(self, name: str) -> Path:
        """Return the lock file of target ``name``."""
        digest = hashlib.sha256(name.encode()).hexdigest()[:32]
        return self.directory / f"{digest}.lock"

    @contextlib.asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        """Hold the lock of target ``name`` for the body of an ``async with``.

        Waits without blocking the event loop (non-blocking attempts, growing pauses of
        10..250 ms).

        Raises:
            LockTimeoutError: When the lock stayed busy for :attr:`timeout` seconds.
        """
        if not self._directory_ready:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._directory_ready = True
        fd = os.open(self.path_for(name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + self.timeout
            pause = 0.01
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeoutError(
                            f"another run held target {name!r} for over {self.timeout:g} s"
                        ) from None
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 0.25)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
