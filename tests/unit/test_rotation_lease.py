"""Per-target leases in the Prefect server (a local API): one holder at a time, two calls."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

import httpx
import pytest
from prefect.client.orchestration import get_client

from usegrant_flows.rotation.lease import TargetLeases, lease_name
from usegrant_flows.rotation.locks import LockTimeoutError

pytestmark = pytest.mark.usefixtures("prefect_harness")


async def test_two_holders_of_one_target_take_turns_and_the_limit_is_created_once() -> None:
    leases = TargetLeases(timeout=60, enabled=True)
    other = TargetLeases(timeout=60, enabled=True)
    inside: list[str] = []
    order: list[str] = []

    async def hold(who: TargetLeases, label: str) -> None:
        async with who.hold("turns:p:c"):
            inside.append(label)
            assert len(inside) == 1, "two holders at once"
            await asyncio.sleep(0.3)
            order.append(label)
            inside.remove(label)

    try:
        await asyncio.gather(hold(leases, "one"), hold(other, "two"))
        assert sorted(order) == ["one", "two"]
        async with get_client() as client:
            limit = await client.read_global_concurrency_limit_by_name(lease_name("turns:p:c"))
        assert limit.limit == 1 and limit.active_slots == 0
        # Steady state: the limit exists, one acquisition and one release.
        before = leases.api_calls
        async with leases.hold("turns:p:c"):
            pass
        assert leases.api_calls - before == 2
        assert leases.leases == 2 and leases.seconds > 0
    finally:
        await leases.aclose()
        await other.aclose()


async def test_a_lease_held_past_the_wait_is_a_lock_timeout_naming_the_target() -> None:
    holder = TargetLeases(timeout=60, enabled=True)
    waiter = TargetLeases(timeout=0.5, enabled=True)
    try:
        async with holder.hold("busy:p:c"):
            with pytest.raises(
                LockTimeoutError, match=r"no lease on target 'busy' within 0.5 s: held by another"
            ):
                async with waiter.hold("busy:p:c"):
                    raise AssertionError("entered a held lease")
        async with waiter.hold("busy:p:c"):  # released: free again at once
            pass
    finally:
        await holder.aclose()
        await waiter.aclose()


async def test_without_a_server_a_lease_costs_nothing() -> None:
    leases = TargetLeases(enabled=False)
    async with leases.hold("local:p:c"):
        pass
    assert leases.api_calls == 0
    await leases.aclose()


class _BusyThenFree:
    """A Prefect client whose server answers 503 twice (SQLite busy), then grants."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.calls = 0

    async def increment_concurrency_slots_with_lease(self, **kwargs: object) -> httpx.Response:
        self.calls += 1
        request = httpx.Request("POST", "http://127.0.0.1/api/v2/concurrency_limits/x")
        if self.calls <= 2:
            response = httpx.Response(self.status, request=request)
            raise httpx.HTTPStatusError("busy", request=request, response=response)
        return httpx.Response(
            200, json={"limits": [{"id": str(uuid4())}], "lease_id": str(uuid4())}
        )


async def test_a_busy_server_is_asked_again_not_taken_for_a_refusal() -> None:
    leases = TargetLeases(timeout=30, enabled=True)
    client = _BusyThenFree(503)
    lease_id = await leases._acquire(client, lease_name("x:p:c"), "x:p:c")  # type: ignore[arg-type]
    assert isinstance(lease_id, UUID)
    assert client.calls == 3


async def test_a_server_busy_past_the_wait_is_one_line_naming_the_target_and_the_status() -> None:
    leases = TargetLeases(timeout=0.05, enabled=True)
    with pytest.raises(LockTimeoutError, match=r"no lease on target 'x'.*answered 503"):
        await leases._acquire(_BusyThenFree(503), lease_name("x:p:c"), "x:p:c")  # type: ignore[arg-type]


async def test_a_refusal_that_is_not_transient_is_raised_at_once() -> None:
    leases = TargetLeases(timeout=30, enabled=True)
    client = _BusyThenFree(403)
    with pytest.raises(httpx.HTTPStatusError):
        await leases._acquire(client, lease_name("x:p:c"), "x:p:c")  # type: ignore[arg-type]
    assert client.calls == 1
