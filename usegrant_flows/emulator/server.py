"""Run the emulator: in a background thread (:func:`run_emulator`) or in the foreground.

The server is uvicorn (h11) with a protocol that can close a connection without an
answer, which is how ``drop_rate`` works and how slow or endless bodies are cut off.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from usegrant_flows.api.errors import ConfigurationError, UseGrantError
from usegrant_flows.emulator.answers import DROP_EXTENSION
from usegrant_flows.emulator.app import create_app
from usegrant_flows.emulator.faults import Faults
from usegrant_flows.emulator.seed import Seed, load_seed
from usegrant_flows.emulator.state import EmulatorState

__all__ = ["RunningEmulator", "bind_socket", "build_server", "make_state", "run_emulator"]

#: Seconds :func:`run_emulator` waits for the server to start, and then to stop.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


class _DroppingH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus a scope extension that closes the connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inner = self.app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                scope.setdefault("extensions", {})[DROP_EXTENSION] = self._drop
            await inner(scope, receive, send)

        self.app = app

    def _drop(self) -> None:
        # abort(): close at once, write nothing that may still be buffered.
        self.transport.abort()


def make_state(
    seed: Seed | dict[str, Any] | str | Path | None = None,
    *,
    random_seed: int | None = None,
    **faults: Any,
) -> EmulatorState:
    """Build the emulator's state from a seed and fault settings.

    Args:
        seed: See :func:`~usegrant_flows.emulator.seed.load_seed`.
        random_seed: Seed of the fault draws; ``None`` for a random one.
        **faults: :class:`~usegrant_flows.emulator.faults.Faults` fields.

    Raises:
        ConfigurationError: A bad seed or fault setting.
    """
    state = EmulatorState(load_seed(seed), Faults(), random_seed)
    state.set_faults(**faults)
    return state


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind a listening TCP socket (port 0 picks a free one).

    Raises:
        ConfigurationError: The address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listening socket names its protocol; without it every answer waits ~40 ms
    # (Nagle's algorithm against the client's delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class _EmulatorServer(uvicorn.Server):
    """uvicorn's server, telling slow and endless bodies to end as it shuts down."""

    def __init__(self, config: uvicorn.Config, state: EmulatorState) -> None:
        super().__init__(config)
        self._state = state

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Else open streams hold the shutdown for the whole graceful timeout (5 s).
        self._state.close()
        await super().shutdown(sockets)


def build_server(state: EmulatorState) -> uvicorn.Server:
    """Return a uvicorn server for the emulator app (quiet: warnings only, no access log)."""
    config = uvicorn.Config(
        create_app(state),
        http=_DroppingH11Protocol,
        ws="none",
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return _EmulatorServer(config, state)


class RunningEmulator:
    """A running emulator, as yielded by :func:`run_emulator`.

    Attributes:
        base_url: ``http://127.0.0.1:<port>``, the API base URL to give a client.
        api_key: The first API key of the seed (an emulator key, not a real one).
        seed: The parsed seed: ``seed.providers[i].id``, ``.clients[j].id``,
            ``.audience`` ...
        jwks_url: ``<base_url>/.well-known/jwks``.
        state: The live state behind the server (faults, keys, counters).
    """

    def __init__(self, base_url: str, state: EmulatorState) -> None:
        self.base_url = base_url
        self.state = state
        self.seed: Seed = state.seed
        self.api_key = state.seed.api_keys[0].get_secret_value()
        self.jwks_url = f"{base_url}/.well-known/jwks"
        self._initial_faults = state.faults

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self.state.faults

    def stats(self) -> dict[str, Any]:
        """Return the request counters (same data as ``GET /_emulator/stats``)."""
        return self.state.stats()

    def reset_stats(self) -> None:
        """Zero the counters and empty the rate limiter."""
        self.state.reset_stats()

    def set_faults(self, *, random_seed: int | None = None, **faults: Any) -> Faults:
        """Change faults at run time; unnamed ones keep their value.

        Args:
            random_seed: When given, re-seed the fault draws.
            **faults: :class:`~usegrant_flows.emulator.faults.Faults` fields:
                ``latency_ms``, ``fail_rate``, ``fail_status``, ``rate_limit``,
                ``rate_window``, ``drop_rate``, the hostile ``*_rate`` fields,
                ``slow_body_interval_ms`` and ``stream_limit_s``.

        Returns:
            The faults now in force.

        Raises:
            ConfigurationError: An unknown name or a value out of range.
        """
        return self.state.set_faults(random_seed=random_seed, **faults)

    def reset(self, *, random_seed: int | None = None) -> None:
        """Restore the start-up faults and zero the counters.

        Args:
            random_seed: When given, re-seed the fault draws.
        """
        self.state.set_faults(random_seed=random_seed, **self._initial_faults.model_dump())
        self.state.reset_stats()

    def __repr__(self) -> str:
        return f"RunningEmulator(base_url={self.base_url!r})"


@contextmanager
def run_emulator(
    seed: Seed | dict[str, Any] | str | Path | None = None,
    *,
    latency_ms: float = 0,
    fail_rate: float = 0.0,
    fail_status: int = 503,
    rate_limit: int | None = None,
    rate_window: float = 3600.0,
    drop_rate: float = 0.0,
    slow_body_rate: float = 0.0,
    slow_body_interval_ms: float = 2000.0,
    endless_body_rate: float = 0.0,
    expired_rate: float = 0.0,
    bad_signature_rate: float = 0.0,
    alg_none_rate: float = 0.0,
    oversize_rate: float = 0.0,
    nested_rate: float = 0.0,
    garbage_rate: float = 0.0,
    stream_limit_s: float = 120.0,
    random_seed: int | None = None,
) -> Iterator[RunningEmulator]:
    """Run the emulator on a free 127.0.0.1 port in a background thread.

    The server is up when the block starts and stopped (connections closed, thread
    joined) when it ends.

    Args:
        seed: A :class:`~usegrant_flows.emulator.seed.Seed`, a dict, a path to a JSON
            seed file, or ``None`` for the default seed (random API key).
        latency_ms: Milliseconds added to every answer, 0..60000.
        fail_rate: Share of token requests answered with ``fail_status``, 0..1.
        fail_status: Status of the injected failures, 400..599.
        rate_limit: Requests per API key per ``rate_window``; ``None`` for no limit.
        rate_window: Rate-limit window in seconds (default 3600).
        drop_rate: Share of token requests closed without an answer, 0..1.
        slow_body_rate: Share of token requests whose 201 body comes one byte every
            ``slow_body_interval_ms``, 0..1.
        slow_body_interval_ms: Milliseconds between two bytes of a slow body, 1..600000.
        endless_body_rate: Share of token requests whose 201 body never ends, 0..1.
        expired_rate: Share of token requests given a token expired an hour ago, 0..1.
        bad_signature_rate: Share of token requests given a token signed by a rogue key
            under the real ``kid``, 0..1.
        alg_none_rate: Share of token requests given an ``alg: none`` token, 0..1.
        oversize_rate: Share of token requests given a body over 2 MiB, 0..1.
        nested_rate: Share of token requests given 100000 levels of nested JSON, 0..1.
        garbage_rate: Share of token requests given a body that is not JSON, 0..1.
        stream_limit_s: Seconds after which a slow or endless body is cut off,
            0 < s <= 3600.
        random_seed: Seed of the fault draws, for reproducible runs. All ``*_rate``
            fields together must not exceed 1 (see :mod:`.faults`).

    Yields:
        The :class:`RunningEmulator`.

    Raises:
        ConfigurationError: A bad seed or fault setting.
        UseGrantError: The server did not start within 15 seconds.

    Example:
        >>> import httpx
        >>> with run_emulator() as emu:
        ...     provider = emu.seed.providers[0]
        ...     path = f"/v1/providers/{provider.id}/clients/{provider.clients[0].id}/tokens"
        ...     auth = {"Authorization": f"Bearer {emu.api_key}"}
        ...     httpx.post(emu.base_url + path, headers=auth).status_code
        201
    """
    state = make_state(
        seed,
        random_seed=random_seed,
        latency_ms=latency_ms,
        fail_rate=fail_rate,
        fail_status=fail_status,
        rate_limit=rate_limit,
        rate_window=rate_window,
        drop_rate=drop_rate,
        slow_body_rate=slow_body_rate,
        slow_body_interval_ms=slow_body_interval_ms,
        endless_body_rate=endless_body_rate,
        expired_rate=expired_rate,
        bad_signature_rate=bad_signature_rate,
        alg_none_rate=alg_none_rate,
        oversize_rate=oversize_rate,
        nested_rate=nested_rate,
        garbage_rate=garbage_rate,
        stream_limit_s=stream_limit_s,
    )
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = build_server(state)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"usegrant-emulator-{port}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise UseGrantError(f"the emulator did not start within {START_TIMEOUT:g} seconds")
            time.sleep(0.01)
        yield RunningEmulator(f"http://127.0.0.1:{port}", state)
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT)
        sock.close()
