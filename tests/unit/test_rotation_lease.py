"""Leases across runs, as claims in a Prefect server (a local API): bulk, partial, recovered."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from prefect.client.orchestration import get_client

from usegrant_flows.rotation import lease as lease_module
from usegrant_flows.rotation.claims import Claim, create_claim, read_claims, target_key
from usegrant_flows.rotation.lease import TargetLeases
from usegrant_flows.rotation.locks import LockTimeoutError

pytestmark = pytest.mark.usefixtures("prefect_harness")


def names(n: int) -> list[str]:
    """``n`` target identities no other test uses."""
    run = uuid.uuid4().hex[:8]
    return [f"t{i}-{run}:p:c" for i in range(n)]


async def claim_names() -> set[str]:
    async with get_client() as client:
        return {claim.name for claim in await read_claims(client)}


async def test_a_batch_claims_hundreds_of_targets_in_two_calls_and_gives_them_back_in_one() -> None:
    before = await claim_names()
    leases = TargetLeases(timeout=60, enabled=True)
    targets = names(300)
    try:
        async with leases.claim(targets):
            assert leases.api_calls == 0  # nothing due yet: nothing sent
            for identity in targets[:50]:  # the due targets
                async with leases.hold(identity):
                    pass
            assert leases.api_calls == 2  # the first one wrote the claim, read every claim
            assert len(await claim_names() - before) == 1
        assert leases.api_calls == 3  # the claim is deleted at the end of the batch
        assert await claim_names() == before  # nothing piles up
        assert leases.leases == 50
    finally:
        await leases.aclose()


async def test_a_batch_where_nothing_is_due_costs_no_call() -> None:
    leases = TargetLeases(timeout=60, enabled=True)
    async with leases.claim(names(250)):
        pass
    assert leases.api_calls == 0
    await leases.aclose()


async def test_two_runs_holding_one_target_take_turns() -> None:
    one = TargetLeases(timeout=60, enabled=True)
    two = TargetLeases(timeout=60, enabled=True)
    [target] = names(1)
    inside: list[str] = []
    order: list[str] = []

    async def hold(who: TargetLeases, label: str) -> None:
        async with who.hold(target):
            inside.append(label)
            assert len(inside) == 1, "two holders at once"
            await asyncio.sleep(0.3)
            order.append(label)
            inside.remove(label)

    try:
        await asyncio.gather(hold(one, "one"), hold(two, "two"))
        assert sorted(order) == ["one", "two"]
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_target_held_in_a_batch_stays_claimed_until_the_batch_ends() -> None:
    # The batch writes its delivery record before its claim goes, so the next holder of
    # a target sees both the token in the sinks and the record that names it.
    mine = TargetLeases(timeout=60, enabled=True)
    other = TargetLeases(timeout=60, enabled=True)
    [target] = names(1)
    try:
        async with mine.claim([target]):
            assert mine.granted_at(target) is None  # nothing due yet: nothing claimed
            async with mine.hold(target):  # the target's section ends before the batch
                granted = mine.granted_at(target)
                assert granted is not None and granted <= time.monotonic()
            assert mine.granted_at(target) == granted  # still ours until the batch ends
            other.timeout = 1
            with pytest.raises(LockTimeoutError):
                async with other.claim([target]), other.hold(target):
                    raise AssertionError("took a target a live batch holds")
            other.timeout = 60
        async with other.claim([target]), other.hold(target):
            assert other.granted_at(target) is not None  # given back with the batch
    finally:
        await mine.aclose()
        await other.aclose()


async def test_a_batch_meeting_another_on_one_target_takes_all_or_none() -> None:
    # A batch keeps its targets until it ends: holding some while waiting for others
    # could wait forever on a run doing the same. So all of a batch's targets, or none.
    first = TargetLeases(timeout=60, enabled=True)
    second = TargetLeases(timeout=1.5, enabled=True)
    a, shared, b = names(3)
    try:
        async with first.claim([a, shared]), first.hold(a), second.claim([shared, b]):
            with pytest.raises(LockTimeoutError):  # b is free, but not all of the batch
                async with second.hold(b):
                    raise AssertionError("held part of a batch while another run holds part")
        second.timeout = 60
        async with second.claim([shared, b]), second.hold(b):  # the first batch ended
            assert second.granted_at(shared) is not None  # all of it
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_lease_held_past_the_wait_is_a_lock_timeout_naming_the_target() -> None:
    holder = TargetLeases(timeout=60, enabled=True)
    waiter = TargetLeases(timeout=0.5, enabled=True)
    [target] = names(1)
    try:
        async with holder.hold(target):
            with pytest.raises(
                LockTimeoutError,
                match=rf"no lease on target '{target.split(':')[0]}' within 0.5 s: held by another",
            ):
                async with waiter.hold(target):
                    raise AssertionError("entered a held lease")
        async with waiter.hold(target):  # released: free again at once
            pass
    finally:
        await holder.aclose()
        await waiter.aclose()


async def test_a_dead_holders_claim_is_stale_after_its_ttl_then_deleted_and_taken() -> None:
    [target] = names(1)
    dead = Claim.new({target_key(target)})
    async with get_client() as client:  # a holder that wrote its claim, then died
        await create_claim(client, dead, ttl=2, holder="a dead run", now=time.monotonic())
    waiter = TargetLeases(timeout=30, enabled=True)
    started = time.monotonic()
    try:
        async with waiter.hold(target):
            waited = time.monotonic() - started
        assert waited >= 1  # not before the dead claim's TTL (server clock, 1 s steps)
        assert dead.name not in await claim_names()  # deleted by the run that found it
    finally:
        await waiter.aclose()


async def test_without_a_server_a_lease_costs_nothing() -> None:
    leases = TargetLeases(enabled=False)
    async with leases.claim(["local:p:c"]), leases.hold("local:p:c"):
        pass
    assert leases.api_calls == 0
    await leases.aclose()


def _busy(status: int, times: int) -> object:
    """A ``read_claims`` whose server answers ``status`` ``times`` times, then reads."""
    real = lease_module.read_claims
    calls = {"n": 0}

    async def read(client: object) -> object:
        calls["n"] += 1
        if calls["n"] <= times:
            request = httpx.Request("POST", "http://127.0.0.1/api/variables/filter")
            response = httpx.Response(status, request=request)
            raise httpx.HTTPStatusError("busy", request=request, response=response)
        return await real(client)  # type: ignore[arg-type]

    return read


async def test_a_busy_server_is_asked_again_within_the_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lease_module, "read_claims", _busy(503, 2))
    leases = TargetLeases(timeout=30, enabled=True)
    [target] = names(1)
    try:
        async with leases.hold(target):
            pass
        assert leases.leases == 1
    finally:
        await leases.aclose()


async def test_a_server_down_past_the_wait_is_one_line_naming_the_target_and_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lease_module, "read_claims", _busy(503, 1000))
    leases = TargetLeases(timeout=1, enabled=True)
    [target] = names(1)
    try:
        with pytest.raises(LockTimeoutError, match=r"no lease on target 't0-.*answered 503"):
            async with leases.hold(target):
                raise AssertionError("entered without a lease")
    finally:
        await leases.aclose()


async def test_claims_are_kept_alive_while_the_run_goes_on() -> None:
    leases = TargetLeases(timeout=60, enabled=True, ttl=2)
    targets = names(2)
    try:
        async with leases.claim(targets):
            async with leases.hold(targets[1]):  # claims both
                pass
            await asyncio.sleep(3)  # past the TTL: renewed, so another run still waits
            other = TargetLeases(timeout=0.5, enabled=True)
            with pytest.raises(LockTimeoutError):
                async with other.hold(targets[0]):
                    raise AssertionError("took a target of a live run")
            await other.aclose()
            calls = leases.api_calls
            async with leases.hold(targets[0]):  # still ours: no claim call
                assert leases.api_calls == calls
    finally:
        await leases.aclose()
