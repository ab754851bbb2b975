"""rotate_tokens, the deployed rotation: a run names a saved fleet and targets in it.

Against the loopback emulator on the test harness's API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prefect.client.schemas.objects import State

from usegrant_flows.credentials import UseGrantCredentials
from usegrant_flows.emulator import RunningEmulator
from usegrant_flows.rotation.fleet_block import UseGrantFleet
from usegrant_flows.rotation.rotate_flow import rotate_tokens
from usegrant_flows.rotation.selection import select_targets

pytestmark = pytest.mark.usefixtures("prefect_harness")

FLEET = "by-name-fleet"


@pytest.fixture
async def fleet(emu: RunningEmulator, tmp_path: Path) -> UseGrantFleet:
    await UseGrantCredentials(api_key=emu.api_key, base_url=emu.base_url).asave(  # type: ignore[arg-type]
        "by-name-emulator", overwrite=True
    )
    provider = emu.seed.providers[0]
    targets = [
        {
            "name": name,
            "client_id": client.id,
            "sinks": [{"type": "file", "path": str(tmp_path / f"{name}.jwt")}],
        }
        for name, client in zip(("aws", "gcp", "azure"), provider.clients, strict=False)
    ]
    document = {
        "defaults": {"credentials": "by-name-emulator", "provider_id": provider.id},
        "targets": targets,
    }
    await UseGrantFleet.model_validate(document).asave(FLEET, overwrite=True)
    return await UseGrantFleet.aload(FLEET)


async def run(fleet: UseGrantFleet, **parameters: Any) -> State:
    return await rotate_tokens(fleet=fleet, **parameters, return_state=True)


async def test_named_targets_are_the_only_ones_minted(
    fleet: UseGrantFleet, emu: RunningEmulator, tmp_path: Path
) -> None:
    state = await run(fleet, target_names=["gcp"], force=True)
    assert state.is_completed(), state.message
    assert [r.target for r in await state.result()] == ["gcp"]
    assert (tmp_path / "gcp.jwt").exists() and not (tmp_path / "aws.jwt").exists()
    assert emu.stats()["token_calls"]["total"] == 1


async def test_no_names_rotates_the_whole_fleet(
    fleet: UseGrantFleet, emu: RunningEmulator, tmp_path: Path
) -> None:
    state = await run(fleet)
    assert state.is_completed(), state.message
    assert sorted(r.target for r in await state.result()) == sorted(t.name for t in fleet.targets)


async def test_an_unknown_target_name_fails_in_one_line_before_any_request(
    fleet: UseGrantFleet, emu: RunningEmulator
) -> None:
    state = await run(fleet, target_names=["aws", "../../etc/passwd"])
    assert state.is_failed()
    names = ", ".join(t.name for t in fleet.targets)
    assert state.message == (
        f"fleet '{FLEET}' has no target '../../etc/passwd'; its targets: {names}"
    )
    assert emu.stats()["token_calls"]["total"] == 0


async def test_a_fleet_given_inline_is_refused_before_any_request(
    fleet: UseGrantFleet, emu: RunningEmulator, tmp_path: Path
) -> None:
    inline = UseGrantFleet.model_validate(fleet.document())  # same targets, never saved
    state = await run(inline)
    assert state.is_failed()
    assert (state.message or "").startswith("fleet must be a saved UseGrant Fleet block")
    assert emu.stats()["token_calls"]["total"] == 0
    assert not any(tmp_path.glob("*.jwt"))


def test_the_listing_of_a_huge_fleets_names_is_bounded(fleet: UseGrantFleet) -> None:
    many = [fleet.targets[0].model_copy(update={"name": f"t{i:05d}"}) for i in range(5000)]
    with pytest.raises(Exception, match="and 49") as caught:
        select_targets(many, ["nope"], fleet="big")
    assert len(str(caught.value)) < 400
