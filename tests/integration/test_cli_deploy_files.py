"""``usegrant-flows init`` and ``credentials save``: what a deployment needs, from the package."""

from __future__ import annotations

from pathlib import Path

import pytest

from usegrant_flows.cli.commands import main
from usegrant_flows.cli.init import packaged_text
from usegrant_flows.credentials import UseGrantCredentials
from usegrant_flows.rotation.fleet_file import load_fleet_file

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_init_writes_prefect_yaml_and_a_fleet_that_parses(tmp_path: Path) -> None:
    assert main(["init", str(tmp_path / "project")]) == 0
    project = tmp_path / "project"
    assert (project / "prefect.yaml").read_text() == (REPO_ROOT / "prefect.yaml").read_text()
    targets = load_fleet_file(str(project / "fleet.yaml"))
    assert [t.name for t in targets] == ["aws", "gcp", "azure"]


def test_init_keeps_existing_files_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "fleet.yaml").write_text("mine\n")
    assert main(["init", str(tmp_path)]) == 2
    assert "fleet.yaml already in" in capsys.readouterr().err
    assert (tmp_path / "fleet.yaml").read_text() == "mine\n"
    assert not (tmp_path / "prefect.yaml").exists()
    assert main(["init", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "fleet.yaml").read_text() == packaged_text("fleet.yaml")


@pytest.mark.usefixtures("prefect_harness")
def test_credentials_save_stores_the_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("USEGRANT_API_KEY", "usegrant_saved_by_the_cli_0001")
    args = ["credentials", "save", "cli-saved", "--base-url", "http://127.0.0.1:8787"]
    assert main([*args, "--overwrite"]) == 0
    block = UseGrantCredentials.load("cli-saved")
    assert block.api_key.get_secret_value() == "usegrant_saved_by_the_cli_0001"
    assert block.base_url == "http://127.0.0.1:8787"
    assert main(args) == 2  # exists: replaced only with --overwrite
    assert "pass --overwrite" in capsys.readouterr().err
    assert "usegrant_saved_by_the_cli_0001" not in capsys.readouterr().out
