"""consumer-config: the real AWS, GCP and Azure SDKs, given what it prints, send our token.

AWS goes to moto's HTTP server. Google's and Microsoft's token endpoints are two tiny
loopback stand-ins that only record the request and answer with an access token (the
Azure one over https, with a self-signed certificate made here); they are the only
fakes.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import shlex
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest
import yaml

from tests.integration.remote_servers import (  # noqa: F401
    MotoServer,
    Recording,
    aws_env,
    moto_recorder,
    moto_server,
)
from usegrant_flows.api.models import AccessToken
from usegrant_flows.cli import main
from usegrant_flows.emulator.seed import GCP_CLIENT_ID
from usegrant_flows.sinks import FileTokenSink

MakeToken = Callable[..., AccessToken]
PROVIDER = "10000000-0000-4000-8000-000000000001"
ROLE_ARN = "arn:aws:iam::123456789012:role/usegrant-consumer"
GCP_AUDIENCE = (
    "//iam.googleapis.com/projects/123456789/locations/global/"
    "workloadIdentityPools/usegrant/providers/usegrant"
)
AZURE_CLIENT = "3f2c8a51-0b7e-4a43-9d5e-6c1f0e2b7a90"
AZURE_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def write_fleet(folder: Path, sinks: list[dict[str, Any]], name: str = "app") -> Path:
    fleet = {
        "defaults": {"provider_id": PROVIDER},
        "targets": [{"name": name, "client_id": str(GCP_CLIENT_ID), "sinks": sinks}],
    }
    path = folder / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet), encoding="utf-8")
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["consumer-config", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def parse_exports(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        words = shlex.split(line)
        assert words[0] == "export"
        name, _, value = words[1].partition("=")
        env[name] = value
    return env


# --- loopback stand-ins for Google's and Microsoft's token endpoints ---------------------


@dataclass
class StandIn:
    """A recording HTTP(S) server on 127.0.0.1."""

    base_url: str
    requests: list[dict[str, Any]] = field(default_factory=list)


def _serve(answer: Callable[[str, str, str], dict[str, Any]], context: ssl.SSLContext | None):
    recorded: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _reply(self, method: str, body: str) -> None:
            recorded.append({"method": method, "path": self.path, "body": body})
            payload = json.dumps(answer(method, self.path, base_url)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self._reply("GET", "")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._reply("POST", self.rfile.read(length).decode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    scheme = "https" if context is not None else "http"
    base_url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    return server, thread, StandIn(base_url, recorded)


def _token_answer(method: str, path: str, base_url: str) -> dict[str, Any]:
    return {
        "access_token": "stand-in-access-token",
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "token_type": "Bearer",
        "expires_in": 3600,
    }


@pytest.fixture
def google_sts() -> Iterator[StandIn]:
    server, thread, stand_in = _serve(_token_answer, None)
    yield stand_in
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _entra_answer(method: str, path: str, base_url: str) -> dict[str, Any]:
    if method == "GET":  # MSAL's tenant discovery
        tenant = f"{base_url}/{AZURE_TENANT}"
        return {
            "token_endpoint": f"{tenant}/oauth2/v2.0/token",
            "authorization_endpoint": f"{tenant}/oauth2/v2.0/authorize",
            "issuer": f"{tenant}/v2.0",
        }
    return {"access_token": "stand-in-access-token", "token_type": "Bearer", "expires_in": 3600}


@pytest.fixture
def entra(tmp_path: Path) -> Iterator[tuple[StandIn, Path]]:
    cert_path, key_path = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server, thread, stand_in = _serve(_entra_answer, context)
    yield stand_in, cert_path
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


# --- AWS -----------------------------------------------------------------------------


def test_aws_sdk_with_the_printed_environment_assumes_the_role_with_our_token(
    moto_recorder: Recording,  # noqa: F811
    make_token: MakeToken,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet = write_fleet(tmp_path, [{"type": "file", "path": "tokens/aws.jwt"}])
    token = make_token()
    FileTokenSink(path=tmp_path / "tokens" / "aws.jwt").write(token)
    status, out, _ = run_cli(
        capsys, "aws", "--fleet", str(fleet), "--target", "app", "--role-arn", ROLE_ARN
    )
    assert status == 0
    env = parse_exports(out)
    assert env["AWS_WEB_IDENTITY_TOKEN_FILE"] == str(tmp_path / "tokens" / "aws.jwt")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_recorder.server.url)
    arn = boto3.Session(region_name="us-east-1").client("sts").get_caller_identity()["Arn"]
    assert arn == "arn:aws:sts::123456789012:assumed-role/usegrant-consumer/usegrant-app"
    [call] = moto_recorder.query_bodies("AssumeRoleWithWebIdentity")
    assert call["WebIdentityToken"] == token.access_token.get_secret_value()
    assert call["RoleArn"] == ROLE_ARN


def test_aws_profile_snippet_lets_boto3_assume_the_role_with_our_token(
    moto_recorder: Recording,  # noqa: F811
    make_token: MakeToken,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet = write_fleet(tmp_path, [{"type": "file", "path": "aws.jwt"}])
    token = make_token()
    FileTokenSink(path=tmp_path / "aws.jwt").write(token)
    status, out, _ = run_cli(
        capsys,
        "aws",
        "--fleet",
        str(fleet),
        "--target",
        "app",
        "--role-arn",
        ROLE_ARN,
        "--profile",
        "usegrant",
    )
    assert status == 0
    assert out.splitlines()[:4] == [
        "[profile usegrant]",
        f"role_arn = {ROLE_ARN}",
        f"web_identity_token_file = {tmp_path / 'aws.jwt'}",
        "role_session_name = usegrant-app",
    ]
    (tmp_path / "aws-config").write_text(out, encoding="utf-8")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_recorder.server.url)
    session = boto3.Session(profile_name="usegrant", region_name="us-east-1")
    arn = session.client("sts").get_caller_identity()["Arn"]
    assert arn == "arn:aws:sts::123456789012:assumed-role/usegrant-consumer/usegrant-app"
    [call] = moto_recorder.query_bodies("AssumeRoleWithWebIdentity")
    assert call["WebIdentityToken"] == token.access_token.get_secret_value()


# --- GCP -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sink", "expected_format"),
    [
        ({"type": "file", "path": "gcp.jwt"}, {"type": "text"}),
        (
            {"type": "file", "path": "gcp.json", "format": "json"},
            {"type": "json", "subject_token_field_name": "accessToken"},
        ),
    ],
)
def test_google_auth_sends_exactly_our_token_as_subject_token(
    google_sts: StandIn,
    make_token: MakeToken,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    sink: dict[str, Any],
    expected_format: dict[str, str],
) -> None:
    import google.auth.transport.requests
    from google.auth import identity_pool

    fleet = write_fleet(tmp_path, [sink])
    token = make_token()
    FileTokenSink(path=tmp_path / sink["path"], format=sink.get("format", "raw")).write(token)
    status, out, _ = run_cli(
        capsys,
        "gcp",
        "--fleet",
        str(fleet),
        "--target",
        "app",
        "--audience",
        GCP_AUDIENCE,
        "--token-url",
        f"{google_sts.base_url}/v1/token",
    )
    assert status == 0
    config = json.loads(out)
    assert config["subject_token_type"] == "urn:ietf:params:oauth:token-type:jwt"
    assert config["credential_source"]["format"] == expected_format
    credentials = identity_pool.Credentials.from_info(config)
    credentials.refresh(google.auth.transport.requests.Request())
    assert credentials.token == "stand-in-access-token"
    [request] = google_sts.requests
    form = {k: v[0] for k, v in parse_qs(request["body"]).items()}
    assert form["subject_token"] == token.access_token.get_secret_value()
    assert form["audience"] == GCP_AUDIENCE
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange"


# --- Azure ---------------------------------------------------------------------------


def test_azure_workload_identity_sends_our_token_as_client_assertion(
    entra: tuple[StandIn, Path],
    make_token: MakeToken,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from azure.identity import WorkloadIdentityCredential

    stand_in, cert_path = entra
    fleet = write_fleet(tmp_path, [{"type": "file", "path": "azure.jwt"}])
    token = make_token()
    FileTokenSink(path=tmp_path / "azure.jwt").write(token)
    status, out, _ = run_cli(
        capsys,
        "azure",
        "--fleet",
        str(fleet),
        "--target",
        "app",
        "--client-id",
        AZURE_CLIENT,
        "--tenant-id",
        AZURE_TENANT,
        "--authority-host",
        stand_in.base_url,
    )
    assert status == 0
    env = parse_exports(out)
    assert env["AZURE_FEDERATED_TOKEN_FILE"] == str(tmp_path / "azure.jwt")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_path))
    credential = WorkloadIdentityCredential(disable_instance_discovery=True)
    access = credential.get_token("https://management.azure.com/.default")
    assert access.token == "stand-in-access-token"
    [post] = [r for r in stand_in.requests if r["method"] == "POST"]
    form = {k: v[0] for k, v in parse_qs(post["body"]).items()}
    assert post["path"] == f"/{AZURE_TENANT}/oauth2/v2.0/token"
    assert form["client_assertion"] == token.access_token.get_secret_value()
    assert form["client_assertion_type"] == (
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    )
    assert form["client_id"] == AZURE_CLIENT


# --- errors --------------------------------------------------------------------------


@pytest.mark.parametrize("consumer", ["aws", "gcp", "azure"])
def test_a_target_without_a_file_sink_is_a_one_line_error_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], consumer: str
) -> None:
    fleet = write_fleet(tmp_path, [{"type": "secret-block", "secret_block_name": "x"}])
    extra = {
        "aws": ["--role-arn", ROLE_ARN],
        "gcp": ["--audience", GCP_AUDIENCE],
        "azure": ["--client-id", AZURE_CLIENT, "--tenant-id", AZURE_TENANT],
    }[consumer]
    status, out, err = run_cli(capsys, consumer, "--fleet", str(fleet), "--target", "app", *extra)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "target 'app' has no file sink" in err


def test_a_dotenv_only_target_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = write_fleet(tmp_path, [{"type": "file", "path": "t.env", "format": "dotenv"}])
    status, _, err = run_cli(
        capsys, "gcp", "--fleet", str(fleet), "--target", "app", "--audience", GCP_AUDIENCE
    )
    assert status == 2
    assert "writes only dotenv token files: GCP needs a raw or json file" in err


def test_aws_refuses_a_json_only_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fleet = write_fleet(tmp_path, [{"type": "file", "path": "t.json", "format": "json"}])
    status, _, err = run_cli(
        capsys, "aws", "--fleet", str(fleet), "--target", "app", "--role-arn", ROLE_ARN
    )
    assert status == 2
    assert "AWS needs a raw file" in err


def test_an_unknown_target_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fleet = write_fleet(tmp_path, [{"type": "file", "path": "a.jwt"}])
    status, _, err = run_cli(
        capsys, "aws", "--fleet", str(fleet), "--target", "nope", "--role-arn", ROLE_ARN
    )
    assert status == 2
    assert "no target named 'nope' in the fleet (targets: app)" in err


def test_a_malformed_role_arn_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = write_fleet(tmp_path, [{"type": "file", "path": "a.jwt"}])
    status, _, err = run_cli(
        capsys, "aws", "--fleet", str(fleet), "--target", "app", "--role-arn", "arn:aws:iam::1:x"
    )
    assert status == 2
    assert "role_arn must be an IAM role ARN" in err
