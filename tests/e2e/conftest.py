"""Shared end-to-end harness: a real Prefect server (API + UI), process workers, the emulator.

Everything under ``tests/e2e`` is marked ``e2e``. The fixtures here:

- ``prefect_server`` (session): ``prefect server start`` on a free loopback port with its own
  ``PREFECT_HOME``, the UI enabled and analytics off. It yields a :class:`PrefectServer`
  whose ``env`` is what every ``prefect`` subprocess (CLI, worker, and the flow-run processes
  the worker spawns) must get, plus helpers ``run_cli``, ``start_worker``, ``api`` and
  ``settings``. The server and all its children are killed at the end of the session.
- ``emulator`` (session): a local UseGrant API (``usegrant_flows.emulator.run_emulator``).
  Flow runs execute in worker subprocesses, so they reach it over loopback HTTP.
- ``registered_blocks`` (session): ``prefect block register -m usegrant_flows`` against it.
- ``credentials_block`` (session): a saved ``UseGrantCredentials`` block pointing at the
  emulator; its value is the block document name (``E2E_CREDENTIALS_BLOCK``).
- ``wheel_env`` (session): a virtual environment outside the checkout holding only the
  wheel built from it (the dependencies come from the test environment through a
  ``.pth`` line), and the environment variables to run it with.

No waits here are unbounded: each has a timeout in seconds and fails with the relevant
log tail.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

T = TypeVar("T")

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parents[1]
#: The ``prefect`` executable of the interpreter running the tests (the project's .venv).
PREFECT_BIN = str(Path(sys.executable).parent / "prefect")
#: Name under which ``credentials_block`` saves the ``UseGrantCredentials`` document.
E2E_CREDENTIALS_BLOCK = "e2e-emulator"

SERVER_START_TIMEOUT = 90.0  # seconds
CLI_TIMEOUT = 120.0  # seconds
WORKER_TIMEOUT = 180.0  # seconds
LOG_TAIL_CHARS = 6000


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test collected under tests/e2e with ``e2e``."""
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    """Return the last ``chars`` characters of a text file ('' if it does not exist)."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return ""


def kill_process_group(proc: subprocess.Popen[Any], grace: float = 15.0) -> None:
    """SIGTERM a process started with ``start_new_session=True`` and its children; SIGKILL late.

    Args:
        proc: The process (leader of its own process group).
        grace: Seconds to wait after SIGTERM before SIGKILL.
    """
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@dataclass
class PrefectServer:
    """A running ``prefect server start`` and helpers to drive it.

    Attributes:
        api_url: ``http://127.0.0.1:PORT/api``.
        ui_url: ``http://127.0.0.1:PORT`` (the UI's root; the server redirects to its default UI).
        home: The server's own ``PREFECT_HOME`` (database, logs, UI static files).
        env: Environment for every ``prefect`` subprocess: ``os.environ`` without any
            outer ``PREFECT_*`` variable, plus ``PREFECT_API_URL``, ``PREFECT_HOME`` and
            quiet, prompt-free CLI settings.
        log_path: Where the server writes its stdout and stderr.
    """

    api_url: str
    ui_url: str
    home: Path
    env: dict[str, str]
    log_path: Path
    logs_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.logs_dir = self.home / "subprocess-logs"
        self.logs_dir.mkdir(parents=True, exist_ok=True)

    def run_cli(
        self,
        *args: str,
        cwd: str | Path | None = None,
        check: bool = True,
        timeout: float = CLI_TIMEOUT,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``prefect *args`` against this server and return the finished process.

        Args:
            *args: Arguments after ``prefect``, e.g. ``("--no-prompt", "deploy", "--all")``.
            cwd: Working directory (default: the repository root).
            check: Raise ``AssertionError`` with the output when the exit code is not 0.
            timeout: Seconds before the command is killed and the test fails.
            env: Extra environment variables on top of :attr:`env`.

        Returns:
            The completed process; ``stdout`` holds stdout and stderr together.
        """
        full_env = {**self.env, **(env or {})}
        try:
            proc = subprocess.run(
                [PREFECT_BIN, *args],
                cwd=str(cwd or REPO_ROOT),
                env=full_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                check=False,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as exc:
            output = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else ""
            raise AssertionError(
                f"`prefect {' '.join(args)}` did not finish within {timeout} s:\n"
                f"{(output or '')[-LOG_TAIL_CHARS:]}"
            ) from None
        if check and proc.returncode != 0:
            raise AssertionError(
                f"`prefect {' '.join(args)}` exited with {proc.returncode}:\n"
                f"{proc.stdout[-LOG_TAIL_CHARS:]}"
            )
        return proc

    def start_worker(
        self,
        pool: str,
        *,
        run_once: bool = True,
        timeout: float = WORKER_TIMEOUT,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        """Run a process worker on ``pool`` and return its output once it has stopped.

        With ``run_once`` the worker polls once, runs the flow runs that are due (in
        subprocesses) and exits when they have finished; the test fails if that takes
        more than ``timeout`` seconds. Without it, the worker keeps polling for
        ``timeout`` seconds and is then stopped (SIGTERM); that is not a failure.

        Args:
            pool: Work pool name (created as a ``process`` pool if it does not exist).
            run_once: Poll once and exit after the submitted runs finish.
            timeout: Seconds to wait (see above).
            cwd: Working directory of the worker (default: the repository root).
            env: Extra environment variables for the worker and its flow runs.

        Returns:
            The worker's stdout and stderr (also kept under ``home/subprocess-logs``).
        """
        args = [PREFECT_BIN, "worker", "start", "--pool", pool, "--type", "process"]
        args += ["--install-policy", "never"]
        if run_once:
            args.append("--run-once")
        log_path = self.logs_dir / f"worker-{pool}-{time.monotonic_ns()}.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                args,
                cwd=str(cwd or REPO_ROOT),
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_process_group(proc)
                if run_once:
                    raise AssertionError(
                        f"worker on pool {pool!r} did not finish within {timeout} s:\n"
                        f"{tail(log_path)}"
                    ) from None
            finally:
                kill_process_group(proc)
        output = log_path.read_text(errors="replace")
        if run_once and proc.returncode != 0:
            raise AssertionError(
                f"worker on pool {pool!r} exited with {proc.returncode}:\n"
                f"{output[-LOG_TAIL_CHARS:]}"
            )
        return output

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the server's REST API and return the decoded JSON answer (None if empty).

        Args:
            method: HTTP method, e.g. ``"POST"``.
            path: Path under ``/api``, e.g. ``"/flow_runs/filter"``.
            **kwargs: Passed to :meth:`httpx.Client.request` (``json=...``, ``params=...``).
        """
        with httpx.Client(base_url=self.api_url, timeout=30.0) as client:
            response = client.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def wait_for_flow_run(
        self, flow_run_id: str, *, timeout: float = WORKER_TIMEOUT, poll: float = 1.0
    ) -> dict[str, Any]:
        """Poll a flow run until its state is final and return it (the API's JSON).

        Args:
            flow_run_id: The flow run's id.
            timeout: Seconds before the test fails.
            poll: Seconds between polls.
        """
        deadline = time.monotonic() + timeout
        while True:
            flow_run: dict[str, Any] = self.api("GET", f"/flow_runs/{flow_run_id}")
            state_type = (flow_run.get("state") or {}).get("type")
            if state_type in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
                return flow_run
            if time.monotonic() > deadline:
                raise AssertionError(f"flow run {flow_run_id} still {state_type} after {timeout} s")
            time.sleep(poll)

    @contextlib.contextmanager
    def settings(self) -> Iterator[None]:
        """Point Prefect clients created in THIS thread at the server, temporarily.

        Prefer :meth:`call`: in a thread where an event loop is running (Playwright's
        sync API runs one), Prefect's sync-compatible methods return coroutines.
        """
        from prefect.settings import PREFECT_API_URL, temporary_settings

        _drain_events_workers()
        try:
            with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
                yield
        finally:
            _drain_events_workers()

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 60.0, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` with Prefect pointed at the server, in a fresh thread.

        The fresh thread has no event loop, so Prefect's sync API behaves as sync there
        whatever runs in the test's thread (pytest-asyncio, Playwright).

        Args:
            fn: A callable using Prefect's client API, e.g. ``Secret.load``.
            *args: Its positional arguments.
            timeout: Seconds to wait for it.
            **kwargs: Its keyword arguments.

        Returns:
            What ``fn`` returned (its exception is raised here).

        Example: ``prefect_server.call(lambda: Secret.load("name").get())``.
        """

        def run() -> T:
            with self.settings():
                return fn(*args, **kwargs)

        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(run).result(timeout=timeout)


def _drain_events_workers() -> None:
    """Stop Prefect's per-process events worker, flushing what it holds.

    The worker binds to the API URL in force when it starts and is then reused by the
    whole process: without this, events emitted here would go to the test harness, and
    later tests' events (task runs included) to this server.
    """
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=30, at_exit=False)


def _server_env(home: Path, api_url: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="true",
        PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false",
        # The server copies the UI bundles into this directory; the default would be
        # inside site-packages, shared (and raced over) by parallel servers.
        PREFECT_SERVER_UI_STATIC_DIRECTORY=str(home / "ui-static"),
        # A run that finds its deployment's slot taken (ENQUEUE) is due again after this
        # many seconds (Prefect's default: 30); the tests queue runs behind each other.
        PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS="5",
        PREFECT_CLI_PROMPT="false",
        PREFECT_CLI_COLORS="false",
        PREFECT_CLI_WRAP_LINES="false",
        PYTHONUNBUFFERED="1",
    )
    return env


def _wait_until_up(proc: subprocess.Popen[Any], server: PrefectServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(
                    f"prefect server exited with {proc.returncode} during start:\n"
                    f"{tail(server.log_path)}"
                )
            try:
                health = client.get(f"{server.api_url}/health")
                ui = client.get(f"{server.ui_url}/ui-settings")
                if health.status_code == 200 and ui.status_code == 200:
                    return
                last_error = f"health {health.status_code}, ui-settings {ui.status_code}"
            except httpx.TransportError as exc:
                last_error = repr(exc)
            time.sleep(0.5)
    raise AssertionError(
        f"prefect server not up after {timeout} s ({last_error}):\n{tail(server.log_path)}"
    )


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A real Prefect server (API and UI) on a free loopback port, for the whole session."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    server = PrefectServer(
        api_url=api_url,
        ui_url=f"http://127.0.0.1:{port}",
        home=home,
        env=_server_env(home, api_url),
        log_path=home / "server.log",
    )
    with server.log_path.open("w") as log:
        proc = subprocess.Popen(
            [PREFECT_BIN, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            cwd=str(home),
            env=server.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_until_up(proc, server, SERVER_START_TIMEOUT)
        yield server
    finally:
        kill_process_group(proc)


@pytest.fixture(scope="session")
def emulator() -> Iterator[Any]:
    """A local UseGrant API on a free loopback port, for the whole session.

    Yields the object of ``usegrant_flows.emulator.run_emulator``: ``.base_url``,
    ``.api_key``, ``.seed``, ``.jwks_url``, ``.stats()``, ``.set_faults(...)``.
    """
    from usegrant_flows.emulator import run_emulator

    with run_emulator() as emu:
        yield emu


@pytest.fixture(scope="session")
def registered_blocks(prefect_server: PrefectServer) -> None:
    """Register this package's block types on the server, the way a user does."""
    prefect_server.run_cli("block", "register", "-m", "usegrant_flows")


@pytest.fixture(scope="session")
def credentials_block(prefect_server: PrefectServer, registered_blocks: None, emulator: Any) -> str:
    """Save a ``UseGrantCredentials`` block that points at the emulator; return its name."""
    from pydantic import SecretStr

    from usegrant_flows.credentials import UseGrantCredentials

    block = UseGrantCredentials(api_key=SecretStr(emulator.api_key), base_url=emulator.base_url)
    prefect_server.call(block.save, E2E_CREDENTIALS_BLOCK, overwrite=True)
    return E2E_CREDENTIALS_BLOCK


def _run_quiet(args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="session")
def wheel_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A virtual environment holding only our wheel, in a folder outside the checkout.

    The wheel is built from this checkout and installed without its dependencies; they
    come from the test environment's site-packages through a ``.pth`` line, which Python
    does not scan for further ``.pth`` files, so the editable checkout stays out of
    reach. Returns the venv and an environment without ``PREFECT_*``/``PYTHON*``
    variables, with ``HOME`` and ``PREFECT_HOME`` in the venv's folder (which also
    holds an empty folder, ``empty``, to run commands in).
    """
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PYTHON"))}
    _run_quiet(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(dist),
            str(REPO_ROOT),
        ],
        cwd=base,
        env=env,
        timeout=600,
    )
    [wheel] = dist.glob("usegrant_flows-*.whl")
    venv = base / "venv"
    _run_quiet([sys.executable, "-m", "venv", str(venv)], cwd=base, env=env, timeout=300)
    python = venv / "bin" / "python"
    _run_quiet(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        cwd=base,
        env=env,
        timeout=300,
    )
    site = _run_quiet(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        cwd=base,
        env=env,
        timeout=60,
    ).strip()
    (Path(site) / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (base / "empty").mkdir()
    return venv, {**env, "HOME": str(base), "PREFECT_HOME": str(base / "prefect-home")}
