"""``python -m usegrant_flows.emulator``: prints the seed, serves, stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from usegrant_flows.api.checks import is_loopback
from usegrant_flows.emulator import AWS_CLIENT_ID, DEFAULT_PROVIDER_ID

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
EMULATOR = (sys.executable, "-m", "usegrant_flows.emulator")


def read_until(process: subprocess.Popen[bytes], pattern: str, timeout: float) -> str:
    """Read the process's stdout until ``pattern`` matches; bounded by ``timeout`` seconds."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while not re.search(pattern, seen.decode(errors="replace")):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {pattern!r} in the emulator's output:\n{seen!r}")
            if selector.select(remaining):
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AssertionError(f"the emulator exited; output:\n{seen!r}")
                seen += chunk
    return seen.decode(errors="replace")


@pytest.fixture
def cli() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "usegrant_flows.emulator", "--port", "0", "--latency-ms", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output = read_until(process, r"Press Ctrl-C to stop", START_TIMEOUT)
        yield process, output
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def base_url_of(output: str) -> str:
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", output)
    assert match, output
    return match.group(1)


def key_of(output: str) -> str:
    match = re.search(r"(usegrant_emu_[A-Za-z0-9_-]+)", output)
    assert match, output
    return match.group(1)


def test_banner_names_the_default_provider_client_and_dev_key(
    cli: tuple[subprocess.Popen[bytes], str],
) -> None:
    _, output = cli
    assert str(DEFAULT_PROVIDER_ID) in output
    assert str(AWS_CLIENT_ID) in output
    assert "throwaway" in output
    assert key_of(output)


def test_cli_emulator_mints_tokens_with_the_printed_key(
    cli: tuple[subprocess.Popen[bytes], str],
) -> None:
    _, output = cli
    response = httpx.post(
        f"{base_url_of(output)}/v1/providers/{DEFAULT_PROVIDER_ID}/clients/{AWS_CLIENT_ID}/tokens",
        headers={"Authorization": f"Bearer {key_of(output)}"},
    )
    assert response.status_code == 201


def test_cli_flags_set_the_faults(cli: tuple[subprocess.Popen[bytes], str]) -> None:
    _, output = cli
    faults = httpx.get(f"{base_url_of(output)}/_emulator/faults").json()
    assert faults["latency_ms"] == 1


def test_ctrl_c_stops_the_emulator_cleanly(cli: tuple[subprocess.Popen[bytes], str]) -> None:
    process, output = cli
    assert httpx.get(f"{base_url_of(output)}/_emulator/stats").status_code == 200
    process.send_signal(signal.SIGINT)
    assert process.wait(15) == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_are_recognised(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com"])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_bad_flag_value_exits_with_a_message_naming_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "usegrant_flows.emulator", "--port", "0", "--fail-rate", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "fail_rate" in result.stderr
    assert "Traceback" not in result.stderr


def test_api_key_flag_makes_the_emulator_accept_that_key_and_no_random_one() -> None:
    env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [*EMULATOR, "--port", "0", "--api-key", "usegrant_emu_chosen_for_a_readme"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output = read_until(process, r"Press Ctrl-C to stop", START_TIMEOUT)
        url = f"{base_url_of(output)}/v1/providers/{DEFAULT_PROVIDER_ID}/clients/{AWS_CLIENT_ID}"
        chosen = httpx.post(
            f"{url}/tokens", headers={"Authorization": "Bearer usegrant_emu_chosen_for_a_readme"}
        )
        assert chosen.status_code == 201
        assert re.findall(r"usegrant_emu_[A-Za-z0-9_-]+", output) == [
            "usegrant_emu_chosen_for_a_readme"
        ]
    finally:
        process.kill()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def test_api_key_and_seed_exclude_each_other(tmp_path: Path) -> None:
    result = subprocess.run(
        [*EMULATOR, "--port", "0", "--api-key", "k", "--seed", str(tmp_path / "seed.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--api-key and --seed exclude each other" in result.stderr
    assert "Traceback" not in result.stderr
