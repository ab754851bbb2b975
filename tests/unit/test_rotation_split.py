"""Splitting a fleet by work queue: what a run rotates itself, what goes to each host."""

from __future__ import annotations

from typing import Any

import pytest

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.rotation.fleet import RotationTarget, parse_fleet
from usegrant_flows.rotation.split import FleetSplit, split_fleet

PROVIDER = "00000000-0000-4000-8000-000000000001"
CLIENT = "00000000-0000-4000-8000-000000000002"


def target(name: str, queue: str | None = None) -> RotationTarget:
    data: dict[str, Any] = {
        "name": name,
        "provider_id": PROVIDER,
        "client_id": CLIENT,
        "sinks": [{"type": "secret-block", "secret_block_name": name}],
    }
    if queue is not None:
        data["work_queue"] = queue
    return RotationTarget.model_validate(data)


def names(split: FleetSplit) -> tuple[list[str], dict[str, list[str]]]:
    return [t.name for t in split.local], {
        q: [t.name for t in ts] for q, ts in split.queues.items()
    }


def test_targets_without_a_queue_stay_and_each_queue_keeps_fleet_order() -> None:
    fleet = [target("a", "h2"), target("b"), target("c", "h1"), target("d", "h2"), target("e")]
    split = split_fleet(fleet)
    assert names(split) == (["b", "e"], {"h2": ["a", "d"], "h1": ["c"]})
    assert split.dispatched == 3


def test_a_fleet_without_queues_is_all_local() -> None:
    fleet = [target("a"), target("b")]
    assert names(split_fleet(fleet)) == (["a", "b"], {})
    assert names(split_fleet([])) == ([], {})


def test_a_child_run_keeps_its_own_queue_and_never_splits_it_again() -> None:
    fleet = [target("a", "h1"), target("b", "h1"), target("c", "h2")]
    split = split_fleet(fleet, on_queue="h1")
    assert names(split) == (["a", "b"], {"h2": ["c"]})


def test_defaults_give_a_queue_that_a_target_may_clear() -> None:
    fleet = parse_fleet(
        {
            "defaults": {"provider_id": PROVIDER, "client_id": CLIENT, "work_queue": "h1"},
            "targets": [
                {"name": "a", "sinks": [{"type": "secret-block", "secret_block_name": "a"}]},
                {
                    "name": "b",
                    "work_queue": None,
                    "sinks": [{"type": "secret-block", "secret_block_name": "b"}],
                },
            ],
        }
    )
    assert names(split_fleet(fleet)) == (["b"], {"h1": ["a"]})


@pytest.mark.parametrize("queue", ["", "bad\nqueue", "x" * 201])
def test_a_bad_queue_name_is_one_line_naming_the_target_and_field(queue: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_fleet([{**target("a").model_dump(mode="json"), "work_queue": queue}])
    message = str(caught.value)
    assert "target a" in message and "work_queue" in message and "\n" not in message


@pytest.mark.usefixtures("prefect_harness")
async def test_the_python_flow_never_dispatches_and_says_so_in_one_line() -> None:
    from usegrant_flows.rotation.rotate_flow import rotate_targets

    state = await rotate_targets(targets=[target("a", "host-a")], return_state=True)
    assert state.is_failed()
    assert state.message == (
        "1 of 1 targets failed: a (work queue 'host-a': only the rotate-tokens deployment "
        "dispatches to work queues)"
    )


@pytest.mark.usefixtures("prefect_harness")
async def test_a_host_run_that_is_not_on_its_queue_rotates_nothing() -> None:
    from usegrant_flows.rotation.fleet_block import UseGrantFleet
    from usegrant_flows.rotation.rotate_flow import rotate_tokens_on_host

    await UseGrantFleet(targets=[target("b", "host-b")]).asave("split-fleet", overwrite=True)
    fleet = await UseGrantFleet.aload("split-fleet")
    state = await rotate_tokens_on_host(fleet=fleet, queue="host-b", return_state=True)
    assert state.is_failed()
    assert state.message == (
        "this run is on work queue None, not 'host-b': a host's targets are rotated only "
        "by that queue's worker"
    )
