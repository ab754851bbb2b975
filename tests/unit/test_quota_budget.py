"""Request budgets: the bucket maths behind the Prefect limit, and the in-process window limiter."""

from __future__ import annotations

import asyncio
import threading

import pytest

from usegrant_flows.api.clock import Clock
from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.emulator.faults import SlidingWindowLimiter, max_in_sliding_window
from usegrant_flows.quota.budget import (
    Budget,
    WindowLimiter,
    key_fingerprint,
    local_limiter,
    reset_local_limiters,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bucket_admissions(budget: Budget, arrivals: list[float]) -> list[float]:
    """Simulate Prefect's limit exactly: whole slots, floor decay, clock reset at each update."""
    active, updated, admitted = 0, arrivals[0], []
    k = budget.slots_per_request
    for t in arrivals:
        active = max(0, active - int(budget.slot_decay_per_second * (t - updated)))
        updated = t
        if active + k <= budget.slot_limit:
            active += k
            admitted.append(t)
    return admitted


@pytest.mark.parametrize(
    ("requests", "window"), [(1000, 3600.0), (10, 5.0), (1, 60.0), (3, 2.0), (1000, 20.0)]
)
def test_the_bucket_never_admits_more_than_the_budget_in_any_window(
    requests: int, window: float
) -> None:
    budget = Budget(requests, window)
    assert budget.burst + budget.rate * budget.window < requests + 1
    # Callers hammering every 10 ms for three windows: the fullest window stays in budget.
    step = window / 1000
    arrivals = [i * step for i in range(3000)]
    admitted = bucket_admissions(budget, arrivals)
    assert max_in_sliding_window(admitted, window) <= requests


def test_the_default_budget_bursts_a_tenth_and_sustains_the_rest_over_the_hour() -> None:
    budget = Budget(1000)
    assert budget.burst == 100
    assert budget.slack == 36.0
    assert budget.sustained_per_hour == pytest.approx(900 * 3600 / 3636)


def test_each_request_takes_enough_slots_for_a_decay_of_ten_slots_per_second() -> None:
    for budget in (Budget(1000), Budget(10, 5.0), Budget(5, 3600.0)):
        assert budget.slots_per_request >= 20
        assert budget.slot_decay_per_second >= 10
        assert budget.slot_limit == budget.burst * budget.slots_per_request


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10"])
def test_a_budget_below_one_request_is_refused(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="max_requests_per_hour"):
        Budget(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -5.0, float("inf"), float("nan")])
def test_a_window_that_is_not_a_positive_number_is_refused(bad: float) -> None:
    with pytest.raises(ConfigurationError, match="quota_window_seconds"):
        Budget(10, bad)


def test_the_window_limiter_lets_the_whole_budget_go_at_once() -> None:
    clock = FakeClock()
    limiter = WindowLimiter(Budget(5, 10.0), clock=Clock(monotonic=clock))
    assert [limiter.reserve() for _ in range(5)] == [0.0] * 5


def test_the_window_limiter_schedules_the_next_request_when_the_oldest_leaves_the_window() -> None:
    clock = FakeClock()
    budget = Budget(2, 10.0)
    limiter = WindowLimiter(budget, clock=Clock(monotonic=clock))
    limiter.reserve()
    clock.now += 3
    limiter.reserve()
    span = 10.0 + budget.slack
    assert limiter.reserve() == pytest.approx(span - 3)
    assert limiter.reserve() == pytest.approx(span)


def test_waiters_of_the_window_limiter_get_distinct_moments_in_arrival_order() -> None:
    clock = FakeClock()
    limiter = WindowLimiter(Budget(1, 1.0), clock=Clock(monotonic=clock))
    waits = [limiter.reserve() for _ in range(4)]
    assert waits == sorted(waits)
    assert len(set(waits)) == 4


def test_requests_let_through_by_the_window_limiter_never_draw_a_429_from_the_api_rule() -> None:
    clock = FakeClock()
    budget = Budget(7, 4.0)
    limiter = WindowLimiter(budget, clock=Clock(monotonic=clock))
    api = SlidingWindowLimiter()
    for _ in range(60):
        moment = clock.now + limiter.reserve()
        assert api.acquire("k", limit=7, window=4.0, now=moment) is None
        clock.now += 0.05


def test_the_window_limiter_is_shared_safely_by_threads() -> None:
    limiter = WindowLimiter(Budget(800, 3600.0))
    threads = [
        threading.Thread(target=lambda: [limiter.reserve() for _ in range(100)]) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert limiter.granted == 800
    assert limiter.reserve() > 0  # the 801st must wait for the window


async def test_the_window_limiter_paces_coroutines_without_blocking_the_loop() -> None:
    limiter = WindowLimiter(Budget(2, 0.2))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    background = asyncio.create_task(ticker())
    await asyncio.gather(*(limiter.aacquire() for _ in range(4)))
    background.cancel()
    assert limiter.granted == 4
    assert ticks > 3  # the loop kept running while the third and fourth waited


def test_one_process_shares_one_limiter_per_key_and_budget() -> None:
    reset_local_limiters()
    first = local_limiter("usegrant_a", Budget(10))
    assert local_limiter("usegrant_a", Budget(10)) is first
    assert local_limiter("usegrant_b", Budget(10)) is not first
    assert local_limiter("usegrant_a", Budget(20)) is not first
    reset_local_limiters()


def test_a_key_is_named_by_its_fingerprint_never_by_itself() -> None:
    fingerprint = key_fingerprint("usegrant_secret_value")
    assert "secret" not in fingerprint
    assert len(fingerprint) == 16
    limiter = local_limiter("usegrant_secret_value", Budget(10))
    assert "secret" not in repr(limiter.__dict__)
