"""The demo's own Prefect API: started early, waited for with a bound that fits a slow machine.

Prefect's embedded API takes 7 s to start on a quiet machine and 14-25 s under load,
past Prefect's default 20 s limit; :class:`PrefectServer` starts it in a child process
the demo owns, waits up to :func:`api_startup_timeout` seconds while saying what it
waits for, and stops it with the demo.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    # Prefect is imported only once its environment is set (see _prepare_prefect).

    pass

__all__ = [
    "DEFAULT_API_STARTUP_TIMEOUT",
    "EXIT_CONFIGURATION",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "OUTER_SETTINGS",
    "STARTUP_TIMEOUT_VARIABLE",
    "DemoError",
    "PrefectServer",
    "api_startup_timeout",
    "flush_prefect",
    "prefect_settings",
    "prepare_prefect",
]

#: Exit statuses: a failed demo, a bad setting, an interrupted demo.
EXIT_FAILED = 1
EXIT_CONFIGURATION = 2
EXIT_INTERRUPTED = 130

# Outer Prefect settings that would point the demo at another API or profile.
OUTER_SETTINGS = ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE", "PREFECT_PROFILES_PATH")

#: Prefect's own setting for how long to wait for its embedded API; the demo honours it.
STARTUP_TIMEOUT_VARIABLE = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"

#: Seconds to wait for the Prefect API when the user set no limit. Prefect's default
#: (20 s) is shorter than a first start on a busy machine (14-25 s measured).
DEFAULT_API_STARTUP_TIMEOUT = 120.0

#: Seconds the Prefect server gets to stop after SIGTERM before it is killed.
SERVER_STOP_TIMEOUT = 10.0

#: Seconds between two health checks of the starting Prefect API.
_POLL_INTERVAL = 0.2

#: Times a server is restarted on another port when its port was taken meanwhile.
_PORT_ATTEMPTS = 3


class DemoError(Exception):
    """A demo failure explained in one line: what happened and what to do.

    Attributes:
        status: The exit status for this failure.
    """

    def __init__(self, message: str, status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.status = status


def api_startup_timeout(environ: dict[str, str] | None = None) -> float:
    """Return the seconds to wait for the Prefect API to start.

    Args:
        environ: The environment to read; ``None`` for ``os.environ``.

    Returns:
        ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` when set, else
        :data:`DEFAULT_API_STARTUP_TIMEOUT` (120 s).

    Raises:
        DemoError: With status 2 when the variable is not a positive number.

    Example:
        >>> api_startup_timeout({})
        120.0
        >>> api_startup_timeout({"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300"})
        300.0
    """
    raw = (os.environ if environ is None else environ).get(STARTUP_TIMEOUT_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_API_STARTUP_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise DemoError(
            f"{STARTUP_TIMEOUT_VARIABLE} must be a positive number of seconds, not {raw!r}",
            EXIT_CONFIGURATION,
        )
    return seconds


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _parent_death_signal() -> Callable[[], None] | None:
    """Return a ``preexec_fn`` that makes a Linux child get SIGTERM when we die.

    Without it, a demo killed with SIGKILL would leave its Prefect server running.
    The libc function is looked up here, in the parent, so that the child (a fork that
    may hold other threads' locks) only makes one C call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_pdeathsig() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return set_pdeathsig


class PrefectServer:
    """A temporary Prefect API server in a child process, on a free loopback port.

    It is Prefect's public ``prefect server start`` with ``--no-services`` and the UI
    off: the same API and database as Prefect's embedded (ephemeral) server, but
    started by us, early, with its output in a log file and a start-up limit we choose.
    Starting it ourselves also spares the demo process the import of Prefect's server
    code (about 3-6 s) that the embedded mode makes before it even starts the server.

    Args:
        log_path: File that receives the server's stdout and stderr.
        environ: Environment of the server (``PREFECT_HOME`` and friends).
    """

    def __init__(self, log_path: Path, environ: dict[str, str]) -> None:
        self.log_path = log_path
        self._environ = {**environ, "PREFECT_SERVER_UI_ENABLED": "false"}
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._attempts = 0
        self.port = 0
        #: ``time.monotonic()`` of the first start, and of the first healthy answer.
        self.started_at = 0.0
        self.ready_at = 0.0

    @property
    def api_url(self) -> str:
        """The API URL to give Prefect clients: ``http://127.0.0.1:<port>/api``."""
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> None:
        """Start the server process and return at once (see :meth:`wait_ready`)."""
        if not self.started_at:
            self.started_at = time.monotonic()
        self._attempts += 1
        self.port = _free_port()
        if self._log is None:
            self._log = self.log_path.open("ab")
        self._log.write(f"--- prefect server start on 127.0.0.1:{self.port}\n".encode())
        self._log.flush()
        self._process = subprocess.Popen(  # noqa: S603 (our interpreter, fixed arguments)
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-services",
            ],
            env=self._environ,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_parent_death_signal(),
        )

    def wait_ready(self, timeout: float) -> float:
        """Wait until the API answers its health check.

        Args:
            timeout: Seconds since the first :meth:`start` after which to give up.

        Returns:
            Seconds from the first start to the first healthy answer.

        Raises:
            DemoError: The server exited, or did not answer within ``timeout``.
        """
        import httpx

        deadline = self.started_at + timeout
        with httpx.Client(timeout=httpx.Timeout(2.0)) as client:
            while True:
                process = self._process
                assert process is not None, "start() first"
                status = process.poll()
                if status is not None:
                    if self._attempts < _PORT_ATTEMPTS and self._port_was_taken():
                        self.start()
                        continue
                    raise DemoError(
                        f"the Prefect API server exited with status {status} before it "
                        f"answered; its output is in {self.log_path} (if it names a "
                        f"database error, delete {self._environ.get('PREFECT_HOME')} "
                        "and run the demo again)"
                    )
                try:
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        self.ready_at = time.monotonic()
                        return self.ready_at - self.started_at
                except httpx.TransportError:
                    pass  # not listening yet
                if time.monotonic() >= deadline:
                    raise DemoError(
                        f"the Prefect API did not answer within {timeout:g} s "
                        f"({self.api_url}/health; server output in {self.log_path}); "
                        f"on a slow or busy machine wait longer: "
                        f"{STARTUP_TIMEOUT_VARIABLE}=300 usegrant-flows demo"
                    )
                time.sleep(_POLL_INTERVAL)

    def _port_was_taken(self) -> bool:
        # Another process may bind the free port between our probe and the server's bind.
        with contextlib.suppress(OSError):
            tail = self.log_path.read_bytes()[-4000:]
            return b"already in use" in tail
        return False

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=SERVER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def prefect_settings(home: Path, timeout: float) -> dict[str, str]:
    """Prefect settings shared by the demo's server and the demo process itself."""
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # Only used if something starts Prefect's embedded server after all.
        "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
        STARTUP_TIMEOUT_VARIABLE: str(math.ceil(timeout)),
    }


def prepare_prefect(settings: dict[str, str], api_url: str) -> None:
    """Point this process's Prefect at the demo's server and home (before import)."""
    for name in OUTER_SETTINGS:
        os.environ.pop(name, None)
    os.environ.update(settings)
    os.environ["PREFECT_API_URL"] = api_url
    # Prefect's console handlers print tracebacks; the demo's own line replaces them on
    # stderr, and _log_to_file() keeps them in demo.log.
    os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "CRITICAL"
    os.environ["PREFECT_LOGGING_HANDLERS_DEBUG_LEVEL"] = "CRITICAL"


def flush_prefect() -> None:
    """Send Prefect's queued logs and events while its server still runs (best effort).

    Otherwise they would be sent at interpreter exit, to a server that is gone.
    """
    with contextlib.suppress(Exception):
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)
    with contextlib.suppress(Exception):
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=5)
