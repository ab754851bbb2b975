"""Import time of the core client against Prefect, each in fresh subprocesses.

Run: .venv/bin/python bench/import_time.py [--repeats N]

Every sample is a new interpreter that times its own import with perf_counter, so the
figures exclude interpreter start-up; the median of N samples is printed, with the
process wall time (start-up included) alongside.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGETS = {
    "usegrant_flows.api.client": "import usegrant_flows.api.client",
    "httpx + pydantic_settings": "import httpx, pydantic_settings",
    "prefect": "import prefect",
}
PROBE = (
    "import time\n"
    "started = time.perf_counter()\n"
    "{statement}\n"
    "print(time.perf_counter() - started)\n"
)


def sample(statement: str) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(statement=statement)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    wall = time.perf_counter() - started
    return float(result.stdout.strip().splitlines()[-1]), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="samples per target (default 7)")
    args = parser.parse_args()

    sample("import usegrant_flows.api.client, prefect")  # warm the OS file cache and .pyc files
    medians: dict[str, tuple[float, float]] = {}
    for name, statement in TARGETS.items():
        samples = [sample(statement) for _ in range(args.repeats)]
        medians[name] = (
            statistics.median(s[0] for s in samples),
            statistics.median(s[1] for s in samples),
        )

    print(f"python {sys.version.split()[0]}, {args.repeats} fresh processes per target, median")
    print(f"{'target':<28}{'import (s)':>12}{'process (s)':>14}")
    for name, (imported, wall) in medians.items():
        print(f"{name:<28}{imported:>12.3f}{wall:>14.3f}")
    core, prefect = medians["usegrant_flows.api.client"][0], medians["prefect"][0]
    print(f"prefect / usegrant_flows.api.client import time: {prefect / core:.1f}x")


if __name__ == "__main__":
    main()
