"""No herds: refreshes due in one run go out spread over it, each at its own fixed offset."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from usegrant_flows import rotation_runner
from usegrant_flows._quota_plan import stagger_offset
from usegrant_flows.fleet import RotationTarget
from usegrant_flows.models import AccessToken
from usegrant_flows.rotation import RotationAction
from usegrant_flows.rotation_runner import FleetRunner

P = "10000000-0000-4000-8000-000000000001"
SPREAD = 1.5  # seconds


class Sink:
    readable = True

    def __init__(self, token: AccessToken | None) -> None:
        self.token = token

    async def aread(self) -> AccessToken | None:
        return self.token

    async def awrite(self, token: AccessToken, metadata: dict[str, Any] | None = None) -> None:
        self.token = token

    def describe(self) -> str:
        return "sink"


class RecordingClient:
    def __init__(self, make: Callable[[], AccessToken]) -> None:
        self.make = make
        self.minted: list[tuple[str, float]] = []

    async def create_token(self, provider_id: Any, client_id: Any, **options: Any) -> AccessToken:
        self.minted.append((str(client_id), time.monotonic()))
        return self.make()


class Runner(FleetRunner):
    def __init__(self, sinks: dict[str, Sink], client: RecordingClient, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fake_sinks = sinks

        async def get(credentials: str | None) -> RecordingClient:
            return client

        self.clients.get = get  # type: ignore[method-assign,assignment]

    async def sinks_for(self, target: RotationTarget) -> list[Any]:
        return [self.fake_sinks[target.name]]


@pytest.fixture(autouse=True)
def no_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rotation_runner, "emit_event", lambda **kw: None)


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


async def test_due_refreshes_go_out_in_the_order_of_their_fixed_offsets(
    make_token: Callable[..., AccessToken], tmp_path: Path
) -> None:
    fleet = targets(6)
    sinks = {t.name: Sink(due_token(make_token)) for t in fleet}
    client = RecordingClient(make_token)
    runner = Runner(sinks, client, lock_dir=tmp_path, spread=SPREAD)

    started = time.monotonic()
    results = await asyncio.gather(*(runner.rotate(t) for t in fleet))

    assert all(r.action is RotationAction.MINTED for r in results)
    offsets = {str(t.client_id): stagger_offset(t.identity, SPREAD) for t in fleet}
    assert [c for c, _ in client.minted] == sorted(offsets, key=offsets.__getitem__)
    # Each target waited at least its own offset (asyncio.sleep never wakes early).
    assert all(moment - started >= offsets[c] - 0.01 for c, moment in client.minted)


async def test_missing_tokens_are_delivered_at_once_without_waiting(
    make_token: Callable[..., AccessToken], tmp_path: Path
) -> None:
    fleet = targets(4)
    sinks = {t.name: Sink(None) for t in fleet}
    client = RecordingClient(make_token)
    runner = Runner(sinks, client, lock_dir=tmp_path, spread=3600.0)

    results = await asyncio.wait_for(asyncio.gather(*(runner.rotate(t) for t in fleet)), 60)

    assert [r.action for r in results] == [RotationAction.MINTED] * 4


async def test_a_token_inside_its_renew_before_margin_is_refreshed_at_once(
    make_token: Callable[..., AccessToken], tmp_path: Path
) -> None:
    [target] = targets(1)
    # 200 s left, under the default renew_before of 300 s: no waiting allowed.
    sinks = {target.name: Sink(make_token(lifetime=200, iat=int(time.time()) - 3400))}
    client = RecordingClient(make_token)
    runner = Runner(sinks, client, lock_dir=tmp_path, spread=3600.0)

    result = await asyncio.wait_for(runner.rotate(target), 60)

    assert result.action is RotationAction.MINTED


async def test_fresh_targets_neither_wait_nor_mint(
    make_token: Callable[..., AccessToken], tmp_path: Path
) -> None:
    fleet = targets(3)
    sinks = {t.name: Sink(make_token(lifetime=3600)) for t in fleet}
    client = RecordingClient(make_token)
    runner = Runner(sinks, client, lock_dir=tmp_path, spread=3600.0)

    results = await asyncio.wait_for(asyncio.gather(*(runner.rotate(t) for t in fleet)), 60)

    assert [r.action for r in results] == [RotationAction.FRESH] * 3
    assert client.minted == []


def test_a_negative_spread_is_refused(tmp_path: Path) -> None:
    from usegrant_flows.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="spread"):
        FleetRunner(lock_dir=tmp_path, spread=-1.0)
