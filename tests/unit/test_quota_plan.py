"""Plan before minting: a fleet that cannot fit its budget is refused, with the numbers."""

from __future__ import annotations

from typing import Any

import pytest

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.quota.budget import Budget
from usegrant_flows.rotation.fleet import RotationTarget
from usegrant_flows.rotation.plan import (
    QuotaPlanError,
    check_fleet_plan,
    mints_per_hour,
    plan_fleet,
    stagger_offset,
)


def target(index: int, **fields: Any) -> RotationTarget:
    data: dict[str, Any] = {
        "name": f"t{index}",
        "provider_id": "00000000-0000-4000-8000-000000000001",
        "client_id": f"00000000-0000-4000-8000-{index:012d}",
        "sinks": [{"type": "file", "path": f"/tmp/t{index}.jwt"}],
        "policy": {"jitter": 0},
        **fields,
    }
    return RotationTarget.model_validate(data)


def test_a_target_mints_once_per_refresh_interval_of_its_policy() -> None:
    # 3600 s tokens refreshed at 2/3 of their life: every 2400 s, 1.5 per hour.
    assert mints_per_hour(target(1, expires_in=3600)) == pytest.approx(1.5)
    # The renew_before floor wins for short tokens: 600 s - 300 s = every 300 s.
    assert mints_per_hour(target(2, expires_in=600)) == pytest.approx(12.0)


def test_an_unset_lifetime_counts_as_the_apis_default_hour() -> None:
    assert mints_per_hour(target(1)) == mints_per_hour(target(1, expires_in=3600))


def test_jitter_only_makes_a_target_mint_more_often() -> None:
    plain = mints_per_hour(target(1, expires_in=3600))
    jittered = mints_per_hour(target(1, expires_in=3600, policy={"jitter": 0.2}))
    assert plain <= jittered <= 3600 / (3600 * (2 / 3 - 0.2))


def test_a_fleet_that_fits_passes_the_check_and_reports_what_is_left() -> None:
    fleet = [target(i, credentials="prod", expires_in=3600) for i in range(100)]
    plan = plan_fleet(fleet, {"prod": Budget(1000)})
    check_fleet_plan(plan)
    [key] = plan.keys
    assert key.mints_per_hour == pytest.approx(150)
    assert key.left_per_hour == pytest.approx(Budget(1000).sustained_per_hour - 150)
    assert "credentials 'prod': 100 targets need 150 mints/h of 891/h" in key.summary()


def test_a_fleet_over_its_budget_is_refused_with_the_numbers_and_the_fixes() -> None:
    fleet = [target(i, credentials="prod", expires_in=3600) for i in range(1200)]
    plan = plan_fleet(fleet, {"prod": Budget(1000)})

    with pytest.raises(QuotaPlanError) as caught:
        check_fleet_plan(plan)

    message = str(caught.value)
    assert "fleet needs 1,800 mints/h on credentials 'prod' (1,200 targets)" in message
    assert "budget sustains 891/h (1,000 requests per 3600 s" in message
    assert "raise expires_in (now 3600 s)" in message
    assert "split the fleet over 3+ keys" in message
    assert "raise max_requests_per_hour" in message
    assert isinstance(caught.value, ConfigurationError)


def test_each_key_is_planned_against_its_own_budget() -> None:
    fleet = [target(i, credentials="a", expires_in=600) for i in range(10)]
    fleet += [target(100 + i, credentials="b", expires_in=600) for i in range(100)]
    plan = plan_fleet(fleet, {"a": Budget(1000), "b": Budget(1000)})

    with pytest.raises(QuotaPlanError) as caught:
        check_fleet_plan(plan)

    assert "credentials 'b'" in str(caught.value)
    assert "credentials 'a'" not in str(caught.value)
    assert [k.fits for k in plan.keys] == [True, False]


def test_the_refusal_names_the_range_of_lifetimes_when_they_differ() -> None:
    fleet = [target(i, expires_in=600 if i % 2 else 900) for i in range(200)]
    plan = plan_fleet(fleet, {None: Budget(1000)})
    with pytest.raises(QuotaPlanError, match=r"now 600\.\.900 s") as caught:
        check_fleet_plan(plan)
    assert "the USEGRANT_* settings key" in str(caught.value)


def test_the_settings_key_gets_the_apis_default_budget() -> None:
    plan = plan_fleet([target(1)], {})
    assert plan.keys[0].credentials is None
    assert plan.keys[0].budget == Budget(1000)


def test_a_credentials_block_without_a_budget_is_an_error_not_a_silent_default() -> None:
    with pytest.raises(ConfigurationError, match="no request budget for credentials block 'x'"):
        plan_fleet([target(1, credentials="x")], {})


def test_the_stagger_offset_is_fixed_per_target_and_inside_the_spread() -> None:
    offsets = [stagger_offset(target(i).identity, 600.0) for i in range(1000)]
    assert offsets == [stagger_offset(target(i).identity, 600.0) for i in range(1000)]
    assert all(0 <= offset < 600 for offset in offsets)


def test_the_stagger_spreads_a_fleet_over_the_whole_interval() -> None:
    offsets = [stagger_offset(target(i).identity, 600.0) for i in range(2000)]
    per_minute = [0] * 10
    for offset in offsets:
        per_minute[int(offset // 60)] += 1
    # 200 expected per minute; no minute gets a herd.
    assert max(per_minute) < 260
    assert min(per_minute) > 140


def test_no_spread_means_no_offset() -> None:
    assert stagger_offset("any", 0.0) == 0.0
