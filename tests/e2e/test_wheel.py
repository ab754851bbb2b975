"""Installed from a wheel, outside the checkout: the demo runs and the blocks register.

The wheel is built from this checkout and installed (without its dependencies) into a
fresh virtual environment in a temporary folder; the dependencies come from the test
environment's site-packages through a ``.pth`` line, which Python does not scan for
further ``.pth`` files, so the editable checkout of the test environment is out of
reach. Every command runs in an empty folder: nothing resolves through the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.e2e.conftest import PrefectServer

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A virtual environment holding only our wheel, in a folder outside the checkout."""
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PYTHON"))}
    run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(ROOT)],
        cwd=base,
        env=env,
        timeout=600,
    )
    [wheel] = dist.glob("usegrant_flows-*.whl")
    venv = base / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=base, env=env, timeout=300)
    python = venv / "bin" / "python"
    run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        cwd=base,
        env=env,
        timeout=300,
    )
    site = run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        cwd=base,
        env=env,
        timeout=60,
    ).strip()
    (Path(site) / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    empty = base / "empty"
    empty.mkdir()
    return venv, {**env, "HOME": str(base), "PREFECT_HOME": str(base / "prefect-home")}


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
    assert "Successfully registered 8 blocks" in out
