"""Quota benchmark: deliver a fleet bigger than the budget, and never draw a 429.

The emulator runs in a SEPARATE process with the API's rule (a sliding window of
``--budget`` calls per ``--window`` seconds); the credentials block declares the same
budget (``max_requests_per_hour=--budget``, ``quota_window_seconds=--window``). A fleet
of ``--n`` targets (file sinks) is rotated with ``rotate_targets``:

  (A) one flow run on Prefect's embedded API: the in-process window limiter;
  (B) ``--processes`` flow runs at once against a real ``prefect server start``: the
      Prefect global concurrency limit with slot decay, shared by the processes.

For each it prints the delivery time (in seconds and in windows), the calls in each
fixed window, the most calls in any sliding window, and the 429s. Scaling: the real
API's window is 3600 s; a 20 s window is the same budget 180 times faster, so a time
of ``k`` windows here means ``k`` hours there (network and engine overheads aside).

    .venv/bin/python bench/quota.py                       # N=2000, budget 1000 per 20 s
    .venv/bin/python bench/quota.py --n 500 --budget 200 --window 10
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _emulator import SAVE_BLOCK, clean_env, free_port, wait_http, write_fleet, write_seed

REPO_ROOT = Path(__file__).resolve().parents[1]
BLOCK = "bench-quota"
RUN_FLOW = """
import asyncio, sys
from usegrant_flows.rotation.rotate_flow import rotate_targets
state = asyncio.run(rotate_targets(targets_file=sys.argv[1], concurrency=64, return_state=True))
print("STATE", state.type.value, (state.message or "")[:300])
sys.exit(0 if state.is_completed() else 1)
"""


def run_fleet(
    label: str, fleets: list[Path], env: dict[str, str], base_url: str, window: float
) -> dict[str, Any]:
    httpx.post(f"{base_url}/_emulator/reset", timeout=10).raise_for_status()
    started = time.monotonic()
    procs = []
    for fleet in fleets:
        log = fleet.with_suffix(".log")
        with log.open("wb") as out:
            procs.append(
                (
                    subprocess.Popen(
                        [sys.executable, "-c", RUN_FLOW, str(fleet)],
                        cwd=REPO_ROOT,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    ),
                    log,
                )
            )
    for proc, log in procs:
        if proc.wait(timeout=3600) != 0:
            raise SystemExit(f"{label}: flow run failed:\n{log.read_text()[-3000:]}")
    elapsed = time.monotonic() - started
    stats = httpx.get(f"{base_url}/_emulator/stats", timeout=10).json()
    calls = stats["token_calls"]
    return {
        "label": label,
        "elapsed": elapsed,
        "windows": elapsed / window,
        "issued": stats["tokens_issued"],
        "429s": stats["by_status"].get("429", 0),
        "per_window": calls["per_window"],
        "max_in_any_window": calls["max_in_any_window"],
    }


def report(result: dict[str, Any], budget: int, window: float) -> None:
    print(f"\n{result['label']}")
    print(
        f"  delivered {result['issued']} tokens in {result['elapsed']:.1f} s "
        f"= {result['windows']:.2f} windows of {window:g} s (incl. process and flow start)"
    )
    print(f"  calls per fixed {window:g} s window: {result['per_window']}")
    print(
        f"  most calls in any {window:g} s window: {result['max_in_any_window']} "
        f"(budget {budget}); 429 answers: {result['429s']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="targets in the fleet")
    parser.add_argument("--budget", type=int, default=1000, help="calls per window")
    parser.add_argument("--window", type=float, default=20.0, help="window in seconds")
    parser.add_argument("--processes", type=int, default=2, help="flow runs at once in (B)")
    parser.add_argument("--skip-local", action="store_true", help="skip (A)")
    args = parser.parse_args()

    from usegrant_flows.quota.budget import Budget

    budget = Budget(args.budget, args.window)
    work = Path(tempfile.mkdtemp(prefix="usegrant-bench-quota-"))
    emulator = server = None
    try:
        api_key, provider, clients = write_seed(work / "seed.json", min(args.n, 500))
        port = free_port()
        emu_log = work / "emulator.log"
        cmd = [sys.executable, "-m", "usegrant_flows.emulator", "--port", str(port)]
        cmd += ["--seed", str(work / "seed.json"), "--rate-limit", str(args.budget)]
        cmd += ["--rate-window", str(args.window)]
        with emu_log.open("wb") as out:
            emulator = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=clean_env(work, None)
            )
        base_url = f"http://127.0.0.1:{port}"
        wait_http(f"{base_url}/.well-known/jwks", emulator, emu_log)
        print(
            f"N={args.n} targets, budget {args.budget} calls per {args.window:g} s window "
            f"(emulator in a separate process, same rule); bucket for Prefect: burst "
            f"{budget.burst}, then {budget.rate:.1f}/s ({budget.slots_per_request} slots per "
            f"request, decay {budget.slot_decay_per_second:.1f} slots/s)"
        )
        results = []

        if not args.skip_local:
            home = work / "home-local"
            env = clean_env(home, None)
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    SAVE_BLOCK,
                    api_key,
                    base_url,
                    str(args.budget),
                    str(args.window),
                    BLOCK,
                ],
                cwd=REPO_ROOT,
                env=env,
                check=True,
                capture_output=True,
            )
            fleet = work / "local.json"
            write_fleet(fleet, provider, clients, range(args.n), BLOCK)
            results.append(
                run_fleet(
                    "(A) one flow run, embedded API, in-process window limiter",
                    [fleet],
                    env,
                    base_url,
                    args.window,
                )
            )
            report(results[-1], args.budget, args.window)

        home = work / "home-server"
        server_port = free_port()
        api_url = f"http://127.0.0.1:{server_port}/api"
        env = clean_env(home, api_url)
        server_log = work / "server.log"
        with server_log.open("wb") as out:
            server = subprocess.Popen(
                [
                    shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect",
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(server_port),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**env, "PREFECT_SERVER_UI_ENABLED": "false"},
                start_new_session=True,
            )
        wait_http(f"{api_url}/health", server, server_log)
        subprocess.run(
            [
                sys.executable,
                "-c",
                SAVE_BLOCK,
                api_key,
                base_url,
                str(args.budget),
                str(args.window),
                BLOCK,
            ],
            cwd=REPO_ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [sys.executable, "-m", "usegrant_flows.cli", "quota", "apply", BLOCK],
            cwd=REPO_ROOT,
            env=env,
            check=True,
        )
        per = -(-args.n // args.processes)
        fleets = []
        for p in range(args.processes):
            fleet = work / f"server-{p}.json"
            write_fleet(fleet, provider, clients, range(p * per, min(args.n, (p + 1) * per)), BLOCK)
            fleets.append(fleet)
        results.append(
            run_fleet(
                f"(B) {args.processes} flow runs at once, prefect server, global rate limit",
                fleets,
                env,
                base_url,
                args.window,
            )
        )
        report(results[-1], args.budget, args.window)
        ideal = max(0.0, (args.n - args.budget) / args.budget) * (args.window + budget.slack)
        bucket = max(0.0, args.n - budget.burst) / budget.rate
        print(
            f"\nreference: the API's rule alone would allow delivery in {ideal:.1f} s "
            f"({ideal / args.window:.2f} windows); the Prefect bucket's own bound is "
            f"{bucket:.1f} s ({bucket / args.window:.2f} windows). Scaled to the real API "
            f"(window 3600 s): multiply windows by one hour."
        )
    finally:
        for proc in (server, emulator):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
