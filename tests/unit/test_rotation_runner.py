"""One target's rotation: skip, mint once, keep the last good token, outcome and event.

The sinks and the client here are small fakes with the sink/client interface, so each
rule is checked on its own; the real sinks and the emulator are used by
tests/integration/test_flows_rotate.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from usegrant_flows.api.errors import AuthenticationError
from usegrant_flows.api.models import AccessToken
from usegrant_flows.rotation import runner as rotation_runner
from usegrant_flows.rotation.fleet import RotationTarget
from usegrant_flows.rotation.policy import RotationAction, RotationResult
from usegrant_flows.rotation.runner import FleetRunner
from usegrant_flows.sinks import SinkError

P = "10000000-0000-4000-8000-000000000001"


class FakeSink:
    def __init__(
        self,
        name: str,
        token: AccessToken | None = None,
        *,
        readable: bool = True,
        fail: bool = False,
    ) -> None:
        self.name = name
        self.token = token
        self.readable = readable
        self.fail = fail
        self.writes = 0

    async def aread(self) -> AccessToken | None:
        return self.token if self.readable else None

    async def awrite(self, token: AccessToken, metadata: dict[str, Any] | None = None) -> None:
        if self.fail:
            raise SinkError(f"could not write {self.name}")
        self.writes += 1
        self.token = token

    def describe(self) -> str:
        return f"fake {self.name}"


class FakeClient:
    def __init__(
        self, make: Callable[[], AccessToken], *, error: Exception | None = None, delay: float = 0.0
    ) -> None:
        self.make = make
        self.error = error
        self.delay = delay
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0

    async def create_token(self, provider_id: Any, client_id: Any, **options: Any) -> AccessToken:
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if self.error is not None:
                raise self.error
            return self.make()
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        pass


class Runner(FleetRunner):
    """A FleetRunner whose targets' sinks and client are fakes."""

    def __init__(self, sinks: dict[str, list[FakeSink]], client: FakeClient, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fake_sinks = sinks
        self.fake_client = client

        async def get(credentials: str | None) -> FakeClient:
            return client

        self.clients.get = get  # type: ignore[method-assign,assignment]

    async def sinks_for(self, target: RotationTarget) -> list[Any]:
        return self.fake_sinks[target.name]


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    emitted: list[dict[str, Any]] = []
    monkeypatch.setattr(rotation_runner, "emit_event", lambda **kw: emitted.append(kw))
    return emitted


def target(
    name: str = "aws", client: str = "20000000-0000-4000-8000-000000000001"
) -> RotationTarget:
    return RotationTarget(
        name=name,
        provider_id=P,
        client_id=client,
        credentials="prod",
        sinks=[{"type": "file", "path": "/unused"}],
    )


async def rotate(runner: FleetRunner, t: RotationTarget | None = None) -> RotationResult:
    return await runner.rotate(t or target())


async def test_every_readable_sink_fresh_skips_the_mint(make_token, tmp_path: Path, events) -> None:
    sinks = [FakeSink("a", make_token()), FakeSink("b", make_token())]
    client = FakeClient(make_token)
    result = await rotate(Runner({"aws": sinks}, client, lock_dir=tmp_path))
    assert (result.action, client.calls) == (RotationAction.FRESH, 0)


async def test_one_stale_sink_mints_once_and_writes_every_sink(
    make_token, tmp_path: Path, events
) -> None:
    sinks = [FakeSink("a", make_token()), FakeSink("b", None)]
    client = FakeClient(make_token)
    result = await rotate(Runner({"aws": sinks}, client, lock_dir=tmp_path))
    assert (result.action, client.calls) == (RotationAction.MINTED, 1)
    assert [s.writes for s in sinks] == [1, 1]
    assert sinks[0].token is sinks[1].token
    assert result.sinks_written == ("fake a", "fake b")


async def test_token_past_two_thirds_of_its_life_is_replaced(
    make_token, tmp_path: Path, events
) -> None:
    old = make_token(lifetime=3600, iat=0)  # issued at the epoch: long past 2/3
    sinks = [FakeSink("a", old)]
    result = await rotate(Runner({"aws": sinks}, FakeClient(make_token), lock_dir=tmp_path))
    assert result.action is RotationAction.MINTED and sinks[0].token is not old


async def test_write_only_sinks_alone_always_mint(make_token, tmp_path: Path, events) -> None:
    sinks = [FakeSink("hook", readable=False)]
    client = FakeClient(make_token)
    result = await rotate(Runner({"aws": sinks}, client, lock_dir=tmp_path))
    assert (result.action, client.calls) == (RotationAction.MINTED, 1)


async def test_write_only_sink_does_not_prevent_a_skip(make_token, tmp_path: Path, events) -> None:
    sinks = [FakeSink("file", make_token()), FakeSink("hook", readable=False)]
    client = FakeClient(make_token)
    result = await rotate(Runner({"aws": sinks}, client, lock_dir=tmp_path))
    assert (result.action, client.calls) == (RotationAction.FRESH, 0)


async def test_force_mints_even_when_fresh(make_token, tmp_path: Path, events) -> None:
    sinks = [FakeSink("a", make_token())]
    client = FakeClient(make_token)
    result = await rotate(Runner({"aws": sinks}, client, lock_dir=tmp_path, force=True))
    assert (result.action, client.calls) == (RotationAction.MINTED, 1)


async def test_failed_mint_leaves_valid_old_tokens_and_is_failed_but_valid(
    make_token, tmp_path: Path, events
) -> None:
    old_valid_but_due = make_token(lifetime=60)
    sinks = [FakeSink("a", old_valid_but_due)]
    client = FakeClient(make_token, error=AuthenticationError(401))
    result = await rotate(Runner({"aws": sinks}, client, lock_dir=tmp_path))
    assert result.action is RotationAction.FAILED_BUT_VALID
    assert sinks[0].token is old_valid_but_due and sinks[0].writes == 0
    assert result.fingerprint == old_valid_but_due.fingerprint
    assert (
        result.reason == "UseGrant rejected the API key (401): check the credentials block 'prod'"
    )


async def test_failed_mint_with_an_empty_sink_is_failed(make_token, tmp_path: Path, events) -> None:
    sinks = [FakeSink("a", None)]
    client = FakeClient(make_token, error=AuthenticationError(401))
    result = await rotate(Runner({"aws": sinks}, client, lock_dir=tmp_path))
    assert (result.action, result.error_class) == (RotationAction.FAILED, "AuthenticationError")


async def test_failed_write_to_a_sink_holding_a_valid_token_is_failed_but_valid(
    make_token, tmp_path: Path, events
) -> None:
    kept = make_token(lifetime=60)
    sinks = [FakeSink("a", None), FakeSink("b", kept, fail=True)]
    result = await rotate(Runner({"aws": sinks}, FakeClient(make_token), lock_dir=tmp_path))
    assert result.action is RotationAction.FAILED_BUT_VALID
    assert (result.sinks_written, result.sinks_failed) == (("fake a",), ("fake b",))
    assert sinks[1].token is kept
    assert result.reason is not None and result.reason.startswith("fake b: ")


async def test_failed_write_to_an_empty_sink_is_failed(make_token, tmp_path: Path, events) -> None:
    sinks = [FakeSink("a", None), FakeSink("b", None, fail=True)]
    result = await rotate(Runner({"aws": sinks}, FakeClient(make_token), lock_dir=tmp_path))
    assert result.action is RotationAction.FAILED and sinks[0].writes == 1


async def test_failed_write_to_a_write_only_sink_is_failed(
    make_token, tmp_path: Path, events
) -> None:
    sinks = [FakeSink("file", make_token(lifetime=60)), FakeSink("hook", readable=False, fail=True)]
    result = await rotate(Runner({"aws": sinks}, FakeClient(make_token), lock_dir=tmp_path))
    assert result.action is RotationAction.FAILED


async def test_each_outcome_emits_its_event_about_the_client(
    make_token, tmp_path: Path, events
) -> None:
    fresh = [FakeSink("a", make_token())]
    empty = [FakeSink("b", None)]
    runner = Runner({"aws": fresh, "gcp": empty}, FakeClient(make_token), lock_dir=tmp_path)
    await rotate(runner, target("aws"))
    await rotate(runner, target("gcp", client="20000000-0000-4000-8000-000000000002"))
    assert [e["event"] for e in events] == ["usegrant.token.fresh", "usegrant.token.minted"]
    assert events[1]["resource"]["prefect.resource.id"] == (
        "usegrant.client.20000000-0000-4000-8000-000000000002"
    )
    assert events[1]["resource"]["prefect.resource.name"] == "gcp"


async def test_failure_event_payload_has_reason_and_no_token(
    make_token, tmp_path: Path, events
) -> None:
    sinks = [FakeSink("a", None)]
    await rotate(
        Runner(
            {"aws": sinks},
            FakeClient(make_token, error=AuthenticationError(401)),
            lock_dir=tmp_path,
        )
    )
    [event] = events
    assert event["event"] == "usegrant.token.failed"
    assert event["payload"]["action"] == "failed"
    assert "401" in event["payload"]["reason"]


async def test_minted_event_payload_never_holds_the_token(
    make_token, tmp_path: Path, events
) -> None:
    sinks = [FakeSink("a", None)]
    await rotate(Runner({"aws": sinks}, FakeClient(make_token), lock_dir=tmp_path))
    secret = sinks[0].token.access_token.get_secret_value()
    assert secret not in repr(events) and secret.split(".")[1] not in repr(events)


async def test_overlapping_runs_on_one_target_mint_once(make_token, tmp_path: Path, events) -> None:
    shared = [FakeSink("a", None)]
    client = FakeClient(make_token, delay=0.2)
    first = Runner({"aws": shared}, client, lock_dir=tmp_path)
    second = Runner({"aws": shared}, client, lock_dir=tmp_path)
    results = await asyncio.gather(rotate(first), rotate(second))
    assert client.calls == 1 and client.max_in_flight == 1
    assert sorted(r.action.value for r in results) == ["fresh", "minted"]


async def test_concurrency_bounds_mints_in_flight(make_token, tmp_path: Path, events) -> None:
    names = [f"t{i}" for i in range(10)]
    client = FakeClient(make_token, delay=0.05)
    runner = Runner({n: [FakeSink(n)] for n in names}, client, lock_dir=tmp_path, concurrency=3)
    await asyncio.gather(*(rotate(runner, target(n)) for n in names))
    assert client.calls == 10 and client.max_in_flight == 3


async def test_progress_callback_sees_every_result(make_token, tmp_path: Path, events) -> None:
    seen: list[str] = []
    runner = Runner(
        {"aws": [FakeSink("a")]},
        FakeClient(make_token),
        lock_dir=tmp_path,
        on_result=lambda r: seen.append(r.target),
    )
    await rotate(runner)
    assert seen == ["aws"]
