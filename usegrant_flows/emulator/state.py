"""The emulator's shared state: seed, keys, faults, fault draws, limiter and counters."""

from __future__ import annotations

import hmac
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import ValidationError

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.emulator.faults import Faults, pick_fault
from usegrant_flows.emulator.keys import SigningKey
from usegrant_flows.emulator.limiter import SlidingWindowLimiter
from usegrant_flows.emulator.seed import Seed
from usegrant_flows.emulator.stats import RequestStats

__all__ = ["EmulatorState"]


class EmulatorState:
    """Seed, keys, faults, limiter and counters shared by the app and its owner.

    Every method is thread-safe: the app runs in the server's event loop while tests
    read stats and change faults from their own thread.

    Args:
        seed: What to serve.
        faults: Initial faults.
        random_seed: Seed of the fault draws (see :mod:`.faults`); ``None`` for a
            random one.

    Attributes:
        seed: The seed served.
        keys: Each provider's signing key, by provider id.
        rogue_keys: Each provider's impostor key (same ``kid``, other private key), for
            the ``bad_signature`` fault.
    """

    def __init__(self, seed: Seed, faults: Faults, random_seed: int | None = None) -> None:
        self.seed = seed
        self.keys: dict[uuid.UUID, SigningKey] = {
            provider.id: SigningKey.generate() for provider in seed.providers
        }
        self.rogue_keys: dict[uuid.UUID, SigningKey] = {
            provider_id: key.impostor() for provider_id, key in self.keys.items()
        }
        self._api_keys = [key.get_secret_value().encode() for key in seed.api_keys]
        self._lock = threading.Lock()
        self._faults = faults
        self._random = random.Random(random_seed)  # noqa: S311 - fault injection, not crypto
        self._limiter = SlidingWindowLimiter()
        self._stats = RequestStats(time.monotonic())
        self._active_streams = 0
        self._closing = threading.Event()

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._faults

    def set_faults(self, *, random_seed: int | None = None, **changes: Any) -> Faults:
        """Change some faults; unnamed ones keep their value.

        Args:
            random_seed: When given, re-seed the fault draws.
            **changes: :class:`Faults` fields.

        Returns:
            The faults now in force.

        Raises:
            ConfigurationError: An unknown name or a value out of range.
        """
        with self._lock:
            try:
                faults = Faults.model_validate({**self._faults.model_dump(), **changes})
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in err['loc']) or 'faults'}: {err['msg']}"
                    for err in exc.errors(include_input=False)
                )
                raise ConfigurationError(f"invalid emulator faults: {problems}") from None
            self._faults = faults
            if random_seed is not None:
                self._random.seed(random_seed)
            return faults

    def draw(self) -> float:
        """Return the next random number in [0, 1) of the fault draws."""
        with self._lock:
            return self._random.random()

    def draw_fault(self) -> str | None:
        """Draw the fault of one token request (see :func:`.faults.pick_fault`).

        Returns:
            A fault name, or ``None`` for a sound answer.
        """
        with self._lock:
            return pick_fault(self._faults, self._random.random())

    def is_api_key(self, presented: str) -> bool:
        """Tell whether ``presented`` is one of the seed's API keys (constant time)."""
        raw = presented.encode()
        return any(hmac.compare_digest(raw, key) for key in self._api_keys)

    def admit(self, api_key: str) -> int | None:
        """Apply the rate limit; return ``None`` or the seconds of ``Retry-After``."""
        with self._lock:
            limit = self._faults.rate_limit
            if limit is None:
                return None
            return self._limiter.acquire(
                api_key, limit=limit, window=self._faults.rate_window, now=time.monotonic()
            )

    def token_call(self) -> None:
        """Count the arrival of a token request."""
        with self._lock:
            self._stats.token_call(time.monotonic())

    def answered(
        self, route: str, outcome: str, client_id: str | None = None, fault: str | None = None
    ) -> None:
        """Count how a request ended (see :meth:`.stats.RequestStats.answered`)."""
        with self._lock:
            self._stats.answered(route, outcome, client_id, fault)

    @contextmanager
    def stream(self) -> Iterator[None]:
        """Count a streamed answer as active while the block runs."""
        with self._lock:
            self._active_streams += 1
        try:
            yield
        finally:
            with self._lock:
                self._active_streams -= 1

    @property
    def closing(self) -> bool:
        """Whether the server is shutting down (streams must end)."""
        return self._closing.is_set()

    def close(self) -> None:
        """Tell running streams to end: the server is about to stop."""
        self._closing.set()

    def stats(self) -> dict[str, Any]:
        """Return the counters as JSON-ready data.

        Returns:
            :meth:`.stats.RequestStats.snapshot`, plus ``active_streams``: the slow or
            endless bodies being sent now (a gauge, not zeroed by a reset).
        """
        with self._lock:
            snapshot = self._stats.snapshot(self._faults.rate_window)
            snapshot["active_streams"] = self._active_streams
            return snapshot

    def reset_stats(self) -> None:
        """Zero the counters and the per-window call log, and empty the rate limiter."""
        with self._lock:
            self._stats = RequestStats(time.monotonic())
            self._limiter.clear()

    def jwks(self) -> dict[str, Any]:
        """Return the JWK set of every provider's public key."""
        return {"keys": [key.public_jwk() for key in self.keys.values()]}
