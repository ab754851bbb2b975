"""Fresh means proven, disagreeing sinks are repaired, write-only sinks judged by the record.

Uses the fakes of test_rotation_runner (sinks, client, a fake issuer's tokens) and a
fresh in-memory delivery record per test (one process's record).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.issuer import Issuer
from tests.unit.test_rotation_runner import ISSUER, FakeClient, FakeSink, Runner, target
from usegrant_flows.api.models import AccessToken
from usegrant_flows.rotation import outcome
from usegrant_flows.rotation.policy import RotationAction
from usegrant_flows.rotation.record import MemoryRecord


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    emitted: list[dict[str, Any]] = []
    monkeypatch.setattr(outcome, "emit_event", lambda **kw: emitted.append(kw))
    return emitted


class FlakySink(FakeSink):
    """A sink whose writes fail while ``down`` (Vault sealed, say)."""

    def __init__(self, name: str, token: AccessToken | None = None) -> None:
        super().__init__(name, token)
        self.down = False

    async def awrite(self, token: AccessToken, metadata: dict[str, Any] | None = None) -> None:
        self.fail = self.down
        await super().awrite(token, metadata)


class LyingSink(FakeSink):
    """Takes every write, then reads back what it held before (a deleted AWS secret)."""

    async def awrite(self, token: AccessToken, metadata: dict[str, Any] | None = None) -> None:
        self.writes += 1


async def test_after_a_partial_failure_the_next_run_repairs_without_a_mint(
    tmp_path: Path, events
) -> None:
    file, vault = FakeSink("file"), FlakySink("vault", ISSUER.mint(lifetime=200))  # due
    vault.down = True
    client = FakeClient(ISSUER.mint)
    runner = Runner({"aws": [file, vault]}, client, lock_dir=tmp_path)

    first = await runner.rotate(target())
    assert first.action is RotationAction.FAILED_BUT_VALID and client.calls == 1
    assert file.token is not None and vault.token is not None
    assert file.token.fingerprint != vault.token.fingerprint  # the sinks disagree

    vault.down = False
    second = await runner.rotate(target())
    assert (second.action, client.calls) == (RotationAction.REPAIRED, 1)
    assert vault.token is file.token and second.sinks_written == ("fake vault",)
    third = await runner.rotate(target())
    assert (third.action, client.calls) == (RotationAction.FRESH, 1)


async def test_a_sink_holding_another_valid_token_than_the_recorded_one_is_minted(
    tmp_path: Path, events
) -> None:
    file = FakeSink("file")
    client = FakeClient(ISSUER.mint)
    runner = Runner({"aws": [file]}, client, lock_dir=tmp_path)
    assert (await runner.rotate(target())).action is RotationAction.MINTED
    file.token = ISSUER.mint(aud="gcp")  # fresh and well signed, but not what we delivered
    again = await runner.rotate(target())
    assert (again.action, client.calls) == (RotationAction.MINTED, 2)
    assert file.token is not None and file.token.claims()["aud"] != "gcp"


async def test_webhook_only_targets_are_not_minted_again_while_their_record_is_fresh(
    tmp_path: Path, events
) -> None:
    targets = [target(f"hook{i}", client=f"20000000-0000-4000-8000-{i:012d}") for i in range(100)]
    sinks = {t.name: [FakeSink(t.name, readable=False)] for t in targets}
    client = FakeClient(ISSUER.mint)
    runner = Runner(sinks, client, lock_dir=tmp_path)
    first = [await runner.rotate(t) for t in targets]
    second = [await runner.rotate(t) for t in targets]
    assert {r.action for r in first} == {RotationAction.MINTED}
    assert {r.action for r in second} == {RotationAction.FRESH}
    assert client.calls == 100  # 100 mints in the first run, none in the second


async def test_a_webhook_that_failed_is_delivered_again_by_the_next_run(
    tmp_path: Path, events
) -> None:
    hook = FlakySink("hook")
    hook.readable = False
    hook.down = True
    file = FakeSink("file")
    client = FakeClient(ISSUER.mint)
    runner = Runner({"aws": [file, hook]}, client, lock_dir=tmp_path)
    assert (await runner.rotate(target())).action is RotationAction.FAILED
    hook.down = False
    again = await runner.rotate(target())
    assert (again.action, client.calls, hook.writes) == (RotationAction.REPAIRED, 1, 1)


async def test_without_a_record_a_token_of_another_issuer_is_not_fresh(
    tmp_path: Path, events
) -> None:
    rogue = Issuer().mint()  # same issuer URL, another key: the signature does not verify
    sinks = [FakeSink("file", rogue)]
    client = FakeClient(ISSUER.mint)
    result = await Runner({"aws": sinks}, client, lock_dir=tmp_path).rotate(target())
    assert (result.action, client.calls) == (RotationAction.MINTED, 1)


async def test_without_a_record_a_token_without_an_audience_is_not_fresh(
    tmp_path: Path, events
) -> None:
    sinks = [FakeSink("file", ISSUER.mint(aud=None))]
    client = FakeClient(ISSUER.mint)
    result = await Runner({"aws": sinks}, client, lock_dir=tmp_path).rotate(target())
    assert (result.action, client.calls) == (RotationAction.MINTED, 1)


async def test_a_proven_token_is_recorded_so_the_next_run_needs_no_signature_check(
    tmp_path: Path, events
) -> None:
    record = MemoryRecord({})
    token = ISSUER.mint()
    sinks = [FakeSink("file", token)]
    runner = Runner({"aws": sinks}, FakeClient(ISSUER.mint), lock_dir=tmp_path, record=record)
    assert (await runner.rotate(target())).action is RotationAction.FRESH
    [entry] = record.entries.values()
    assert (entry.fingerprint, entry.sinks) == (token.fingerprint, 1)


async def test_a_write_the_sink_does_not_read_back_fails_the_target(tmp_path: Path, events) -> None:
    liar = LyingSink("secrets-manager", None)
    client = FakeClient(ISSUER.mint)
    result = await Runner({"aws": [liar]}, client, lock_dir=tmp_path).rotate(target())
    assert result.action is RotationAction.FAILED
    assert result.sinks_failed == ("fake secrets-manager",)
    assert "reads back no token" in (result.reason or "")


async def test_the_record_never_holds_a_token(tmp_path: Path, events) -> None:
    record = MemoryRecord({})
    sinks = [FakeSink("file")]
    runner = Runner({"aws": sinks}, FakeClient(ISSUER.mint), lock_dir=tmp_path, record=record)
    await runner.rotate(target())
    raw = sinks[0].token.access_token.get_secret_value() if sinks[0].token else ""
    assert raw and all(raw not in repr(e) for e in record.entries.values())
