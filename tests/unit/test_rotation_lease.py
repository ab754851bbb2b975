"""Per-target leases in the Prefect server (a local API): one holder at a time, two calls."""

from __future__ import annotations

import asyncio

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
            with pytest.raises(LockTimeoutError, match=r"another worker held target 'busy'"):
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
