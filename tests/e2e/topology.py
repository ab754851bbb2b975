"""Prefect's production topology on loopback: PostgreSQL, Redis, API replicas, services.

As Prefect's self-hosting guide describes it: PostgreSQL holds the state, Redis
(``prefect-redis``) carries the messaging, the causal ordering of events, the
concurrency lease storage and Docket's task queue; the API replicas run
``prefect server start --no-services`` and the background services run in their own
process (``prefect server services start``). :func:`production_topology` starts it all
in a temporary folder and stops it all at the end; every wait is bounded.

PostgreSQL is Debian's (``/usr/lib/postgresql/<version>/bin``), initialised with
``initdb`` into the folder (as the ``postgres`` user when we are root: PostgreSQL
refuses to run as root), listening on 127.0.0.1 only; Redis is Debian's
``redis-server`` without persistence. :func:`missing` says what is not installed.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import PREFECT_BIN, PrefectServer, free_port, kill_process_group, tail

START_TIMEOUT = 180.0  # seconds for one Prefect process to answer on a loaded machine


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def missing() -> list[str]:
    """What the topology needs and this machine lacks (empty when all is there)."""
    lacking = []
    if _pg_bin() is None:
        lacking.append("PostgreSQL server (Debian package postgresql)")
    if shutil.which("redis-server") is None:
        lacking.append("redis-server (Debian package redis-server)")
    try:
        import prefect_redis  # noqa: F401
    except ImportError:
        lacking.append("prefect-redis (the project's `production` extra)")
    return lacking


@dataclass
class Topology:
    """The running topology.

    Attributes:
        database_url: The PostgreSQL URL Prefect uses.
        redis_url: The Redis URL.
        settings: The Prefect settings every server process gets (database, Redis).
        replicas: The API replicas, each a :class:`PrefectServer` (its ``env`` points
            clients at it).
        work: The temporary folder.
    """

    database_url: str
    redis_url: str
    settings: dict[str, str]
    work: Path
    replicas: list[PrefectServer] = field(default_factory=list)
    processes: dict[str, subprocess.Popen[Any]] = field(default_factory=dict)

    def kill_replica(self, index: int) -> None:
        """SIGKILL one API replica (a crashed machine: no clean shutdown)."""
        proc = self.processes[f"replica-{index}"]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def server_log_errors(self) -> list[str]:
        """The ERROR lines every Prefect server process logged so far."""
        lines = []
        for name in self.processes:
            if name.startswith(("replica", "services")):
                log = self.work / f"{name}.log"
                lines += [line for line in tail(log, 10**7).splitlines() if " ERROR " in line]
        return lines


def _postgres_user() -> tuple[list[str], int | None]:
    """The command prefix that runs PostgreSQL's tools, and the uid to own its folder."""
    if os.geteuid() != 0:
        return [], None
    uid = pwd.getpwnam("postgres").pw_uid
    return ["runuser", "-u", "postgres", "--"], uid


def _wait_http(url: str, proc: subprocess.Popen[Any], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{url}: process exited with {proc.returncode}:\n{tail(log)}")
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise AssertionError(f"{url} not up after {timeout} s ({last}):\n{tail(log)}")


def _popen(topology: Topology, name: str, args: list[str], env: dict[str, str]) -> None:
    log = topology.work / f"{name}.log"
    with log.open("wb") as out:
        topology.processes[name] = subprocess.Popen(
            args,
            cwd=topology.work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
        PREFECT_CLI_PROMPT="false",
        PREFECT_CLI_COLORS="false",
        PYTHONUNBUFFERED="1",
    )
    return env


@contextlib.contextmanager
def production_topology(
    replicas: int = 2, extra_env: dict[str, str] | None = None
) -> Iterator[Topology]:
    """Start PostgreSQL, Redis, the background services and ``replicas`` API servers.

    Args:
        replicas: API servers to start (>= 1).
        extra_env: More settings for every Prefect server process (the benchmark turns
            on the access log with ``PREFECT_SERVER_LOGGING_LEVEL=INFO``).

    Yields:
        The :class:`Topology`; everything is stopped and deleted at the end.
    """
    pg_bin = _pg_bin()
    assert pg_bin is not None and not missing(), missing()
    work = Path(tempfile.mkdtemp(prefix="usegrant-topology-"))
    pg_port, redis_port = free_port(), free_port()
    database_url = f"postgresql+asyncpg://postgres@127.0.0.1:{pg_port}/prefect"
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    settings = {
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
        "PREFECT_API_DATABASE_MIGRATE_ON_START": "false",
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_URL": redis_url,
        "PREFECT_SERVER_DOCKET_URL": redis_url,
        **(extra_env or {}),
    }
    topology = Topology(database_url, redis_url, settings, work)
    data = work / "pgdata"
    as_postgres, uid = _postgres_user()
    try:
        data.mkdir()
        if uid is not None:
            os.chown(work, uid, -1)
            os.chown(data, uid, -1)
        subprocess.run(
            [
                *as_postgres,
                str(pg_bin / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )
        options = f"-p {pg_port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
        options += " -c max_connections=200"
        subprocess.run(
            [
                *as_postgres,
                str(pg_bin / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(data / "postgres.log"),
                "-w",
                "-t",
                "120",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )
        subprocess.run(
            [
                str(pg_bin / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(pg_port),
                "-U",
                "postgres",
                "prefect",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        redis = shutil.which("redis-server") or "redis-server"
        _popen(
            topology,
            "redis",
            [
                redis,
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            dict(os.environ),
        )
        env = {**_base_env(work / "prefect-home"), **settings}
        subprocess.run(
            [PREFECT_BIN, "server", "database", "upgrade", "-y"],
            env=env,
            cwd=work,
            check=True,
            capture_output=True,
            timeout=300,
        )
        # One process at a time: each registers Prefect's block types when it starts,
        # and two doing it at once make PostgreSQL refuse duplicate rows (ERROR lines).
        for index in range(replicas):
            port = free_port()
            api_url = f"http://127.0.0.1:{port}/api"
            home = work / f"replica-{index}-home"
            replica_env = {**_base_env(home), **settings, "PREFECT_API_URL": api_url}
            _popen(
                topology,
                f"replica-{index}",
                [
                    PREFECT_BIN,
                    "server",
                    "start",
                    "--no-services",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                replica_env,
            )
            replica = PrefectServer(
                api_url=api_url,
                ui_url=f"http://127.0.0.1:{port}",
                home=home,
                env={**_base_env(home), "PREFECT_API_URL": api_url},
                log_path=work / f"replica-{index}.log",
            )
            topology.replicas.append(replica)
            _wait_http(
                f"{api_url}/health",
                topology.processes[f"replica-{index}"],
                replica.log_path,
                START_TIMEOUT,
            )
            if index == 0:
                _popen(topology, "services", [PREFECT_BIN, "server", "services", "start"], env)
        yield topology
    finally:
        for proc in topology.processes.values():
            kill_process_group(proc, grace=10)
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [
                    *as_postgres,
                    str(pg_bin / "pg_ctl"),
                    "-D",
                    str(data),
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    "60",
                    "stop",
                ],
                capture_output=True,
                timeout=90,
                check=False,
            )
        shutil.rmtree(work, ignore_errors=True)
