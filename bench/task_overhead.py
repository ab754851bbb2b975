"""What a single-token task costs over a no-op task plus the raw client call.

One run, on Prefect's embedded API, with the emulator in a SEPARATE process (no added
latency), measures per call, after W warm-up calls, the mean and the median of:

  * a no-op task (sync, and async);
  * the raw client call: UseGrantClient.create_token on one client (and, for
    comparison, with a new client per call, as the tasks did before), and its async form;
  * the create_access_token task (sync flow) and acreate_access_token (async flow), with
    their default ``verify="full"``: every token's claims and signature are checked
    against the emulator's keys (fetched once per process, then cached), as a
    newcomer's flow runs them; and, to show what the checks cost, with ``verify="off"``;
  * client construction (sync and async): the first in the process, and the median.

Two ways, both printed:

  * IN TURNS (the headline): one sync flow and one async flow, N rounds; each round
    calls every measure of its kind once (no-op task, raw call, verified task, task
    with verify="off"), the order rotating by one each round. Every measure then runs
    under the same load: Prefect's event and log threads, its API server recording the
    previous task runs, the emulator, all sharing the machine's 2 cores;
  * IN BLOCKS: each measure alone in its own flow run, the raw calls outside any flow.
    Every task block runs once per round for as many rounds as there are blocks, its
    place in the order moving by one each round (N/6 calls a time), since a block
    runs beside the API server still recording the previous block's task runs. The
    raw call runs with Prefect idle, so it costs less here than inside a flow.

then the ratios task / (no-op task + raw call of the same kind: sync for the sync task,
async for the async one), goal <= 1.5, on means and on medians, what the checks cost
(verified minus verify="off", in turns), and the machine's load (os.getloadavg) before
and after. Figures only: nothing here asserts a timing.

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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from _emulator import start_emulator, write_seed  # noqa: E402

Timing = tuple[float, float]  # (mean, median) seconds per call


def per_call(fn: Callable[[], Any], n: int, warmup: int) -> list[float]:
    """Seconds of each of ``n`` calls of ``fn``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


async def aper_call(fn: Callable[[], Any], n: int, warmup: int) -> list[float]:
    """Async form of :func:`per_call`."""
    for _ in range(warmup):
        await fn()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - started)
    return times


def timing(samples: list[float]) -> Timing:
    """(mean, median) of ``samples``.

    The median is reported beside the mean: on a shared 2-core machine a few calls
    stall behind other processes, and the mean carries those stalls.
    """
    return statistics.mean(samples), statistics.median(samples)


def turn_order(names: list[str], n: int, warmup: int) -> Iterator[tuple[bool, str]]:
    """(timed, name) of each call when ``names`` are taken in turns.

    Each of ``warmup + n`` rounds calls every name once, the order rotating by one each
    round, so no measure always follows the same one; the first ``warmup`` rounds are
    not timed.
    """
    for index in range(warmup + n):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            yield index >= warmup, name


def in_turns(measures: dict[str, Callable[[], Any]], n: int, warmup: int) -> dict[str, Timing]:
    """(mean, median) seconds per call of each measure, taken in turns (:func:`turn_order`)."""
    samples: dict[str, list[float]] = {name: [] for name in measures}
    for timed, name in turn_order(list(measures), n, warmup):
        started = time.perf_counter()
        measures[name]()
        if timed:
            samples[name].append(time.perf_counter() - started)
    return {name: timing(v) for name, v in samples.items()}


async def ain_turns(
    measures: dict[str, Callable[[], Any]], n: int, warmup: int
) -> dict[str, Timing]:
    """Async form of :func:`in_turns`."""
    samples: dict[str, list[float]] = {name: [] for name in measures}
    for timed, name in turn_order(list(measures), n, warmup):
        started = time.perf_counter()
        await measures[name]()
        if timed:
            samples[name].append(time.perf_counter() - started)
    return {name: timing(v) for name, v in samples.items()}


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
        def sync_noop_flow(count: int) -> list[float]:
            return per_call(noop, count, warmup)

        @flow
        async def async_noop_flow(count: int) -> list[float]:
            return await aper_call(anoop, count, warmup)

        @flow
        def sync_task_flow(count: int) -> list[float]:
            return per_call(lambda: create_access_token(credentials, **ids), count, warmup)

        @flow
        async def async_task_flow(count: int) -> list[float]:
            return await aper_call(lambda: acreate_access_token(credentials, **ids), count, warmup)

        @flow
        def sync_task_off_flow(count: int) -> list[float]:
            return per_call(
                lambda: create_access_token(credentials, **ids, verify="off"), count, warmup
            )

        @flow
        async def async_task_off_flow(count: int) -> list[float]:
            return await aper_call(
                lambda: acreate_access_token(credentials, **ids, verify="off"), count, warmup
            )

        blocks: dict[str, Callable[[int], list[float]]] = {
            "sync noop": sync_noop_flow,
            "async noop": lambda count: asyncio.run(async_noop_flow(count)),
            "sync task": sync_task_flow,
            "async task": lambda count: asyncio.run(async_task_flow(count)),
            "sync off": sync_task_off_flow,
            "async off": lambda count: asyncio.run(async_task_off_flow(count)),
        }

        with UseGrantClient(api_key=api_key, base_url=base_url) as client:
            raw = timing(per_call(lambda: client.create_token(provider_id, client_id), n, warmup))

            @flow
            def sync_turns_flow() -> dict[str, Timing]:
                return in_turns(
                    {
                        "noop": noop,
                        "raw": lambda: client.create_token(provider_id, client_id),
                        "verified": lambda: create_access_token(credentials, **ids),
                        "off": lambda: create_access_token(credentials, **ids, verify="off"),
                    },
                    n,
                    warmup,
                )

            sync_turns = sync_turns_flow()

        @flow
        async def async_turns_flow() -> dict[str, Timing]:
            async with AsyncUseGrantClient(api_key=api_key, base_url=base_url) as aclient:
                return await ain_turns(
                    {
                        "noop": anoop,
                        "raw": lambda: aclient.create_token(provider_id, client_id),
                        "verified": lambda: acreate_access_token(credentials, **ids),
                        "off": lambda: acreate_access_token(credentials, **ids, verify="off"),
                    },
                    n,
                    warmup,
                )

        async_turns = asyncio.run(async_turns_flow())

        def fresh_client_call() -> None:
            with UseGrantClient(api_key=api_key, base_url=base_url) as fresh:
                fresh.create_token(provider_id, client_id)

        raw_fresh = timing(per_call(fresh_client_call, n, warmup))

        async def araw_call() -> Timing:
            async with AsyncUseGrantClient(api_key=api_key, base_url=base_url) as aclient:
                return timing(
                    await aper_call(lambda: aclient.create_token(provider_id, client_id), n, warmup)
                )

        araw = asyncio.run(araw_call())

        # Each block runs once per round, at every place in the order over the rounds:
        # a block right after another one runs beside the API server still recording
        # that one's task runs, and the first task block pays for the first task runs.
        order = list(blocks)
        samples: dict[str, list[float]] = {name: [] for name in order}
        for round_index in range(len(order)):
            for name in order[round_index:] + order[:round_index]:
                samples[name] += blocks[name](max(1, n // len(order)))
        sync_noop, async_noop, sync_task, async_task, sync_task_off, async_task_off = (
            timing(samples[name]) for name in order
        )
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

    def turns(kind: str, task: str, timings: dict[str, Timing]) -> None:
        noop, raw, verified, off = (timings[k] for k in ("noop", "raw", "verified", "off"))
        rows = [
            (f"no-op task ({kind})", both(noop)),
            (f"raw call ({kind}, one client)", both(raw)),
            (f"{task}, verified", both(verified)),
            (f"{task}, verify='off'", both(off)),
            (f"{task} verified / (no-op + raw)", ratio(verified, noop, raw)),
            (f"{task} verify='off' / (no-op + raw)", ratio(off, noop, raw)),
            (
                "the checks (verified - off), per token",
                f"{(verified[0] - off[0]) * 1000:.2f} ms on means, "
                f"{(verified[1] - off[1]) * 1000:.2f} ms on medians",
            ),
        ]
        for label, figure in rows:
            print(f"  {label + ':':<48} {figure}")

    print(f"task overhead: N={n} calls per measure after {warmup} warm-up calls")
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    print(f"client construction, sync:  first {ms(sync_first)}, median {ms(sync_median)}")
    print(f"client construction, async: first {ms(async_first)}, median {ms(async_median)}")
    print("IN TURNS (one flow, every measure once per round, rotating order): the headline")
    turns("sync", "create_access_token", sync_turns)
    turns("async", "acreate_access_token", async_turns)
    print("IN BLOCKS (each measure alone, in rotating rounds; the raw calls outside any flow):")
    print(f"  no-op task (sync flow):               {both(sync_noop)}")
    print(f"  no-op task (async flow):              {both(async_noop)}")
    print(f"  raw UseGrantClient.create_token:      {both(raw)} (one client)")
    print(f"  raw call, a new client per call:      {both(raw_fresh)}")
    print(f"  raw AsyncUseGrantClient.create_token: {both(araw)} (one client)")
    print(f"  create_access_token task (verified):  {both(sync_task)}")
    print(f"  acreate_access_token task (verified): {both(async_task)}")
    print(f"  create_access_token, verify='off':    {both(sync_task_off)}")
    print(f"  acreate_access_token, verify='off':   {both(async_task_off)}")
    print(f"  create_access_token / (no-op + raw):  {ratio(sync_task, sync_noop, raw)}")
    print(f"  acreate_access_token / (no-op + raw): {ratio(async_task, async_noop, araw)}")
    print(f"  the same, verify='off', sync:         {ratio(sync_task_off, sync_noop, raw)}")
    print(f"  the same, verify='off', async:        {ratio(async_task_off, async_noop, araw)}")
    print(f"load average after:  {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")


if __name__ == "__main__":
    main()
