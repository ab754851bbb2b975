"""Installed from a wheel, outside the checkout: the demo runs and the blocks register.

The wheel is built from this checkout and installed (without its dependencies) into a
fresh virtual environment in a temporary folder (the ``wheel_env`` fixture of
``tests/e2e/conftest.py``, shared with ``test_many_machines.py``). Every command runs in
an empty folder: nothing resolves through the checkout.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.e2e.conftest import PrefectServer


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
