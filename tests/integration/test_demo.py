"""The README's main job: `python -m usegrant_flows.cli.demo` on a fresh folder, alone."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    workdir = tmp_path_factory.mktemp("demo-run")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "USEGRANT_"))}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["COLUMNS"] = "160"
    proc = subprocess.run(
        [sys.executable, "-m", "usegrant_flows.cli.demo", "demo"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    return proc, workdir / "demo"


def test_demo_exits_zero(demo_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    proc, _ = demo_run
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_demo_writes_one_private_token_file_per_emulator_client(
    demo_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    _, folder = demo_run
    files = sorted((folder / "tokens").iterdir())
    assert [f.name for f in files] == ["aws.jwt", "azure.jwt", "gcp.jwt"]
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
        assert file.read_text().count(".") == 2


def test_demo_keeps_prefect_state_under_its_folder(
    demo_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    _, folder = demo_run
    assert (folder / "prefect-home").is_dir()


def test_demo_shows_verified_tokens_and_a_second_run_without_api_calls(
    demo_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, _ = demo_run
    assert proc.stdout.count("ok / ok") == 3
    assert "Second run: 3 of 3 targets fresh, 0 API calls to UseGrant" in proc.stdout


def test_demo_output_is_quiet_and_never_shows_a_token(
    demo_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, folder = demo_run
    output = proc.stdout + proc.stderr
    assert "| INFO" not in output and "Traceback" not in output
    for file in (folder / "tokens").iterdir():
        token = file.read_text()
        assert token not in output and token.split(".")[1] not in output
