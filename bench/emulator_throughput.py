"""Emulator throughput: tokens minted per second by one emulator server process.

Starts ``python -m usegrant_flows.emulator --port 0`` in a SEPARATE process (no
latency, no faults), reads its URL and dev key from the banner, then drives it from
this process with N async httpx clients (each with its own small pool) for a bounded
time or count, and prints tokens/s. The server is one process = one core at most (the
driver uses the other); figures from one process for both would only show the GIL.

    .venv/bin/python bench/emulator_throughput.py --seconds 5 --clients 8 --per-client 4
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PROVIDER = "10000000-0000-4000-8000-000000000001"
CLIENT = "20000000-0000-4000-8000-000000000001"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_emulator() -> tuple[subprocess.Popen[bytes], str, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "usegrant_flows.emulator", "--port", "0"],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    fd = process.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + 30
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"Press Ctrl-C" not in seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                process.kill()
                raise SystemExit(f"emulator did not start:\n{seen.decode(errors='replace')}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise SystemExit(f"emulator exited:\n{seen.decode(errors='replace')}")
            seen += chunk
    text = seen.decode(errors="replace")
    url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", text)
    key = re.search(r"(usegrant_emu_[A-Za-z0-9_-]+)", text)
    if not url or not key:
        process.kill()
        raise SystemExit(f"cannot parse the banner:\n{text}")
    return process, url.group(1), key.group(1)


async def worker(
    client: httpx.AsyncClient, path: str, stop_at: float, budget: list[int], counts: dict[int, int]
) -> None:
    while time.monotonic() < stop_at and budget[0] > 0:
        budget[0] -= 1
        response = await client.post(path, json={"expiresIn": 900})
        counts[response.status_code] = counts.get(response.status_code, 0) + 1


async def drive(
    base_url: str, key: str, seconds: float, max_requests: int, clients: int, per_client: int
) -> tuple[dict[int, int], float]:
    path = f"/v1/providers/{PROVIDER}/clients/{CLIENT}/tokens"
    pools = [
        httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {key}"},
            limits=httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client),
            timeout=30,
        )
        for _ in range(clients)
    ]
    counts: dict[int, int] = {}
    budget = [max_requests]
    # Warm-up: open connections, first signatures.
    await asyncio.gather(*(pool.post(path) for pool in pools))
    started = time.monotonic()
    stop_at = started + seconds
    await asyncio.gather(
        *(worker(pool, path, stop_at, budget, counts) for pool in pools for _ in range(per_client))
    )
    elapsed = time.monotonic() - started
    await asyncio.gather(*(pool.aclose() for pool in pools))
    return counts, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="run time bound (s)")
    parser.add_argument("--max-requests", type=int, default=100_000, help="request count bound")
    parser.add_argument("--clients", type=int, default=8, help="async httpx clients")
    parser.add_argument("--per-client", type=int, default=4, help="requests in flight per client")
    args = parser.parse_args()

    process, base_url, key = start_emulator()
    try:
        cpu_before = cpu_seconds(process.pid)
        counts, elapsed = asyncio.run(
            drive(base_url, key, args.seconds, args.max_requests, args.clients, args.per_client)
        )
        server_cpu = cpu_seconds(process.pid) - cpu_before
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    minted = counts.get(201, 0)
    total = sum(counts.values())
    print(
        f"{minted} tokens in {elapsed:.2f} s = {minted / elapsed:,.0f} tokens/s "
        f"({total} requests, statuses {counts}); {args.clients} clients x "
        f"{args.per_client} in flight; server: one process = one core (h11, ES256)"
    )
    if minted and server_cpu > 0:
        # CPU time is what the server itself spent: a figure that holds on a busy machine.
        print(
            f"server CPU: {server_cpu:.2f} s = {server_cpu / total * 1e6:,.0f} us per request "
            f"= {total / server_cpu:,.0f} requests/s per fully used core; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )


if __name__ == "__main__":
    main()
