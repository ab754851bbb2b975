"""The UseGrant Fleet block and ``usegrant-flows fleet push/show``, against a local Prefect API."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.cli.commands import main
from usegrant_flows.rotation.fleet_block import UseGrantFleet, load_fleet
from usegrant_flows.rotation.fleet_file import load_fleet_file

pytestmark = pytest.mark.usefixtures("prefect_harness")

PROVIDER = "10000000-0000-4000-8000-000000000001"
FLEET = f"""\
defaults:
  provider_id: {PROVIDER}
  credentials: prod
  work_queue: host-a
targets:
  - name: aws
    client_id: 20000000-0000-4000-8000-000000000001
    expires_in: 1200
    sinks:
      - {{type: file, path: tokens/aws.jwt}}
      - usegrant-webhook-token-sink/ops
  - name: shared
    client_id: 20000000-0000-4000-8000-000000000002
    work_queue: null
    sinks: [{{type: secret-block, secret_block_name: shared-token}}]
"""


@pytest.fixture
def fleet_file(tmp_path: Path) -> Path:
    path = tmp_path / "conf" / "fleet.yaml"
    path.parent.mkdir()
    path.write_text(FLEET)
    return path


def test_the_block_merges_defaults_like_a_fleet_file_and_refuses_what_a_file_refuses() -> None:
    fleet = UseGrantFleet.model_validate(
        {
            "defaults": {"provider_id": PROVIDER, "expires_in": 600},
            "targets": [
                {
                    "name": "a",
                    "client_id": "20000000-0000-4000-8000-000000000001",
                    "sinks": [{"type": "secret-block", "secret_block_name": "a"}],
                },
                {
                    "name": "b",
                    "expires_in": 60,
                    "client_id": "20000000-0000-4000-8000-000000000002",
                    "sinks": [{"type": "secret-block", "secret_block_name": "b"}],
                },
            ],
        }
    )
    assert [(t.name, t.expires_in) for t in fleet.targets] == [("a", 600), ("b", 60)]
    with pytest.raises(ValueError, match=r"target a.*expires_in.*must be a number"):
        UseGrantFleet.model_validate({"defaults": {"expires_in": True}, "targets": [{"name": "a"}]})
    twice = [fleet.targets[0], fleet.targets[0]]
    with pytest.raises(ValueError, match="repeated: a"):
        UseGrantFleet(targets=twice)


def test_a_saved_fleet_loads_back_equal(fleet_file: Path) -> None:
    targets = load_fleet_file(fleet_file)
    UseGrantFleet(targets=targets).save("round-trip", overwrite=True)
    loaded = UseGrantFleet.load("round-trip")
    assert loaded.targets == targets
    assert load_fleet("round-trip").targets == targets


def test_push_stores_absolute_paths_and_show_prints_a_fleet_file_that_pushes_again(
    fleet_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fleet", "push", str(fleet_file), "--name", "pushed", "--overwrite"]) == 0
    assert "2 targets (work queues: host-a)" in capsys.readouterr().err
    assert main(["fleet", "show", "pushed"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    aws, shared = shown["targets"]
    assert aws["sinks"][0]["path"] == str(fleet_file.parent / "tokens" / "aws.jwt")
    assert aws["sinks"][1] == "usegrant-webhook-token-sink/ops"
    assert aws["work_queue"] == "host-a" and "work_queue" not in shared
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(shown))
    assert load_fleet_file(again) == load_fleet("pushed").targets


def test_push_refuses_to_replace_a_fleet_without_overwrite(
    fleet_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fleet", "push", str(fleet_file), "--name", "once", "--overwrite"]) == 0
    assert main(["fleet", "push", str(fleet_file), "--name", "once"]) == 2
    assert "fleet block 'once' already exists; pass --overwrite" in capsys.readouterr().err


def test_a_bad_fleet_file_is_one_line_and_exit_2_and_nothing_is_saved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(FLEET.replace("expires_in: 1200", "expires_in: yes"))
    assert main(["fleet", "push", str(bad), "--name", "never"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"usegrant-flows: error: fleet file {bad}")
    assert "target aws (line 6): expires_in (line 8): must be a number" in err
    assert "\n" not in err
    with pytest.raises(ConfigurationError, match="fleet block 'never' not found: save one"):
        load_fleet("never")
    assert main(["fleet", "show", "never"]) == 2
