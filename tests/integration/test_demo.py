"""The README's main job: `python -m usegrant_flows.cli.demo` on a fresh folder.

The main run uses a copy of the package alone, as a wheel installs it.

Alone, beside two CPU-burning processes, and with a Prefect API that does not start in
time: it never fails for being slow, and when it fails it says so in one line.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PHASES = ("emulator start", "Prefect API start", "run 1", "verify", "run 2", "total")
# Seconds a CPU burner runs at most: it must stop by itself even if the test is killed.
BURN_SECONDS = 900
BURNER = f"import time\nend = time.monotonic() + {BURN_SECONDS}\nwhile time.monotonic() < end: pass"


def demo_env(pythonpath: Path = REPO_ROOT, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "USEGRANT_"))}
    env["PYTHONPATH"] = str(pythonpath)
    env["COLUMNS"] = "160"
    env.update(extra)
    return env


def run_demo(
    workdir: Path,
    *,
    timeout: float,
    module: str = "usegrant_flows.cli.demo",
    pythonpath: Path = REPO_ROOT,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", module]
    if module == "usegrant_flows.cli":
        command.append("demo")
    return subprocess.run(
        [*command, "demo"],
        cwd=workdir,
        env=demo_env(pythonpath, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def phase_times(stdout: str) -> dict[str, float]:
    line = next(line for line in stdout.splitlines() if line.startswith("Phase times: "))
    return {name: float(value) for name, value in re.findall(r"([A-Za-z][\w ]*?) ([\d.]+) s", line)}


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("usegrant-flows demo: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def demo_run(
    tmp_path_factory: pytest.TempPathFactory, package_only: Path
) -> tuple[subprocess.CompletedProcess[str], Path]:
    workdir = tmp_path_factory.mktemp("demo-run")
    return run_demo(workdir, timeout=300, pythonpath=package_only), workdir / "demo"


@pytest.fixture(scope="module")
def package_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the package alone, as a wheel installs it: no flows/, no tests/."""
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(
        REPO_ROOT / "usegrant_flows",
        site / "usegrant_flows",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return site


def test_the_demo_runs_from_the_package_alone(package_only: Path, tmp_path: Path) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import usegrant_flows.cli.demo as d; print(d.__file__)"],
        cwd=tmp_path,
        env=demo_env(package_only),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # The demo_run fixture's demo ran from this copy, not from the checkout.
    assert Path(probe.stdout.strip()).is_relative_to(package_only)


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


def test_demo_prints_the_time_of_each_phase(
    demo_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, _ = demo_run
    times = phase_times(proc.stdout)
    assert list(times) == list(PHASES)
    # The API starts alongside the emulator: the total is not the sum of the phases.
    assert times["total"] >= times["Prefect API start"] + times["run 1"] + times["run 2"]


def test_demo_sends_prefect_logs_and_server_output_to_files(
    demo_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    _, folder = demo_run
    assert "prefect server start on 127.0.0.1:" in (folder / "prefect-server.log").read_text()
    assert (folder / "demo.log").is_file()


@pytest.fixture
def two_cpu_burners() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Two processes that keep a CPU busy each, killed after the test (or after 900 s)."""
    burners = [subprocess.Popen([sys.executable, "-c", BURNER]) for _ in range(2)]
    try:
        yield burners
    finally:
        for burner in burners:
            burner.kill()
        for burner in burners:
            burner.wait(timeout=30)


@pytest.mark.timeout(BURN_SECONDS)
def test_demo_passes_beside_two_cpu_burning_processes(
    two_cpu_burners: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    proc = run_demo(tmp_path, timeout=BURN_SECONDS - 60, module="usegrant_flows.cli")

    assert all(burner.poll() is None for burner in two_cpu_burners)  # they did burn
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Second run: 3 of 3 targets fresh, 0 API calls to UseGrant" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    print(next(line for line in proc.stdout.splitlines() if line.startswith("Phase times")))
    print(f"load average {os.getloadavg()}")


def test_a_prefect_api_too_slow_for_its_limit_is_one_line_saying_what_to_do(
    tmp_path: Path,
) -> None:
    proc = run_demo(tmp_path, timeout=120, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="0.5")

    assert proc.returncode == 1
    line = one_error_line(proc.stderr)
    assert "did not answer within 0.5 s" in line
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=300" in line
    # The server it started is gone.
    log = (tmp_path / "demo" / "prefect-server.log").read_text()
    port = re.findall(r"prefect server start on 127\.0\.0\.1:(\d+)", log)[-1]
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert f"--port {port}" not in processes.stdout


def test_a_bad_startup_limit_is_one_line_with_exit_2(tmp_path: Path) -> None:
    proc = run_demo(
        tmp_path,
        timeout=60,
        module="usegrant_flows.cli",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="soon",
    )

    assert proc.returncode == 2
    assert "positive number of seconds" in one_error_line(proc.stderr)


def test_a_folder_that_cannot_be_made_is_one_line_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    proc = subprocess.run(
        [sys.executable, "-m", "usegrant_flows.cli", "demo", str(tmp_path / "file" / "demo")],
        cwd=tmp_path,
        env=demo_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert proc.returncode == 2
    assert "give it another folder" in one_error_line(proc.stderr)
