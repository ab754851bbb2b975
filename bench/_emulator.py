"""What the benchmarks share: a free port, a seed, the emulator in its own process, fleets.

A benchmark measures the client, the flow or the emulator with the emulator in a SEPARATE
process: in one process they would share a GIL and the figures would say nothing about
either.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
#: A script saving a credentials block: key, base URL, budget, window (s), block name.
SAVE_BLOCK = """
import sys
from usegrant_flows.credentials import UseGrantCredentials
key, url, budget, window = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
UseGrantCredentials(api_key=key, base_url=url, max_requests_per_hour=budget,
                    quota_window_seconds=window).save(sys.argv[5], overwrite=True)
"""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_emulator(seed: Path, log: Path, *flags: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``python -m usegrant_flows.emulator --seed SEED FLAGS...``; wait (60 s) for it.

    Its output (the banner shows the seed's throwaway key) goes to ``log`` only.

    Returns:
        The process and its base URL.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "usegrant_flows.emulator", "--port", str(port)]
    cmd += ["--seed", str(seed), *flags]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"emulator exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(f"{base_url}/.well-known/jwks", timeout=2).status_code == 200:
                return proc, base_url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("emulator did not start within 60 s")


def write_seed(path: Path, n: int) -> tuple[str, str, list[str]]:
    """Write a seed of one provider with ``n`` clients (audience sts.amazonaws.com).

    Returns:
        The throwaway API key, the provider id and the client ids.
    """
    api_key = "usegrant_bench_" + secrets.token_hex(16)
    provider_id = str(uuid.uuid4())
    clients = [str(uuid.uuid4()) for _ in range(n)]
    seed = {
        "api_keys": [api_key],
        "providers": [
            {
                "id": provider_id,
                "name": "bench",
                "default_domain": "bench.auth.usegrant.dev",
                "custom_domain": None,
                "clients": [
                    {
                        "id": cid,
                        "name": f"c{i}",
                        "audience": "sts.amazonaws.com",
                        "subject": f"s{i}",
                    }
                    for i, cid in enumerate(clients)
                ],
            }
        ],
    }
    path.write_text(json.dumps(seed))
    return api_key, provider_id, clients


def clean_env(home: Path, api_url: str | None) -> dict[str, str]:
    """The environment of a bench subprocess: its own PREFECT_HOME, quiet, no outer Prefect."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        PYTHONPATH=str(REPO_ROOT),
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def write_fleet(
    path: Path, provider: str, clients: list[str], names: range, credentials: str
) -> None:
    """Write a fleet file of targets ``t<i>`` (``i`` in ``names``), one file sink each."""
    sinks = path.parent / f"{path.stem}-sinks"
    targets = [
        {
            "name": f"t{i}",
            "client_id": clients[i % len(clients)],
            "sinks": [{"type": "file", "path": str(sinks / f"t{i}.jwt")}],
        }
        for i in names
    ]
    defaults = {"credentials": credentials, "provider_id": provider, "expires_in": 3600}
    path.write_text(json.dumps({"defaults": defaults, "targets": targets}))


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    """Wait until ``url`` answers 200; exit with the log's tail if ``proc`` ends or time runs out.

    Args:
        url: A loopback URL of the process (its health or JWKS route).
        proc: The process serving it (killed when it is not up within ``timeout``).
        log: Where the process writes its output.
        timeout: Seconds to wait (180: Prefect starts slowly on a loaded 2-core machine).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: process exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"{url} not up within {timeout} s")
