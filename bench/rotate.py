"""Fleet rotation benchmark: the seed's loop vs the async client vs the rotate_targets flow.

One run prints, for N targets and an emulator latency L (emulator in a SEPARATE
process, seeded with N clients):

  (a) the seed's own pattern: a loop of single requests, a new httpx.Client each
      (measured on a sample of --serial requests, rate extrapolated);
  (b) AsyncUseGrantClient with C requests in flight, client construction included;
  (c) the rotate_targets flow on Prefect's embedded API (targets from a fleet file,
      one file sink each), in a child process: flow start (embedded API), first run,
      an immediate second run and the API calls it made, peak memory (ru_maxrss);

plus the bound N*L/C, tokens per second and the ratios against the goals.

    .venv/bin/python bench/rotate.py              # N=1000, L=50 ms, C=32
    .venv/bin/python bench/rotate.py --n 10000    # the memory goal
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from _emulator import start_emulator as start_process  # noqa: E402
from _emulator import write_seed  # noqa: E402


def start_emulator(seed: Path, latency_ms: float, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    return start_process(seed, log, "--latency-ms", str(latency_ms))


def token_calls(base_url: str) -> int:
    return int(httpx.get(f"{base_url}/_emulator/stats", timeout=10).json()["token_calls"]["total"])


def reset_stats(base_url: str) -> None:
    httpx.post(f"{base_url}/_emulator/reset", timeout=10).raise_for_status()


def bench_serial(
    base_url: str, api_key: str, provider_id: str, clients: list[str], count: int
) -> float:
    """(a) The seed's pattern: one request at a time, a new httpx.Client for each."""
    started = time.perf_counter()
    for i in range(count):
        url = f"{base_url}/v1/providers/{provider_id}/clients/{clients[i % len(clients)]}/tokens"
        with httpx.Client() as client:
            response = client.post(url, headers={"Authorization": f"Bearer {api_key}"}, json={})
            response.raise_for_status()
    return time.perf_counter() - started


async def bench_async(
    base_url: str, api_key: str, provider_id: str, clients: list[str], c: int
) -> float:
    """(b) AsyncUseGrantClient, C requests in flight; tokens are dropped at once.

    The client is built inside the timing: what a caller pays, construction included.
    """
    from usegrant_flows.api.client import AsyncUseGrantClient

    limit = asyncio.Semaphore(c)

    async def one(client: AsyncUseGrantClient, client_id: str) -> None:
        async with limit:
            await client.create_token(provider_id, client_id)

    started = time.perf_counter()
    async with AsyncUseGrantClient(api_key=api_key, base_url=base_url, max_connections=c) as client:
        await asyncio.gather(*(one(client, cid) for cid in clients))
    return time.perf_counter() - started


def flow_phase(args: argparse.Namespace) -> None:
    """(c) Child process: the rotate_targets flow on the embedded API; prints JSON."""
    # `kill -USR1 <pid>` prints every thread's stack, should a run ever stall.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    work = Path(args.work)
    os.environ.update(
        PREFECT_HOME=str(work / "prefect-home"),
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    for name in ("PREFECT_API_URL", "PREFECT_API_KEY"):
        os.environ.pop(name, None)
    api_key = os.environ.pop("BENCH_API_KEY")
    from usegrant_flows.credentials import UseGrantCredentials
    from usegrant_flows.rotation.rotate_flow import rotate_targets

    clients = json.loads((work / "clients.json").read_text())
    fleet = {
        "defaults": {"credentials": "bench", "provider_id": args.provider_id},
        "targets": [
            {
                "name": f"t{i}",
                "client_id": cid,
                "sinks": [{"type": "file", "path": f"tokens/{i % args.token_dirs}/{i}.jwt"}],
            }
            for i, cid in enumerate(clients)
        ],
    }
    fleet_file = work / "fleet.json"
    fleet_file.write_text(json.dumps(fleet))

    started = time.perf_counter()
    # The key's request budget (default 1000/h, the real API's quota) would pace a
    # fleet larger than that over the hour: raise it, the emulator has no quota here.
    UseGrantCredentials(
        api_key=api_key,  # type: ignore[arg-type]
        base_url=args.base_url,
        max_requests_per_hour=max(1000, 4 * len(clients)),
    ).save("bench", overwrite=True)
    flow_start = time.perf_counter() - started
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def run() -> tuple[float, Any]:
        t0 = time.perf_counter()
        state = asyncio.run(
            rotate_targets(
                targets_file=str(fleet_file),
                concurrency=args.concurrency,
                batch_size=args.batch_size,
                return_state=True,
            )
        )
        return time.perf_counter() - t0, state

    reset_stats(args.base_url)
    first_s, first = run()
    first_calls = token_calls(args.base_url)
    minted = (
        sum(1 for r in first.result() if r.action.value == "minted") if first.is_completed() else 0
    )
    reset_stats(args.base_url)
    second_s, second = run()
    second_calls = token_calls(args.base_url)
    fresh = (
        sum(1 for r in second.result() if r.action.value == "fresh") if second.is_completed() else 0
    )
    print(
        json.dumps(
            {
                "flow_start_s": flow_start,
                "first_s": first_s,
                "first_state": first.type.value,
                "first_message": first.message,
                "first_calls": first_calls,
                "minted": minted,
                "second_s": second_s,
                "second_calls": second_calls,
                "fresh": fresh,
                "rss_before_mb": rss_before / 1024,
                "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="targets (and emulator clients)")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--serial", type=int, default=100, help="requests sampled for (a)")
    parser.add_argument(
        "--token-dirs", type=int, default=1, help="spread (c)'s token files over this many folders"
    )
    parser.add_argument("--phase", choices=["all", "flow"], default="all", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--provider-id", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "flow":
        flow_phase(args)
        return

    n, latency, c = args.n, args.latency_ms / 1000, args.concurrency
    with tempfile.TemporaryDirectory(prefix="usegrant-bench-") as tmp:
        work = Path(tmp)
        api_key, provider_id, clients = write_seed(work / "seed.json", n)
        (work / "clients.json").write_text(json.dumps(clients))
        emulator, base_url = start_emulator(
            work / "seed.json", args.latency_ms, work / "emulator.log"
        )
        try:
            serial_n = min(args.serial, n)
            serial_s = bench_serial(base_url, api_key, provider_id, clients, serial_n)
            async_s = asyncio.run(bench_async(base_url, api_key, provider_id, clients, c))
            cmd = [sys.executable, __file__, "--phase", "flow", "--work", str(work)]
            cmd += ["--base-url", base_url, "--provider-id", provider_id]
            cmd += ["--concurrency", str(c), "--batch-size", str(args.batch_size)]
            cmd += ["--token-dirs", str(args.token_dirs)]
            child = subprocess.run(
                cmd,
                env={**os.environ, "BENCH_API_KEY": api_key, "PYTHONPATH": str(REPO_ROOT)},
                capture_output=True,
                text=True,
                timeout=1800,
                check=False,
            )
            if child.returncode != 0:
                raise SystemExit(
                    f"flow phase failed:\n{child.stdout[-3000:]}\n{child.stderr[-3000:]}"
                )
            flow = json.loads(child.stdout.strip().splitlines()[-1])
        finally:
            emulator.terminate()
            emulator.wait(timeout=30)

    bound = n * latency / c
    rate_a = serial_n / serial_s
    rate_b = n / async_s
    rate_c = n / flow["first_s"]
    print(
        f"N={n} targets, emulator latency {args.latency_ms:g} ms (separate process), C={c}, "
        f"token files in {args.token_dirs} folder(s)"
    )
    print(f"bound N*L/C                         {bound:8.2f} s   {n / bound:8.0f} tokens/s")
    print(
        f"(a) seed loop, new httpx.Client     {n / rate_a:8.2f} s   {rate_a:8.1f} tokens/s"
        f"   (extrapolated from {serial_n} requests)"
    )
    print(f"(b) AsyncUseGrantClient, C={c:<4}     {async_s:8.2f} s   {rate_b:8.0f} tokens/s")
    print(
        f"(c) rotate_targets flow              {flow['first_s']:8.2f} s   {rate_c:8.0f} tokens/s"
        f"   ({flow['minted']} minted, state {flow['first_state']}; "
        f"flow start {flow['flow_start_s']:.1f} s)"
    )
    print(
        f"    immediate second run            {flow['second_s']:8.2f} s   "
        f"{flow['fresh']} fresh, {flow['second_calls']} API calls"
    )
    print(
        f"    peak memory (ru_maxrss)         {flow['rss_peak_mb']:8.0f} MB "
        f"(after flow start: {flow['rss_before_mb']:.0f} MB)"
    )
    print("goals:")
    print(f"  (b) >= 85% of bound:        {bound / async_s:6.0%} of bound")
    print(
        f"  (c) <= 2x (b) + flow start: {flow['first_s']:.2f} s vs "
        f"{2 * async_s + flow['flow_start_s']:.2f} s"
    )
    print(f"  (b) >= 25x (a):             {rate_b / rate_a:6.1f}x")
    print(f"  second run 0 API calls:     {flow['second_calls']}")
    print(f"  peak memory < 500 MB:       {flow['rss_peak_mb']:.0f} MB (goal measured at N=10,000)")


if __name__ == "__main__":
    main()
