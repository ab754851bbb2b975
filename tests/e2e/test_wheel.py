"""Installed from a wheel, outside the checkout: the demo runs and the blocks register.

The wheel is built from this checkout and installed (without its dependencies) into a
fresh virtual environment in a temporary folder (the ``wheel_env`` fixture of
``tests/e2e/conftest.py``, shared with ``test_many_machines.py``). Every command runs in
an empty folder: nothing resolves through the checkout.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.conftest import REPO_ROOT, PrefectServer
from usegrant_flows.api.verify import verify_token

POOL = "usegrant-process"


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result.stdout


def test_the_installed_package_is_the_wheel_not_the_checkout(
    wheel_env: tuple[Path, dict[str, str]],
) -> None:
    venv, env = wheel_env
    out = run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import usegrant_flows; print(usegrant_flows.__file__)",
        ],
        cwd=venv.parent / "empty",
        env=env,
        timeout=60,
    )
    assert Path(out.strip()).is_relative_to(venv)


def test_the_demo_runs_from_the_wheel(wheel_env: tuple[Path, dict[str, str]]) -> None:
    venv, env = wheel_env
    folder = venv.parent / "empty"
    out = run(
        [str(venv / "bin" / "usegrant-flows"), "demo"],
        cwd=folder,
        env={**env, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"},
        timeout=600,
    )
    assert "aws" in out or "token" in out.lower()
    tokens = list((folder / "demo").rglob("*.jwt"))
    assert tokens, f"the demo wrote no token file: {out[-2000:]}"
    assert all(oct(t.stat().st_mode & 0o777) == "0o600" for t in tokens)


def test_prefect_block_register_finds_every_block_in_the_wheel(
    wheel_env: tuple[Path, dict[str, str]], prefect_server: PrefectServer
) -> None:
    venv, env = wheel_env
    out = run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "prefect",
            "block",
            "register",
            "-m",
            "usegrant_flows",
        ],
        cwd=venv.parent / "empty",
        env={**env, "PREFECT_API_URL": prefect_server.api_url},
        timeout=300,
    )
    assert "Successfully registered 9 blocks" in out


def test_the_deploy_steps_run_from_the_wheel_in_an_empty_folder(
    wheel_env: tuple[Path, dict[str, str]], prefect_server: PrefectServer, emulator: Any
) -> None:
    """init, work pool, blocks, credentials, fleet, deploy, run now, worker: tokens land."""
    venv, env = wheel_env
    python, cli = str(venv / "bin" / "python"), str(venv / "bin" / "usegrant-flows")
    folder = venv.parent / "deploy-here"
    folder.mkdir()
    env = {
        **env,
        "PREFECT_API_URL": prefect_server.api_url,
        "PREFECT_CLI_PROMPT": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "USEGRANT_API_KEY": emulator.api_key,
    }
    prefect = [python, "-m", "prefect"]

    run([cli, "init"], cwd=folder, env=env, timeout=60)
    # One prefect.yaml: the wheel carries the repository's own, byte for byte.
    assert (folder / "prefect.yaml").read_bytes() == (REPO_ROOT / "prefect.yaml").read_bytes()
    run(
        [*prefect, "work-pool", "create", POOL, "--type", "process", "--overwrite"],
        folder,
        env,
        120,
    )
    run([*prefect, "block", "register", "-m", "usegrant_flows"], folder, env, 300)
    run([cli, "credentials", "save", "usegrant", "--base-url", emulator.base_url, "--overwrite"],
        folder, env, 120)  # fmt: skip
    run([cli, "fleet", "push", "fleet.yaml", "--name", "usegrant", "--overwrite"], folder, env, 120)
    run([*prefect, "--no-prompt", "deploy", "--all"], folder, env, 300)
    out = run([*prefect, "deployment", "run", "rotate-tokens/rotate-tokens"], folder, env, 120)
    [flow_run_id] = re.findall(r"UUID: ([0-9a-f-]{36})", out)
    run(
        [
            *prefect,
            "worker",
            "start",
            "--pool",
            POOL,
            "--run-once",
            "--install-policy",
            "never",
        ],
        folder,
        env,
        300,
    )
    flow_run = prefect_server.wait_for_flow_run(flow_run_id)
    assert flow_run["state"]["type"] == "COMPLETED", flow_run["state"]
    for name in ("aws.jwt", "gcp.json", "azure.jwt"):
        path = folder / "tokens" / name
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        text = path.read_text()
        raw = json.loads(text)["accessToken"] if name.endswith(".json") else text
        verify_token(raw, emulator.jwks_url)
