"""The alert automations of a fleet: one reactive on failures, one proactive per target."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.rotation.alerts import fleet_automations, quiet_window
from usegrant_flows.rotation.fleet import RotationTarget

P = "10000000-0000-4000-8000-000000000001"


def target(name: str, n: int, **fields: object) -> RotationTarget:
    return RotationTarget.model_validate(
        {
            "name": name,
            "provider_id": P,
            "client_id": f"20000000-0000-4000-8000-{n:012d}",
            "sinks": [{"type": "file", "path": f"/run/{name}.jwt"}],
            **fields,
        }
    )


def test_the_reactive_automation_listens_for_failures_of_the_fleets_targets() -> None:
    block = uuid4()
    [reactive, *_] = fleet_automations(
        "prod", [target("b", 2), target("a", 1)], notify_block_id=block
    )
    trigger = reactive.trigger
    assert isinstance(trigger, EventTrigger) and trigger.posture is Posture.Reactive
    assert trigger.expect == {"usegrant.token.failed"}
    assert trigger.match.root["usegrant.target"] == ["a", "b"]
    [action] = reactive.actions
    assert isinstance(action, SendNotification) and action.block_document_id == block


def test_each_target_gets_a_proactive_automation_that_resolves_when_heard_again() -> None:
    automations = fleet_automations(
        "prod", [target("a", 1), target("b", 2)], notify_block_id=uuid4()
    )
    proactive = automations[2:]
    assert [a.name for a in proactive] == ["usegrant prod/a: quiet", "usegrant prod/b: quiet"]
    for automation, n in zip(proactive, (1, 2), strict=True):
        trigger = automation.trigger
        assert isinstance(trigger, EventTrigger) and trigger.posture is Posture.Proactive
        assert trigger.expect == {
            "usegrant.token.minted",
            "usegrant.token.fresh",
            "usegrant.token.repaired",
        }
        assert (
            trigger.match.root["prefect.resource.id"]
            == f"usegrant.client.20000000-0000-4000-8000-{n:012d}"
        )
        assert len(automation.actions_on_resolve) == 1


def test_a_failed_target_heard_again_is_announced_once_per_target() -> None:
    [_, recovered, _] = fleet_automations("prod", [target("a", 1)], notify_block_id=uuid4())
    trigger = recovered.trigger
    assert isinstance(trigger, EventTrigger) and trigger.posture is Posture.Reactive
    assert trigger.after == {"usegrant.token.failed"}
    assert trigger.for_each == {"usegrant.target"}
    assert "usegrant.token.minted" in trigger.expect


def test_the_window_follows_the_policy() -> None:
    assert quiet_window(target("a", 1)) == timedelta(seconds=900)  # 3600 s, refresh at 2/3
    short = target("s", 2, expires_in=600, policy={"renew_before": 60})
    assert quiet_window(short) == timedelta(seconds=150)  # refresh at 400 s: 200 s left
    [_, _, automation] = fleet_automations("prod", [short], notify_block_id=uuid4())
    assert isinstance(automation.trigger, EventTrigger)
    assert automation.trigger.within == timedelta(seconds=150)


def test_a_window_under_ten_seconds_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="window must be >= 10 seconds, got 5"):
        fleet_automations("prod", [target("a", 1)], notify_block_id=uuid4(), window=5)


def test_an_empty_fleet_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="no targets"):
        fleet_automations("prod", [], notify_block_id=uuid4())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--notify", "ops"], "--notify must be '<block-type-slug>/<block-name>'"),
        (["--notify", "slack-webhook/ops", "--window", "5"], "--window must be >= 10 seconds"),
    ],
)
def test_alerts_apply_refuses_bad_input_before_any_call(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from usegrant_flows.cli.commands import main

    assert main(["alerts", "apply", "--fleet", "prod", *args]) == 2
    assert message in capsys.readouterr().err
