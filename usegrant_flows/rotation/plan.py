"""Plan a fleet against its request budgets, and spread its mints (no Prefect, no network).

**The plan.** A target mints once per refresh interval: its policy's refresh point
(:meth:`~usegrant_flows.rotation.policy.RefreshPolicy.refresh_point`, jitter included) counted
from the token's issue time, for the target's ``expires_in`` (the API's default 3600 s
when unset). So a target needs ``3600 / interval`` mints per hour; a key needs the sum
over its targets. That is what a rotation really mints, write-only targets (webhooks)
included: the delivery record (:mod:`usegrant_flows.rotation.record`) keeps them fresh
between refreshes, and sinks that disagree are repaired without a mint. (Without a
Prefect server the record lives in one process: a write-only target run by a new process
each time mints on every run, which this plan does not count.)

The key's capacity is the budget's *sustained* rate
(:attr:`~usegrant_flows.quota.budget.Budget.sustained_per_hour`, 891/h for the default
1000/h): the burst (a tenth of the budget) stays free for retries and first deliveries.
A fleet whose needs exceed a key's capacity is refused before any request, with the
numbers and what to change.

**No herds.** :func:`stagger_offset` gives every target a fixed offset within a spread
(a hash of its identity, independent of the refresh jitter), so the mints that fall due
in one scheduled run go out spread over the run instead of in the same second.

Example:
    >>> from usegrant_flows.quota.budget import DEFAULT_BUDGET, Budget
    >>> from usegrant_flows.rotation.fleet import RotationTarget
    >>> t = RotationTarget(name="a", provider_id="00000000-0000-4000-8000-000000000001",
    ...                    client_id="00000000-0000-4000-8000-000000000002",
    ...                    expires_in=3600, sinks=[{"type": "file", "path": "/tmp/a"}],
    ...                    policy={"jitter": 0})
    >>> plan = plan_fleet([t], {None: Budget(1000)})
    >>> plan.keys[0].mints_per_hour
    1.5
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.quota.budget import DEFAULT_BUDGET, Budget
from usegrant_flows.rotation.fleet import RotationTarget

__all__ = [
    "API_DEFAULT_EXPIRES_IN",
    "FleetPlan",
    "KeyPlan",
    "QuotaPlanError",
    "check_fleet_plan",
    "mints_per_hour",
    "plan_fleet",
    "stagger_offset",
]

#: Lifetime in seconds the API gives a token when ``expires_in`` is not sent.
API_DEFAULT_EXPIRES_IN = 3600
_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


class QuotaPlanError(ConfigurationError):
    """Raised before any request when a fleet needs more mints than its budgets allow."""


def mints_per_hour(target: RotationTarget) -> float:
    """Return the mints per hour ``target`` needs under its refresh policy.

    Args:
        target: The target; ``expires_in`` unset means the API's 3600 s.

    Returns:
        ``3600 / refresh interval`` (the interval is at least 1 s).
    """
    lifetime = target.expires_in or API_DEFAULT_EXPIRES_IN
    point = target.policy.refresh_point(
        _EPOCH, _EPOCH + timedelta(seconds=lifetime), identity=target.identity
    )
    interval = max(1.0, (point - _EPOCH).total_seconds())
    return 3600.0 / interval


def _credentials_label(name: str | None) -> str:
    return f"credentials '{name}'" if name else "the USEGRANT_* settings key"


@dataclass(frozen=True)
class KeyPlan:
    """What one API key (credentials block) must carry.

    Attributes:
        credentials: The credentials block name, ``None`` for the settings.
        targets: Targets minting with it.
        mints_per_hour: Mints per hour those targets need.
        budget: The key's budget.
        lifetimes: The distinct ``expires_in`` of those targets, in seconds, sorted.
    """

    credentials: str | None
    targets: int
    mints_per_hour: float
    budget: Budget
    lifetimes: tuple[int, ...]

    @property
    def capacity_per_hour(self) -> float:
        """Mints per hour the budget sustains."""
        return self.budget.sustained_per_hour

    @property
    def fits(self) -> bool:
        """True when the needs fit the sustained budget."""
        return self.mints_per_hour <= self.capacity_per_hour

    @property
    def left_per_hour(self) -> float:
        """Sustained mints per hour left once the fleet is served (negative when over)."""
        return self.capacity_per_hour - self.mints_per_hour

    def summary(self) -> str:
        """One line: needs, budget and what is left, e.g. for the rotation artifact."""
        share = self.mints_per_hour / self.capacity_per_hour
        return (
            f"{_credentials_label(self.credentials)}: {self.targets:,} targets need "
            f"{self.mints_per_hour:,.0f} mints/h of {self.capacity_per_hour:,.0f}/h sustained "
            f"({share:.0%}; budget {self.budget.requests:,} per {self.budget.window:g} s), "
            f"{max(0.0, self.left_per_hour):,.0f}/h left"
        )

    def refusal(self) -> str:
        """The message of a fleet that does not fit: the numbers and what to change."""
        keys = math.ceil(self.mints_per_hour / self.capacity_per_hour)
        if len(self.lifetimes) == 1:
            now = f"now {self.lifetimes[0]} s"
        else:
            now = f"now {self.lifetimes[0]}..{self.lifetimes[-1]} s"
        needed_budget = math.ceil(self.mints_per_hour * 1.12)
        return (
            f"fleet needs {self.mints_per_hour:,.0f} mints/h on "
            f"{_credentials_label(self.credentials)} ({self.targets:,} targets) but the "
            f"budget sustains {self.capacity_per_hour:,.0f}/h ({self.budget.describe()}): "
            f"raise expires_in ({now}), split the fleet over {keys}+ keys, or raise "
            f"max_requests_per_hour (to about {needed_budget:,} if UseGrant allows it)"
        )


@dataclass(frozen=True)
class FleetPlan:
    """The plan of a whole fleet: one :class:`KeyPlan` per credentials."""

    keys: tuple[KeyPlan, ...]

    @property
    def fits(self) -> bool:
        """True when every key's needs fit its budget."""
        return all(key.fits for key in self.keys)

    def lines(self) -> list[str]:
        """One summary line per key."""
        return [key.summary() for key in self.keys]


def plan_fleet(
    targets: Sequence[RotationTarget], budgets: Mapping[str | None, Budget]
) -> FleetPlan:
    """Compute what each key of the fleet must carry.

    Args:
        targets: The fleet.
        budgets: Budget per credentials block name of the fleet; the settings' key
            (``None``) gets UseGrant's default, 1000 per hour, unless given here.

    Returns:
        The plan, keys in order of first appearance.

    Raises:
        ConfigurationError: When a credentials block of the fleet has no budget.
    """
    grouped: dict[str | None, list[RotationTarget]] = {}
    for target in targets:
        grouped.setdefault(target.credentials, []).append(target)
    keys = []
    for name, members in grouped.items():
        keys.append(
            KeyPlan(
                credentials=name,
                targets=len(members),
                mints_per_hour=sum(mints_per_hour(t) for t in members),
                budget=_budget_for(name, budgets),
                lifetimes=tuple(sorted({t.expires_in or API_DEFAULT_EXPIRES_IN for t in members})),
            )
        )
    return FleetPlan(keys=tuple(keys))


def _budget_for(name: str | None, budgets: Mapping[str | None, Budget]) -> Budget:
    budget = budgets.get(name)
    if budget is not None:
        return budget
    if name is None:
        return DEFAULT_BUDGET
    raise ConfigurationError(f"no request budget for credentials block '{name}'")


async def aplan_fleet(targets: Sequence[RotationTarget]) -> FleetPlan:
    """Plan a fleet against the budgets of its credentials blocks (loaded by name).

    Targets whose credentials block cannot be loaded send no request (each fails with
    the loader's one-line reason when the rotation reaches it), so they are left out.

    Args:
        targets: The fleet.

    Returns:
        The plan (:func:`check_fleet_plan` refuses it when it does not fit).
    """
    from usegrant_flows.credentials import aload_credentials

    budgets: dict[str | None, Budget] = {}
    missing: set[str] = set()
    for name in sorted({t.credentials for t in targets if t.credentials is not None}):
        try:
            budgets[name] = (await aload_credentials(name)).budget()
        except ConfigurationError:
            missing.add(name)
    return plan_fleet([t for t in targets if t.credentials not in missing], budgets)


def check_fleet_plan(plan: FleetPlan) -> None:
    """Refuse a plan that does not fit, before any request.

    Raises:
        QuotaPlanError: Naming each key over its budget, the numbers and the fixes.
    """
    over = [key.refusal() for key in plan.keys if not key.fits]
    if over:
        raise QuotaPlanError("; ".join(over))


def stagger_offset(identity: str, spread: float) -> float:
    """Return a target's fixed offset in ``[0, spread)`` seconds, from its identity.

    The same identity always gets the same offset, on every machine; a fleet's offsets
    are spread evenly. Independent of the refresh jitter (a different hash input).

    Args:
        identity: The target's identity (``RotationTarget.identity``).
        spread: Seconds to spread over (>= 0).

    Example:
        >>> stagger_offset("t", 60.0) == stagger_offset("t", 60.0)
        True
        >>> 0 <= stagger_offset("t", 60.0) < 60
        True
    """
    if spread <= 0:
        return 0.0
    digest = hashlib.sha256(b"usegrant-stagger:" + identity.encode()).digest()
    return spread * int.from_bytes(digest[:8], "big") / 2**64
