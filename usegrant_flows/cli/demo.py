"""The README's main job: the token rotation end to end on this machine, nothing to set up.

``usegrant-flows demo`` (or ``python -m usegrant_flows.cli.demo``):

1. starts a temporary Prefect API server (``prefect server start --no-services``, no
   UI) on a free loopback port, with its own ``PREFECT_HOME`` under ``./demo/``, so your
   own Prefect settings and server are left alone. It is started first, in a child
   process, because it is the slow part (its first start creates its database: 5-10 s
   on a quiet machine, 15-40 s on a busy one); the rest overlaps with it;
2. starts the UseGrant emulator on a free loopback port (real ES256 JWTs, JWKS);
3. waits for the Prefect API to answer, up to ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``
   (120 s unless you set it), showing what it waits for and for how long;
4. saves a ``UseGrantCredentials`` block pointing at the emulator, then runs the
   rotation flow (``rotate_targets``, :mod:`usegrant_flows.rotation.rotate_flow`) for the
   emulator's three clients (AWS, GCP and Azure audiences): each token goes to a file
   ``./demo/tokens/<client>.jwt`` (mode 0600) and a Prefect Secret block
   ``usegrant-demo-<client>``. The first run is forced (``force=True``): each emulator
   start has new signing keys, so tokens left by an earlier demo would look fresh but
   no longer verify;
5. verifies every token against the emulator's JWKS and prints a table;
6. runs the flow again: every token is fresh, so it is skipped with zero API calls
   (the emulator's request counters prove it);
7. prints the time of each phase.

Any failure is one line on stderr saying what to do, and a non-zero exit status (1, or
2 for a bad setting, 130 when interrupted); never a traceback. Prefect's own warnings
and errors go to ``./demo/demo.log``, the server's output to
``./demo/prefect-server.log``. The demo must run in a fresh process: Prefect reads its
settings when first imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from usegrant_flows.api.errors import ConfigurationError, UseGrantError
from usegrant_flows.cli.demo_report import print_first_run
from usegrant_flows.cli.demo_server import (
    DEFAULT_API_STARTUP_TIMEOUT,
    EXIT_CONFIGURATION,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    OUTER_SETTINGS,
    STARTUP_TIMEOUT_VARIABLE,
    DemoError,
    PrefectServer,
    api_startup_timeout,
    flush_prefect,
    prefect_settings,
    prepare_prefect,
)

if TYPE_CHECKING:
    # Prefect is imported only once its environment is set (see _prepare_prefect).
    from prefect import State

    from usegrant_flows.rotation.policy import RotationResult

__all__ = [
    "CREDENTIALS_BLOCK",
    "DEFAULT_API_STARTUP_TIMEOUT",
    "STARTUP_TIMEOUT_VARIABLE",
    "DemoError",
    "PrefectServer",
    "api_startup_timeout",
    "main",
]

#: Name of the credentials block the demo saves in its own Prefect home.
CREDENTIALS_BLOCK = "usegrant-demo"

#: Targets rotated at once. One: the three Secret blocks written at once by the first
#: run made the server's SQLite database answer 503 ("database is locked"), and Prefect's
#: client retried after about 2 s; one at a time, the first run takes 2 s instead of 4-10.
_CONCURRENCY = 1


_T = TypeVar("_T")


# Loggers that Prefect's logging configuration gives a stderr handler.
_CONSOLE_LOGGERS = ("", "prefect._internal", "uvicorn", "fastapi")


class _Phases:
    """Wall-clock seconds of the demo's phases, in the order they ended."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def measure(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = time.monotonic() - start

    def line(self) -> str:
        """One line for people and for ``bench/demo.py``: ``phase 1.23 s · ...``."""
        parts = [f"{name} {value:.2f} s" for name, value in self.seconds.items()]
        parts.append(f"total {time.monotonic() - self.started:.2f} s")
        return "Phase times: " + " · ".join(parts)


def _log_to_file(path: Path) -> None:
    """Send warnings and errors of Prefect and Python to ``path`` instead of stderr."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in _CONSOLE_LOGGERS:
        logging.getLogger(name).addHandler(handler)
    logging.captureWarnings(True)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "client"


class _Steps:
    """Progress lines: a spinner and the elapsed time while a step runs, a tick after."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def begin(self, text: str) -> TaskID:
        return self._progress.add_task(text, total=1)

    def end(self, task: TaskID, text: str) -> None:
        self._progress.update(task, completed=1, description=f"[green]✓[/] {text}")

    @contextlib.contextmanager
    def step(self, text: str, done: str | None = None) -> Iterator[None]:
        task = self.begin(text)
        yield
        self.end(task, done or text)


def _run_flow(call: Awaitable[_T]) -> _T:
    """Run an async flow call to its end in a new event loop."""

    async def wait() -> _T:
        return await call

    return asyncio.run(wait())


def _results_of(state: State[Any], run: str) -> list[RotationResult]:
    """Return a finished run's results; raise with the run's own message when it failed."""
    if not state.is_completed():
        raise DemoError(f"the {run} rotation run failed: {state.message}")
    results = state.result()
    if not isinstance(results, list):
        raise DemoError(f"the {run} rotation run returned no results")
    return results


def _run(folder: Path, console: Console, phases: _Phases) -> None:
    """The demo itself; raises on any failure (``main`` makes it one line)."""
    timeout = api_startup_timeout()
    settings = prefect_settings(folder / "prefect-home", timeout)
    outer = {k: v for k, v in os.environ.items() if k not in OUTER_SETTINGS}
    server = PrefectServer(folder / "prefect-server.log", {**outer, **settings})
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    try:
        # First: the server is the slow part; everything up to wait_ready() overlaps it.
        server.start()
        prepare_prefect(settings, server.api_url)
        with Progress(*columns, console=console) as progress, contextlib.ExitStack() as stack:
            steps = _Steps(progress)
            api_task = steps.begin(
                f"Prefect API: starting a local server on 127.0.0.1:{server.port} "
                f"(state in {folder / 'prefect-home'}; waiting up to {timeout:g} s)"
            )
            from usegrant_flows.emulator import run_emulator

            with phases.measure("emulator start"):
                emu_task = steps.begin("UseGrant emulator: starting")
                emu = stack.enter_context(run_emulator())
                steps.end(emu_task, f"UseGrant emulator on {emu.base_url}")
            with steps.step("loading Prefect and the rotation flow"):
                # Imported here, after the environment is set: Prefect reads it on import.
                from usegrant_flows.api.verify import verify_token
                from usegrant_flows.credentials import UseGrantCredentials
                from usegrant_flows.rotation.rotate_flow import rotate_targets
                from usegrant_flows.sinks import FileTokenSink, SecretBlockSink

                _log_to_file(folder / "demo.log")
            api_seconds = server.wait_ready(timeout)
            # Its own timer: this phase runs alongside the two above.
            phases.seconds["Prefect API start"] = api_seconds
            steps.end(
                api_task, f"Prefect API on {server.api_url} (ready after {api_seconds:.1f} s)"
            )
            provider = emu.seed.providers[0]
            with steps.step("credentials block saved"):
                credentials = UseGrantCredentials(api_key=emu.api_key, base_url=emu.base_url)
                credentials.save(CREDENTIALS_BLOCK, overwrite=True)
            targets: list[dict[str, Any]] = []
            for client in provider.clients:
                slug = _slug(client.name)
                targets.append(
                    {
                        "name": f"demo-{slug}",
                        "provider_id": str(provider.id),
                        "client_id": str(client.id),
                        "credentials": CREDENTIALS_BLOCK,
                        "expires_in": 3600,
                        "sinks": [
                            {"type": "file", "path": str(folder / "tokens" / f"{slug}.jwt")},
                            {"type": "secret-block", "secret_block_name": f"usegrant-demo-{slug}"},
                        ],
                    }
                )
            # Forced: tokens left by an earlier demo were signed by an earlier emulator's keys.
            with (
                phases.measure("run 1"),
                steps.step(f"first run: mint {len(targets)} targets (forced)"),
            ):
                first = _run_flow(
                    rotate_targets(
                        targets=targets, force=True, concurrency=_CONCURRENCY, return_state=True
                    )
                )
                results = _results_of(first, "first")
            verified: dict[str, str] = {}
            with (
                phases.measure("verify"),
                steps.step("tokens verified against the emulator's JWKS"),
            ):
                for target, client in zip(targets, provider.clients, strict=True):
                    sinks = [
                        FileTokenSink(path=target["sinks"][0]["path"]),
                        SecretBlockSink(secret_block_name=target["sinks"][1]["secret_block_name"]),
                    ]
                    checks = []
                    for sink in sinks:
                        token = sink.read()
                        if token is None:
                            checks.append("missing")
                            continue
                        try:
                            verify_token(token, emu.jwks_url, audience=client.audience)
                        except UseGrantError:
                            checks.append("invalid")
                        else:
                            checks.append("ok")
                    verified[target["name"]] = " / ".join(checks)
            emu.reset_stats()
            with phases.measure("run 2"), steps.step("second run: every token is fresh"):
                second = _run_flow(
                    rotate_targets(targets=targets, concurrency=_CONCURRENCY, return_state=True)
                )
                again = _results_of(second, "second")
            calls = int(emu.stats()["token_calls"]["total"])
            flush_prefect()
    finally:
        server.stop()

    print_first_run(
        console,
        [
            (
                result.target,
                result.action.value,
                result.fingerprint or "",
                result.expires_at.strftime("%H:%M:%S") if result.expires_at else "",
                verified[result.target],
                client.audience,
            )
            for result, client in zip(results, provider.clients, strict=True)
        ],
    )
    fresh = sum(1 for r in again if r.action.value == "fresh")
    console.print(
        f"Second run: {fresh} of {len(again)} targets fresh, "
        f"[bold]{calls}[/] API calls to UseGrant (emulator counters).",
        soft_wrap=True,
    )
    console.print(
        f"Tokens: {folder / 'tokens'} (files, mode 0600) and Secret blocks usegrant-demo-*; "
        f"Prefect home: {folder / 'prefect-home'}.",
        soft_wrap=True,
        highlight=False,
    )
    bad = [name for name, check in verified.items() if check != "ok / ok"]
    if bad:
        raise DemoError(f"tokens that did not verify: {', '.join(bad)}")
    if calls != 0 or fresh != len(again):
        raise DemoError(
            f"the second run should make no API call, but made {calls} "
            f"({fresh} of {len(again)} targets fresh)"
        )


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM unwinds like Ctrl-C, so the Prefect server is stopped on the way out.
    raise KeyboardInterrupt


def main(directory: Path = Path("demo")) -> int:
    """Run the rotation demo: Prefect API, emulator, two rotation runs, phase times.

    Args:
        directory: Folder for the demo's tokens, logs and Prefect home (created if
            missing).

    Returns:
        The exit status: 0 when every token verified and the second run made no API
        call; 1 on any failure, 2 for a bad setting, 130 when interrupted. Failures
        are one line on stderr, never a traceback.
    """
    console = Console(highlight=False)
    phases = _Phases()
    folder = directory.expanduser().resolve()
    previous_handler: Any = None
    in_main_thread = threading.current_thread() is threading.main_thread()
    try:
        if in_main_thread:
            previous_handler = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            (folder / "demo.log").touch(mode=0o600)
        except OSError as exc:
            raise DemoError(
                f"cannot use {folder} for the demo ({exc.strerror or type(exc).__name__}); "
                "give it another folder: usegrant-flows demo DIRECTORY",
                EXIT_CONFIGURATION,
            ) from None
        console.print(f"[bold]usegrant-flows demo[/] in {folder}", soft_wrap=True)
        _run(folder, console, phases)
    except DemoError as exc:
        return _fail(str(exc), exc.status)
    except ConfigurationError as exc:
        return _fail(f"{exc}", EXIT_CONFIGURATION)
    except UseGrantError as exc:
        return _fail(f"{exc}", EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail("interrupted; the Prefect server was stopped", EXIT_INTERRUPTED)
    except Exception as exc:
        # A bug, ours or a library's: the traceback goes to the log, for the report.
        log = folder / "demo.log"
        where = "please report it"
        with contextlib.suppress(OSError), log.open("a", encoding="utf-8") as file:
            file.write("".join(traceback.format_exception(exc)))
            where = f"traceback in {log}; please report it with that file"
        return _fail(f"unexpected {type(exc).__name__}: {exc} ({where})", EXIT_FAILED)
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
        console.print(phases.line(), soft_wrap=True)
    return 0


def _fail(message: str, status: int) -> int:
    text = " ".join(message.split()) or "failed"
    print(f"usegrant-flows demo: error: {text}", file=sys.stderr, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(*(Path(arg) for arg in sys.argv[1:2])))
