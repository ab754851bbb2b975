"""The request budget on a real Prefect API: global rate limits per credentials block."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL
from pydantic import SecretStr

from usegrant_flows.cli.commands import main
from usegrant_flows.credentials import UseGrantCredentials
from usegrant_flows.emulator.faults import max_in_sliding_window
from usegrant_flows.quota.limiter import (
    Budget,
    QuotaLimiter,
    QuotaSpec,
    apply_quota,
    limit_name,
    read_quota,
)

pytestmark = pytest.mark.usefixtures("prefect_harness")

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER = """
import json, sys, time
from pydantic import SecretStr
from usegrant_flows.quota.limiter import Budget, QuotaLimiter
count, requests, window, block = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
limiter = QuotaLimiter(SecretStr("usegrant_shared"), Budget(requests, window), block)
assert limiter.mode == "global", limiter.mode
moments = []
for _ in range(count):
    limiter.acquire()
    moments.append(time.time())
print(json.dumps(moments))
"""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_applying_a_quota_twice_leaves_one_limit_with_the_budgets_numbers() -> None:
    name = unique("apply")
    budget = Budget(1000)
    apply_quota(name, budget)
    apply_quota(name, budget)

    status = read_quota(name)
    spec = QuotaSpec.for_budget(budget)
    assert status is not None
    assert (status.limit, status.slot_decay_per_second) == (spec.limit, spec.slot_decay_per_second)
    with get_client(sync_client=True) as client:
        names = [g.name for g in client.read_global_concurrency_limits(limit=200)]
    assert names.count(limit_name(name)) == 1


def test_applying_a_new_budget_updates_the_limit() -> None:
    name = unique("update")
    apply_quota(name, Budget(1000))
    apply_quota(name, Budget(5000))
    status = read_quota(name)
    assert status is not None and status.limit == QuotaSpec.for_budget(Budget(5000)).limit


def test_a_saved_block_takes_each_request_from_its_global_limit() -> None:
    name = unique("saved")
    UseGrantCredentials(api_key=SecretStr("usegrant_k"), max_requests_per_hour=50).save(name)
    block = UseGrantCredentials.load(name)

    limiter = block.quota_limiter()
    limiter.acquire()
    limiter.acquire()

    assert limiter.mode == "global"
    assert limiter.name == limit_name(name)
    status = read_quota(name)
    assert (
        status is not None
        and status.active_slots >= QuotaSpec.for_budget(Budget(50)).slots_per_request
    )


async def test_the_async_limiter_creates_the_limit_on_first_use() -> None:
    name = unique("async")
    limiter = QuotaLimiter(SecretStr("usegrant_k"), Budget(20), name)
    await limiter.aacquire()
    assert limiter.requests == 1
    assert read_quota(name) is not None


def test_a_block_built_in_code_uses_the_in_process_limiter() -> None:
    block = UseGrantCredentials(api_key=SecretStr("usegrant_k"), max_requests_per_hour=7)
    limiter = block.quota_limiter()
    assert limiter.mode == "local"
    assert limiter.name is None


def test_processes_sharing_a_limit_never_exceed_the_budget_in_any_window() -> None:
    """Prefect's floor decay, checked empirically: safe under contention, and it keeps moving."""
    requests, window, per_process, processes = 6, 3.0, 8, 2
    name = unique("shared")
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    args = [str(per_process), str(requests), str(window), name]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(processes)
    ]
    moments: list[float] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0
        moments += json.loads(out)
    moments.sort()

    assert len(moments) == processes * per_process  # nobody starved
    assert max_in_sliding_window(moments, window) <= requests
    span = moments[-1] - moments[0]
    print(f"{len(moments)} requests over {span:.1f} s, budget {requests} per {window} s")


def test_the_cli_applies_and_shows_a_blocks_quota(capsys: pytest.CaptureFixture[str]) -> None:
    name = unique("cli")
    UseGrantCredentials(
        api_key=SecretStr("usegrant_k"), max_requests_per_hour=100, quota_window_seconds=60
    ).save(name)

    assert main(["quota", "show", name]) == 0
    assert "no limit on the server yet" in capsys.readouterr().out
    assert main(["quota", "apply", name]) == 0
    applied = capsys.readouterr().out
    assert f"{limit_name(name)}: 100 requests per 60 s" in applied
    assert main(["quota", "apply", name]) == 0
    capsys.readouterr()
    assert main(["quota", "show", name]) == 0
    shown = capsys.readouterr().out
    assert "burst 10 requests" in shown and "out of date" not in shown
    assert "usegrant_k" not in applied + shown


def test_the_cli_refuses_a_missing_block(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quota", "apply", unique("missing")]) == 2
    assert "not found" in capsys.readouterr().err


def test_the_cli_plan_exits_3_for_a_fleet_over_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = unique("plan")
    UseGrantCredentials(api_key=SecretStr("usegrant_k"), max_requests_per_hour=10).save(name)
    targets = [
        {
            "name": f"t{i}",
            "provider_id": "00000000-0000-4000-8000-000000000001",
            "client_id": f"00000000-0000-4000-8000-{i:012d}",
            "sinks": [{"type": "file", "path": f"t{i}.jwt"}],
        }
        for i in range(20)
    ]
    fleet = tmp_path / "fleet.json"
    fleet.write_text(json.dumps({"defaults": {"credentials": name}, "targets": targets}))

    assert main(["quota", "plan", str(fleet)]) == 3
    out = capsys.readouterr().out
    # 20 one-hour tokens refreshed at 2/3 of their life, a little earlier with the jitter.
    assert re.search(rf"fleet needs 3\d mints/h on credentials '{name}' \(20 targets\)", out)


async def test_coroutines_waiting_together_share_one_acquisition() -> None:
    name = unique("pump")
    limiter = QuotaLimiter(SecretStr("usegrant_k"), Budget(100), name)

    await asyncio.gather(*(limiter.aacquire() for _ in range(10)))

    status = read_quota(name)
    spec = QuotaSpec.for_budget(Budget(100))
    assert limiter.requests == 10
    # Ten requests' worth of slots are held (minus what decayed since).
    assert status is not None and status.active_slots <= 10 * spec.slots_per_request
    assert status.active_slots > 5 * spec.slots_per_request


async def test_a_failing_acquisition_reaches_every_waiting_coroutine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import usegrant_flows.quota.limiter as quota

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Prefect API unreachable")

    limiter = QuotaLimiter(SecretStr("usegrant_k"), Budget(100), unique("broken"))
    await limiter.aacquire()  # applies the limit
    monkeypatch.setattr(quota, "arate_limit", broken)

    results = await asyncio.gather(*(limiter.aacquire() for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
