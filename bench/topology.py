"""Topology benchmark: one fleet on SQLite and on PostgreSQL + Redis, leases on and off.

The emulator runs in a SEPARATE process with the API's rule (``--budget`` calls per
``--window`` seconds, ``--latency-ms`` per answer). For each backend:

- ``sqlite``: one ``prefect server start`` (SQLite in a fresh ``PREFECT_HOME``);
- ``postgres``: Prefect's production topology on loopback (tests/e2e/topology.py):
  PostgreSQL 15, Redis (``prefect-redis`` messaging, ordering, lease storage, Docket),
  the background services in their own process and ``--replicas`` API servers;

``--processes`` flow runs of ``rotate_targets`` start at once (flow run ``p`` talks to
replica ``p % replicas``), each on its own slice of a new ``--n``-target fleet (every
target due), or all on the whole fleet with ``--overlap`` (two runs meeting on every
target). Each is run with leases on, then off (``TargetLeases`` disabled). Printed per
run: wall time, mints, Prefect API calls in all and for leases (the claim variables)
per due target, HTTP 503 answers, ERROR lines in the servers' logs, and the peak memory
(PSS) of the Prefect server processes and of PostgreSQL + Redis. The servers' access
logs (``PREFECT_SERVER_LOGGING_LEVEL=INFO``) are what is counted.

    .venv/bin/python bench/topology.py                       # N=2000, 2 runs at once
    .venv/bin/python bench/topology.py --n 500 --backends postgres --overlap
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from _emulator import (
    REPO_ROOT,
    SAVE_BLOCK,
    clean_env,
    free_port,
    start_emulator,
    wait_http,
    write_fleet,
    write_seed,
)

sys.path.insert(0, str(REPO_ROOT))

BLOCK = "bench-topology"
RUN_FLOW = """
import asyncio, sys
if sys.argv[2] == "off":
    import usegrant_flows.rotation.lease as lease
    lease.prefect_api_configured = lambda: False
from usegrant_flows.rotation.rotate_flow import rotate_targets
state = asyncio.run(rotate_targets(targets_file=sys.argv[1], concurrency=64, return_state=True))
print("STATE", state.type.value, (state.message or "")[:300])
sys.exit(0 if state.is_completed() else 1)
"""
ACCESS = re.compile(r'"(GET|POST|PATCH|PUT|DELETE) /api(/\S*) HTTP/[\d.]+" (\d{3})')
SERVER_ENV = {"PREFECT_SERVER_LOGGING_LEVEL": "INFO", "PREFECT_SERVER_UI_ENABLED": "false"}


def pss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        match = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
        total += int(match.group(1)) if match else 0
    return total


def group_pids(pgids: set[int], parents: frozenset[int] = frozenset()) -> list[int]:
    """Processes in the process groups ``pgids``, and ``parents`` with their children."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid = int(entry.name)
            if int(fields[2]) in pgids or pid in parents or int(fields[1]) in parents:
                pids.append(pid)
    return pids


class Peak:
    """Samples the PSS of some process groups every 0.5 s; keeps the peak (KiB)."""

    def __init__(self, groups: Callable[[], tuple[set[int], frozenset[int]]]) -> None:
        self.groups = groups
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, pss_kib(group_pids(*self.groups())))
            self._stop.wait(0.5)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Backend:
    """A running Prefect server (or topology): API URLs, logs, process groups."""

    def __init__(self, name: str, api_urls: list[str], logs: list[Path]) -> None:
        self.name = name
        self.api_urls = api_urls
        self.logs = logs
        self.prefect_groups: set[int] = set()
        self.stores: Callable[[], tuple[set[int], frozenset[int]]] = lambda: (set(), frozenset())

    def log_sizes(self) -> list[int]:
        return [log.stat().st_size for log in self.logs]

    def log_since(self, sizes: list[int]) -> str:
        parts = []
        for log, size in zip(self.logs, sizes, strict=True):
            with log.open("rb") as f:
                f.seek(size)
                parts.append(f.read().decode(errors="replace"))
        return "\n".join(parts)


@contextmanager
def sqlite_backend(work: Path) -> Iterator[Backend]:
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    home = work / "sqlite-home"
    log = work / "sqlite-server.log"
    prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**clean_env(home, api_url), **SERVER_ENV},
            start_new_session=True,
        )
    try:
        wait_http(f"{api_url}/health", proc, log)
        backend = Backend("SQLite, 1 server", [api_url], [log])
        backend.prefect_groups = {proc.pid}
        yield backend
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def postgres_backend(replicas: int) -> Iterator[Backend]:
    from tests.e2e.topology import production_topology

    with production_topology(replicas=replicas, extra_env=SERVER_ENV) as topology:
        backend = Backend(
            f"PostgreSQL + Redis, {replicas} API replicas + services",
            [r.api_url for r in topology.replicas],
            [topology.work / f"{name}.log" for name in topology.processes if name != "redis"],
        )
        backend.prefect_groups = {
            p.pid for name, p in topology.processes.items() if name != "redis"
        }

        def stores() -> tuple[set[int], frozenset[int]]:
            pidfile = topology.work / "pgdata" / "postmaster.pid"
            postmaster: frozenset[int] = frozenset()
            with contextlib.suppress(OSError, ValueError, IndexError):
                postmaster = frozenset({int(pidfile.read_text().split()[0])})
            return {topology.processes["redis"].pid}, postmaster

        backend.stores = stores
        yield backend


def prepare(backend: Backend, work: Path, api_key: str, base_url: str, args: Any) -> None:
    env = clean_env(work / "client-home", backend.api_urls[0])
    save = [sys.executable, "-c", SAVE_BLOCK, api_key, base_url, str(args.budget)]
    subprocess.run([*save, str(args.window), BLOCK], env=env, check=True, capture_output=True)
    subprocess.run(
        [sys.executable, "-m", "usegrant_flows.cli", "quota", "apply", BLOCK],
        env=env,
        check=True,
        capture_output=True,
    )


def run_once(
    backend: Backend, work: Path, label: str, leases: str, args: Any, seed: tuple[str, list[str]]
) -> dict[str, Any]:
    provider, clients = seed
    folder = work / label
    folder.mkdir()
    fleets = []
    per = -(-args.n // args.processes)
    for p in range(args.processes):
        fleet = folder / f"fleet-{p}.json"
        names = range(args.n) if args.overlap else range(p * per, min(args.n, (p + 1) * per))
        write_fleet(
            folder / "fleet.json" if args.overlap else fleet, provider, clients, names, BLOCK
        )
        fleets.append(folder / "fleet.json" if args.overlap else fleet)
    httpx.post(f"{args.emulator}/_emulator/reset", timeout=10).raise_for_status()
    sizes = backend.log_sizes()
    started = time.monotonic()
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    with (
        Peak(lambda: (backend.prefect_groups, frozenset())) as prefect_peak,
        Peak(backend.stores) as store,
        Peak(lambda: (set(), frozenset(proc.pid for proc, _ in procs))) as runs_peak,
    ):
        for p, fleet in enumerate(fleets):
            api_url = backend.api_urls[p % len(backend.api_urls)]
            env = clean_env(folder / f"home-{p}", api_url)
            log = folder / f"run-{p}.log"
            with log.open("wb") as out:
                procs.append(
                    (
                        subprocess.Popen(
                            [sys.executable, "-c", RUN_FLOW, str(fleet), leases],
                            cwd=REPO_ROOT,
                            env=env,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                        ),
                        log,
                    )
                )
        failed = [log for proc, log in procs if proc.wait(timeout=3600) != 0]
        elapsed = time.monotonic() - started
    stats = httpx.get(f"{args.emulator}/_emulator/stats", timeout=10).json()
    text = backend.log_since(sizes)
    calls = Counter()
    statuses = Counter()
    for _method, path, status in ACCESS.findall(text):
        kind = "leases" if path.startswith("/variables") else "other"
        calls[kind] += 1
        statuses[status] += 1
    minted = stats["tokens_issued"]
    return {
        "backend": backend.name,
        "leases": leases,
        "seconds": elapsed,
        "minted": minted,
        "calls": sum(calls.values()),
        "lease_calls": calls["leases"],
        "per_due": calls["leases"] / max(minted, 1),
        "503": statuses.get("503", 0),
        "errors": sum(1 for line in text.splitlines() if " ERROR " in line),
        "prefect_mib": prefect_peak.peak / 1024,
        "stores_mib": store.peak / 1024,
        "run_mib": runs_peak.peak / 1024 / args.processes,
        "failed": [str(log) for log in failed],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="targets in the fleet")
    parser.add_argument("--budget", type=int, default=1000, help="calls per window")
    parser.add_argument("--window", type=float, default=20.0, help="window in seconds")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="emulator latency")
    parser.add_argument("--processes", type=int, default=2, help="flow runs at once")
    parser.add_argument("--replicas", type=int, default=2, help="API replicas (postgres)")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--leases", default="on,off")
    parser.add_argument("--overlap", action="store_true", help="every run on every target")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="usegrant-bench-topology-"))
    emulator = None
    results = []
    try:
        api_key, provider, clients = write_seed(work / "seed.json", min(args.n, 500))
        emulator, args.emulator = start_emulator(
            work / "seed.json",
            work / "emulator.log",
            "--rate-limit",
            str(args.budget),
            "--rate-window",
            str(args.window),
            "--latency-ms",
            str(args.latency_ms),
        )
        shape = "all on the whole fleet" if args.overlap else "each on its own slice"
        print(
            f"N={args.n} targets, {args.processes} flow runs at once ({shape}); emulator "
            f"{args.latency_ms:g} ms, budget {args.budget} per {args.window:g} s",
            flush=True,
        )
        for name in args.backends.split(","):
            backend_cm = (
                sqlite_backend(work) if name == "sqlite" else postgres_backend(args.replicas)
            )
            with backend_cm as backend:
                prepare(backend, work, api_key, args.emulator, args)
                for leases in args.leases.split(","):
                    label = f"{name}-leases-{leases}"
                    result = run_once(backend, work, label, leases, args, (provider, clients))
                    results.append(result)
                    print(json.dumps(result), flush=True)
        print()
        print(
            "| backend | leases | wall s | mints | Prefect API calls | lease calls "
            "(per due target) | HTTP 503 | server ERROR lines | peak PSS Prefect / PG+Redis "
            "| peak PSS per flow run |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in results:
            stores = f"{r['stores_mib']:.0f} MiB" if r["stores_mib"] else "-"
            print(
                f"| {r['backend']} | {r['leases']} | {r['seconds']:.1f} | {r['minted']} | "
                f"{r['calls']} | {r['lease_calls']} ({r['per_due']:.3f}) | {r['503']} | "
                f"{r['errors']} | {r['prefect_mib']:.0f} MiB / {stores} | {r['run_mib']:.0f} MiB |"
                + (f" FAILED: {r['failed']}" if r["failed"] else "")
            )
    finally:
        if emulator is not None and emulator.poll() is None:
            emulator.terminate()
            emulator.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
