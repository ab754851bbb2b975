"""What a single-token task costs over a no-op task plus the raw client call.

One run, on Prefect's embedded API, with the emulator in a SEPARATE process (no added
latency), prints the mean per-call cost over N calls after W warm-up calls of:

  * a no-op task (sync, and async), each N calls inside one flow;
  * the raw client call: UseGrantClient.create_token on one client (and, for
    comparison, with a new client per call, as the tasks did before);
  * the create_access_token task (one sync flow) and acreate_access_token (one async
    flow), with their default ``verify="full"``: every token's claims and signature are
    checked against the emulator's keys (fetched once per process, then cached), as
    a newcomer's flow runs them; and, to show what the checks cost, the same two with
    ``verify="off"``;
  * client construction (sync and async): the first in the process, and the median;
  * a no-op task and a raw call in turns inside one flow: the raw call then runs under
    the same load from Prefect's event and log threads and its API server as the task;

then the ratios task / (no-op task + raw call of the same kind: sync for the sync task,
async for the async one), goal <= 1.5, on means and on medians,
and the machine's load (os.getloadavg) before and after. Figures only: nothing here
asserts a timing.

    .venv/bin/python bench/task_overhead.py            # N=100, W=10
    .venv/bin/python bench/task_overhead.py --n 300
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from _emulator import start_emulator, write_seed  # noqa: E402

Timing = tuple[float, float]  # (mean, median) seconds per call


def per_call(fn: Callable[[], Any], n: int, warmup: int) -> Timing:
    """(mean, median) seconds per call of ``fn`` over ``n`` calls after ``warmup`` calls.

    The median is reported beside the mean: on a shared 2-core machine a few calls
    stall behind other processes, and the mean carries those stalls.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.mean(times), statistics.median(times)


async def aper_call(fn: Callable[[], Any], n: int, warmup: int) -> Timing:
    """Async form of :func:`per_call`."""
    for _ in range(warmup):
        await fn()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - started)
    return statistics.mean(times), statistics.median(times)


def construction(kind: type, api_key: str, base_url: str, count: int = 50) -> tuple[float, float]:
    """(first, median) seconds to build a client of ``kind`` (sync clients are closed)."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        client = kind(api_key=api_key, base_url=base_url)
        times.append(time.perf_counter() - started)
        if hasattr(client, "close"):
            client.close()
    return times[0], statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="timed calls per measure")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls first")
    args = parser.parse_args()
    n, warmup = args.n, args.warmup

    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="usegrant-bench-tasks-"))
    os.environ.update(
        PREFECT_HOME=str(work / "prefect-home"),
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # The embedded API's start takes 14-35 s on a loaded 2-core machine (Prefect's
        # default limit: 20 s).
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
    )
    for name in ("PREFECT_API_URL", "PREFECT_API_KEY"):
        os.environ.pop(name, None)

    api_key, provider_id, [client_id] = write_seed(work / "seed.json", 1)
    emulator, base_url = start_emulator(work / "seed.json", work / "emulator.log")
    try:
        # Construction first: the very first client pays for the shared SSL context.
        from usegrant_flows.api.client import AsyncUseGrantClient, UseGrantClient

        sync_first, sync_median = construction(UseGrantClient, api_key, base_url)

        async def build_async() -> tuple[float, float]:
            return construction(AsyncUseGrantClient, api_key, base_url)

        async_first, async_median = asyncio.run(build_async())

        from prefect import flow, task
        from prefect.cache_policies import NO_CACHE

        from usegrant_flows.credentials import UseGrantCredentials
        from usegrant_flows.tasks import acreate_access_token, create_access_token

        ids = {"provider_id": provider_id, "client_id": client_id}
        # An unsaved block: the in-process request budget, raised above what we send.
        credentials = UseGrantCredentials(
            api_key=api_key,  # type: ignore[arg-type]
            base_url=base_url,
            max_requests_per_hour=100_000,
        )
        options: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}

        @task(**options)
        def noop() -> None:
            return None

        @task(**options)
        async def anoop() -> None:
            return None

        @flow
        def sync_noop_flow() -> Timing:
            return per_call(noop, n, warmup)

        @flow
        async def async_noop_flow() -> Timing:
            return await aper_call(anoop, n, warmup)

        @flow
        def sync_task_flow() -> Timing:
            return per_call(lambda: create_access_token(credentials, **ids), n, warmup)

        @flow
        async def async_task_flow() -> Timing:
            return await aper_call(lambda: acreate_access_token(credentials, **ids), n, warmup)

        @flow
        def sync_task_off_flow() -> Timing:
            return per_call(
                lambda: create_access_token(credentials, **ids, verify="off"), n, warmup
            )

        @flow
        async def async_task_off_flow() -> Timing:
            return await aper_call(
                lambda: acreate_access_token(credentials, **ids, verify="off"), n, warmup
            )

        with UseGrantClient(api_key=api_key, base_url=base_url) as client:
            raw = per_call(lambda: client.create_token(provider_id, client_id), n, warmup)

            @flow
            def alternating_flow() -> tuple[Timing, Timing]:
                # A no-op task, then a raw call, in turns: both under the same load
                # from Prefect's own event and log threads and its API server.
                noops: list[float] = []
                raws: list[float] = []
                for index in range(warmup + n):
                    started = time.perf_counter()
                    noop()
                    middle = time.perf_counter()
                    client.create_token(provider_id, client_id)
                    ended = time.perf_counter()
                    if index >= warmup:
                        noops.append(middle - started)
                        raws.append(ended - middle)
                return (
                    (statistics.mean(noops), statistics.median(noops)),
                    (statistics.mean(raws), statistics.median(raws)),
                )

            alt_noop, alt_raw = alternating_flow()

        def fresh_client_call() -> None:
            with UseGrantClient(api_key=api_key, base_url=base_url) as fresh:
                fresh.create_token(provider_id, client_id)

        raw_fresh = per_call(fresh_client_call, n, warmup)

        async def araw_call() -> Timing:
            async with AsyncUseGrantClient(api_key=api_key, base_url=base_url) as aclient:
                return await aper_call(
                    lambda: aclient.create_token(provider_id, client_id), n, warmup
                )

        araw = asyncio.run(araw_call())

        sync_noop = sync_noop_flow()
        async_noop = asyncio.run(async_noop_flow())
        sync_task = sync_task_flow()
        async_task = asyncio.run(async_task_flow())
        sync_task_off = sync_task_off_flow()
        async_task_off = asyncio.run(async_task_off_flow())
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    load_after = os.getloadavg()

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:7.2f} ms"

    def both(timing: Timing) -> str:
        return f"mean {ms(timing[0])}, median {ms(timing[1])} per call"

    def ratio(task: Timing, noop: Timing, raw: Timing) -> str:
        mean = task[0] / (noop[0] + raw[0])
        median = task[1] / (noop[1] + raw[1])
        return f"{mean:.2f} on means, {median:.2f} on medians (goal <= 1.5)"

    print(f"task overhead: N={n} calls per measure after {warmup} warm-up calls")
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    print(f"client construction, sync:  first {ms(sync_first)}, median {ms(sync_median)}")
    print(f"client construction, async: first {ms(async_first)}, median {ms(async_median)}")
    print(f"no-op task (sync flow):               {both(sync_noop)}")
    print(f"no-op task (async flow):              {both(async_noop)}")
    print(f"raw UseGrantClient.create_token:      {both(raw)} (one client)")
    print(f"raw call, a new client per call:      {both(raw_fresh)}")
    print(f"raw AsyncUseGrantClient.create_token: {both(araw)} (one client)")
    print(f"create_access_token task (verified):  {both(sync_task)}")
    print(f"acreate_access_token task (verified): {both(async_task)}")
    print(f"create_access_token, verify='off':    {both(sync_task_off)}")
    print(f"acreate_access_token, verify='off':   {both(async_task_off)}")
    print(f"no-op task, then raw call, in turns:  {both(alt_noop)} / {both(alt_raw)}")
    print("ratios with verification on (the default):")
    print(f"create_access_token / (no-op + raw):  {ratio(sync_task, sync_noop, raw)}")
    print(f"acreate_access_token / (no-op + raw): {ratio(async_task, async_noop, araw)}")
    print(f"create_access_token / (no-op + raw), in turns: {ratio(sync_task, alt_noop, alt_raw)}")
    print(f"load average after:  {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")


if __name__ == "__main__":
    main()
