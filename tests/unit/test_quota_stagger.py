"""No herds: refreshes due in one run go out spread over it, each at its own fixed offset."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.issuer import Issuer
from usegrant_flows.api.clock import Clock
from usegrant_flows.api.jwks import JwksCache
from usegrant_flows.api.models import AccessToken
from usegrant_flows.rotation import outcome as rotation_outcome
from usegrant_flows.rotation.fleet import RotationTarget
from usegrant_flows.rotation.plan import stagger_offset
from usegrant_flows.rotation.policy import RotationAction
from usegrant_flows.rotation.record import MemoryRecord
from usegrant_flows.rotation.runner import FleetRunner

P = "10000000-0000-4000-8000-000000000001"
SPREAD = 1.5  # seconds
#: Signs what the fake client mints, so the runner's verification passes.
ISSUER = Issuer()


class Sink:
    readable = True

    def __init__(self, token: AccessToken | None) -> None:
        self.token = token

    async def apreflight(self, metadata: dict[str, Any] | None = None) -> None:
        return None

    async def aread(self) -> AccessToken | None:
        return self.token

    async def awrite(self, token: AccessToken, metadata: dict[str, Any] | None = None) -> None:
        self.token = token

    def describe(self) -> str:
        return "sink"


class RecordingClient:
    def __init__(self, make: Callable[[], AccessToken]) -> None:
        self.make = make
        self.minted: list[str] = []

    async def create_token(self, provider_id: Any, client_id: Any, **options: Any) -> AccessToken:
        self.minted.append(str(client_id))
        return self.make()


class WaitLog:
    """A clock that does not sleep: it records each wait asked of it, in seconds."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.clock = Clock(sleep=self.waits.append)


class Runner(FleetRunner):
    def __init__(
        self, sinks: dict[str, Sink], client: RecordingClient, waits: WaitLog, **kwargs: Any
    ) -> None:
        kwargs.setdefault("record", MemoryRecord({}))
        super().__init__(clock=waits.clock, jwks=JwksCache(transport=ISSUER.transport), **kwargs)
        self.fake_sinks = sinks

        async def get(credentials: str | None) -> RecordingClient:
            return client

        self.clients.get = get  # type: ignore[method-assign,assignment]

    async def sinks_for(self, target: RotationTarget) -> list[Any]:
        return [self.fake_sinks[target.name]]


@pytest.fixture(autouse=True)
def no_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rotation_outcome, "emit_event", lambda **kw: None)


def targets(n: int) -> list[RotationTarget]:
    return [
        RotationTarget(
            name=f"t{i}",
            provider_id=P,
            client_id=f"20000000-0000-4000-8000-{i:012d}",
            sinks=[{"type": "file", "path": "/unused"}],
        )
        for i in range(n)
    ]


def due_token(make_token: Callable[..., AccessToken]) -> AccessToken:
    """A 1 h token issued 50 min ago: past its refresh point, still valid for 10 min."""
    return make_token(lifetime=600, iat=int(time.time()) - 3000)


async def test_each_due_refresh_waits_its_own_fixed_offset_before_minting(
    make_token: Callable[..., AccessToken], tmp_path: Path
) -> None:
    fleet = targets(6)
    sinks = {t.name: Sink(due_token(make_token)) for t in fleet}
    client = RecordingClient(ISSUER.mint)
    waits = WaitLog()
    runner = Runner(sinks, client, waits, lock_dir=tmp_path, spread=SPREAD)

    results = [await runner.rotate(t) for t in fleet]

    assert all(r.action is RotationAction.MINTED for r in results)
    offsets = [stagger_offset(t.identity, SPREAD) for t in fleet]
    assert waits.waits == pytest.approx(offsets)
    assert len(set(offsets)) == len(fleet)  # spread out, not one herd
    assert all(0 < o < SPREAD for o in offsets)


async def test_missing_tokens_are_delivered_at_once_without_waiting(
    make_token: Callable[..., AccessToken], tmp_path: Path
) -> None:
    fleet = targets(4)
    sinks = {t.name: Sink(None) for t in fleet}
    client = RecordingClient(ISSUER.mint)
    waits = WaitLog()
    runner = Runner(sinks, client, waits, lock_dir=tmp_path, spread=3600.0)

    results = await asyncio.gather(*(runner.rotate(t) for t in fleet))

    assert [r.action for r in results] == [RotationAction.MINTED] * 4
    assert waits.waits == []


async def test_a_token_inside_its_renew_before_margin_is_refreshed_at_once(
    make_token: Callable[..., AccessToken], tmp_path: Path
) -> None:
    [target] = targets(1)
    # 200 s left, under the default renew_before of 300 s: no waiting allowed.
    sinks = {target.name: Sink(make_token(lifetime=200, iat=int(time.time()) - 3400))}
    client = RecordingClient(ISSUER.mint)
    waits = WaitLog()
    runner = Runner(sinks, client, waits, lock_dir=tmp_path, spread=3600.0)

    result = await runner.rotate(target)

    assert result.action is RotationAction.MINTED
    assert waits.waits == []


async def test_a_wait_never_runs_past_the_renew_before_margin(
    make_token: Callable[..., AccessToken], tmp_path: Path
) -> None:
    [target] = targets(1)
    # 400 s left: 100 s before the 300 s margin, far less than the hour-long spread.
    sinks = {target.name: Sink(make_token(lifetime=400, iat=int(time.time()) - 3200))}
    client = RecordingClient(ISSUER.mint)
    waits = WaitLog()
    runner = Runner(sinks, client, waits, lock_dir=tmp_path, spread=3600.0)

    await runner.rotate(target)

    [wait] = waits.waits
    assert 0 < wait <= 100


async def test_fresh_targets_neither_wait_nor_mint(
    make_token: Callable[..., AccessToken], tmp_path: Path
) -> None:
    fleet = targets(3)
    sinks = {t.name: Sink(ISSUER.mint(lifetime=3600)) for t in fleet}  # proven: signed
    client = RecordingClient(ISSUER.mint)
    waits = WaitLog()
    runner = Runner(sinks, client, waits, lock_dir=tmp_path, spread=3600.0)

    results = await asyncio.gather(*(runner.rotate(t) for t in fleet))

    assert [r.action for r in results] == [RotationAction.FRESH] * 3
    assert client.minted == []
    assert waits.waits == []


def test_a_negative_spread_is_refused(tmp_path: Path) -> None:
    from usegrant_flows.api.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="spread"):
        FleetRunner(lock_dir=tmp_path, spread=-1.0)
