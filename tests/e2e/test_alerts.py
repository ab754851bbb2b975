"""Failures are heard: ``alerts apply`` automations fire on a real Prefect server.

Against the session's ``prefect server start`` (its triggers and actions services run by
default): a loopback HTTP server stands in for the operator's chat, reached through a
Prefect custom-webhook notification block. A fleet of two targets is saved, ``alerts
apply`` is run twice (the second changes nothing), and a rotation runs in its own process
while the emulator refuses the key: both targets fail (the reactive automation must
notify) and are not rotated again (their proactive automations, with a 15 s window, must
notify). A second rotation delivers them: the "fresh again" automation must notify. How
long each notification took is printed for the closing note, never asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LOG_TAIL_CHARS, PrefectServer, kill_process_group

FLEET = "alerts-e2e"
HOOK_BLOCK = "alerts-e2e-hook"
WINDOW = 15  # seconds: the proactive automation's quiet window in this test
WAIT = 240.0  # seconds a notification may take on a loaded machine
RUN_TIMEOUT = 300.0

RUN_FLOW = """
import asyncio, sys
from usegrant_flows.rotation.rotate_flow import rotate_targets
state = asyncio.run(rotate_targets(fleet_block=sys.argv[1], return_state=True))
print("STATE", state.type.value, state.name, state.message)
"""


class Inbox:
    """What the loopback webhook received: (monotonic time, JSON body) per request."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def wait_for(self, text: str, *, after: float, timeout: float = WAIT) -> float:
        """Return when a notification containing ``text`` arrived (after ``after``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for at, body in self.received:
                    if at >= after and text in json.dumps(body):
                        return at
            time.sleep(0.5)
        with self.lock:
            seen = [body for _, body in self.received]
        raise AssertionError(f"no notification with {text!r} within {timeout} s; got {seen}")


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, str]]:
    box = Inbox()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(min(length, 65536))
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {"raw": raw.decode("utf-8", "replace")}
            with box.lock:
                box.received.append((time.monotonic(), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2})
    thread.start()
    try:
        yield box, f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def rotate(prefect_server: PrefectServer, tmp_path: Path, label: str) -> str:
    log = tmp_path / f"{label}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", RUN_FLOW, FLEET],
            cwd=tmp_path,
            env=prefect_server.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        proc.wait(timeout=RUN_TIMEOUT)
    finally:
        kill_process_group(proc)
    text = log.read_text()
    assert "STATE" in text, text[-LOG_TAIL_CHARS:]
    return text


def alerts_apply(prefect_server: PrefectServer) -> str:
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("usegrant-flows")),
            "alerts",
            "apply",
            "--fleet",
            FLEET,
            "--notify",
            f"custom-webhook/{HOOK_BLOCK}",
            "--window",
            str(WINDOW),
        ],
        env=prefect_server.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-LOG_TAIL_CHARS:]
    return result.stderr


@pytest.mark.timeout(900)
def test_a_failed_target_and_a_stopped_rotation_are_heard(
    prefect_server: PrefectServer,
    credentials_block: str,
    emulator: Any,
    inbox: tuple[Inbox, str],
    tmp_path: Path,
) -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from usegrant_flows.rotation.fleet_block import UseGrantFleet

    box, url = inbox
    hook = CustomWebhookNotificationBlock(
        name="alerts-e2e",
        url=url,
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
    )
    prefect_server.call(hook.save, HOOK_BLOCK, overwrite=True)
    provider = emulator.seed.providers[0]
    fleet = UseGrantFleet.model_validate(
        {
            "defaults": {"credentials": credentials_block, "provider_id": str(provider.id)},
            "targets": [
                {
                    "name": f"alerts-{i}",
                    "client_id": str(provider.clients[i % len(provider.clients)].id),
                    "sinks": [{"type": "file", "path": str(tmp_path / f"{i}.jwt")}],
                }
                for i in range(2)
            ],
        }
    )
    prefect_server.call(fleet.save, FLEET, overwrite=True)

    assert "4 automations (4 created, 0 updated)" in alerts_apply(prefect_server)
    assert "4 automations (0 created, 4 updated)" in alerts_apply(prefect_server)  # idempotent

    emulator.set_faults(fail_rate=1.0, fail_status=401)  # the key is refused: both fail
    try:
        output = rotate(prefect_server, tmp_path, "first")
    finally:
        emulator.reset()
    ended = time.monotonic()
    assert "STATE FAILED" in output
    failed_at = box.wait_for("UseGrant fleet alerts-e2e: a token failed", after=0)
    # Nothing rotates it any more: heard of by its proactive automation within its window.
    quiet_at = box.wait_for("UseGrant target alerts-0 is not being rotated", after=ended)

    again = time.monotonic()
    assert "STATE COMPLETED" in rotate(prefect_server, tmp_path, "second")
    back_at = box.wait_for("is minted again after a failure", after=again)
    print(
        f"\nalerts: reactive {failed_at - ended:+.1f} s after the failed run ended; "
        f"proactive {quiet_at - ended:.1f} s after the last event (window {WINDOW} s); "
        f"fresh again {back_at - again:.1f} s after the second run started"
    )
