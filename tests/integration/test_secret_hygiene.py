"""No token or API key reaches Prefect's storage, logs, results, artifacts or events.

A flow loads saved credentials, mints a token from the emulator and writes it to every
kind of sink (file, Secret block, webhook on a loopback receiver, keyring), while
Prefect runs against the test harness. Afterwards the literal token and API key, and
their base64 forms (see tests/leaks.py), are searched for in: the Prefect home
(result storage, logs), the harness database directory, captured logs and output,
the flow run and its task runs as the API returns them, the run's logs, artifacts and
events. A second test proves the search finds a token that a task persists on purpose.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.events import emit_event
from prefect.events.filters import EventFilter, EventNameFilter
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL
from pydantic import SecretStr

from tests.conftest import MemoryKeyring
from tests.leaks import find_secret, scan_tree
from usegrant_flows.api.models import AccessToken
from usegrant_flows.credentials import UseGrantCredentials
from usegrant_flows.emulator import RunningEmulator
from usegrant_flows.sinks import (
    FileTokenSink,
    KeyringTokenSink,
    SecretBlockSink,
    TokenSink,
    WebhookTokenSink,
)
from usegrant_flows.tasks import create_access_token

pytestmark = pytest.mark.usefixtures("prefect_harness")

EVENT = "usegrant.test.delivered"


class _Receiver(http.server.BaseHTTPRequestHandler):
    bodies: list[bytes]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.bodies.append(self.rfile.read(length))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet


@pytest.fixture
def webhook_receiver() -> Iterator[tuple[str, list[bytes]]]:
    """A loopback HTTP receiver: (url, bodies received)."""
    bodies: list[bytes] = []
    handler = type("Receiver", (_Receiver,), {"bodies": bodies})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@task(cache_policy=NO_CACHE, persist_result=False)
def deliver(sink: TokenSink, token: AccessToken, metadata: dict[str, str]) -> str:
    sink.write(token, metadata)
    return sink.describe()


@flow
def mint_and_deliver(
    credentials_block: str,
    provider_id: str,
    client_id: str,
    token_dir: str,
    secret_block: str,
    webhook_url: str,
) -> str:
    credentials = UseGrantCredentials.load(credentials_block)
    token = create_access_token(
        credentials, provider_id=provider_id, client_id=client_id, expires_in=600
    )
    sinks: list[TokenSink] = [
        FileTokenSink(path=Path(token_dir) / "t.jwt"),
        FileTokenSink(path=Path(token_dir) / "t.json", format="json"),
        FileTokenSink(path=Path(token_dir) / "t.env", format="dotenv"),
        SecretBlockSink(secret_block_name=secret_block),
        WebhookTokenSink(url=SecretStr(webhook_url), signing_key=SecretStr("hook-key-123")),
        KeyringTokenSink(username="hygiene"),
    ]
    metadata = {"providerId": provider_id, "clientId": client_id}
    written = [deliver(sink, token, metadata) for sink in sinks]
    lines = [f"- {where}" for where in written]
    create_markdown_artifact(
        f"Token {token.fingerprint} (jti {token.jti}, expires {token.expires_at})\n"
        + "\n".join(lines),
        key="usegrant-hygiene",
    )
    emit_event(
        EVENT,
        resource={"prefect.resource.id": f"usegrant.client.{client_id}"},
        payload={"fingerprint": token.fingerprint, "jti": token.jti, "sinks": written},
    )
    return token.fingerprint


def _harness_database_dir() -> Path:
    url = str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value())
    return Path(url.split(":///", 1)[1]).parent


def _wait_for_event(flow_run_fingerprint: str, timeout: float = 30.0) -> list[str]:
    """Return every stored event (JSON) once ours is persisted (bounded wait)."""
    EventsWorker.drain_all()
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_events(limit=50)
            stored = [event.model_dump_json() for event in page.events]
            ours = client.read_events(EventFilter(event=EventNameFilter(name=[EVENT])), limit=50)
            if any(flow_run_fingerprint in e.model_dump_json() for e in ours.events):
                return stored
            if time.monotonic() > deadline:
                raise AssertionError(f"event {EVENT} not stored within {timeout} s")
            time.sleep(0.5)


def _api_records(flow_run_id: UUID) -> dict[str, str]:
    """The flow run, its task runs, logs and artifacts as the API returns them."""
    APILogWorker.drain_all()
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        runs = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        task_runs = client.read_task_runs(flow_run_filter=runs)
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    assert len(task_runs) == 7  # one mint, six deliveries
    assert logs, "the run's logs should have reached the API"
    assert artifacts, "the run's artifact should have reached the API"
    return {
        "flow run": flow_run.model_dump_json(),
        "task runs": json.dumps([t.model_dump(mode="json") for t in task_runs]),
        "task run states": json.dumps([repr(t.state) for t in task_runs]),
        "logs": json.dumps([log.model_dump(mode="json") for log in logs]),
        "artifacts": json.dumps([a.model_dump(mode="json") for a in artifacts]),
    }


def test_no_token_or_api_key_leaks_anywhere(
    emulator: RunningEmulator,
    prefect_home: str,
    tmp_path: Path,
    webhook_receiver: tuple[str, list[bytes]],
    memory_keyring: MemoryKeyring,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(logging.getLogger("prefect"), "propagate", True)
    webhook_url, received = webhook_receiver
    UseGrantCredentials(api_key=SecretStr(emulator.api_key), base_url=emulator.base_url).save(
        "hygiene-credentials", overwrite=True
    )
    provider = emulator.seed.providers[0]

    state = mint_and_deliver(
        credentials_block="hygiene-credentials",
        provider_id=str(provider.id),
        client_id=str(provider.clients[0].id),
        token_dir=str(tmp_path / "tokens"),
        secret_block="hygiene-token",
        webhook_url=webhook_url,
        return_state=True,
    )
    assert state.is_completed()
    fingerprint = state.result()
    token = FileTokenSink(path=tmp_path / "tokens" / "t.jwt").read()
    assert token is not None and token.fingerprint == fingerprint
    jwt = token.access_token.get_secret_value()
    # every sink got it (so the search below is meaningful)
    assert SecretBlockSink(secret_block_name="hygiene-token").read() == token
    assert KeyringTokenSink(username="hygiene").read() == token
    assert json.loads(received[0])["accessToken"] == jwt

    events = _wait_for_event(fingerprint)
    haystacks = {
        **_api_records(state.state_details.flow_run_id),
        "events": "\n".join(events),
        "captured logs": caplog.text,
        "captured output": "".join(capsys.readouterr()),
    }
    database_files = [p.name for p in _harness_database_dir().iterdir()]
    assert any(name.endswith(".db") for name in database_files), database_files
    for secret_name, secret in (("token", jwt), ("API key", emulator.api_key)):
        for where, text in haystacks.items():
            assert find_secret(text, secret) == [], f"{secret_name} found in {where}"
        for root in (Path(prefect_home), _harness_database_dir()):
            assert scan_tree(root, secret) == {}, f"{secret_name} found under {root}"


def test_the_search_finds_a_token_persisted_on_purpose(
    emulator: RunningEmulator, prefect_home: str
) -> None:
    credentials = UseGrantCredentials(
        api_key=SecretStr(emulator.api_key), base_url=emulator.base_url
    )

    # The mistake the rule forbids: a task that persists its result. (Prefect writes
    # nothing under NO_CACHE, so this uses the default cache policy.)
    @task(persist_result=True)
    def leaky_mint(provider_id: str, client_id: str) -> AccessToken:
        return create_access_token.fn(credentials, provider_id=provider_id, client_id=client_id)

    @flow
    def leaky() -> AccessToken:
        provider = emulator.seed.providers[0]
        return leaky_mint(str(provider.id), str(provider.clients[0].id))

    token = leaky()
    hits = scan_tree(Path(prefect_home), token.access_token.get_secret_value())
    assert hits, "a persisted token must be found"
    forms = {form for found in hits.values() for form in found}
    # a plain grep would have missed it: only base64 forms are on disk
    assert "literal" not in forms
    assert forms & {"base64@0", "base64@1", "base64@2"}
