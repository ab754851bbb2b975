"""Hostile faults of the emulator: 201 answers that no client should trust.

Each test turns one fault on at rate 1.0 and reads the answer off the wire with a raw
client (httpx or a socket), to show the emulator really misbehaves that way.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from jwt.types import Options

from usegrant_flows.emulator import RunningEmulator, run_emulator
from usegrant_flows.emulator.faults import FAULT_NAMES
from usegrant_flows.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
MAX_BODY = 64 * 1024
# Bounds of the polls for a stream to end: 200 x 50 ms = 10 s at most.
POLLS = 200
POLL_INTERVAL_S = 0.05


@pytest.fixture
def http(emu: RunningEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url, timeout=10) as client:
        yield client


def token_path(emu: RunningEmulator) -> str:
    provider = emu.seed.providers[0]
    return f"/v1/providers/{provider.id}/clients/{provider.clients[0].id}/tokens"


def auth(emu: RunningEmulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {emu.api_key}"}


def post(http: httpx.Client, emu: RunningEmulator) -> httpx.Response:
    return http.post(token_path(emu), headers=auth(emu))


def jwks(http: httpx.Client) -> jwt.PyJWKSet:
    return jwt.PyJWKSet.from_dict(http.get("/.well-known/jwks").json())


def verify(token: str, keys: jwt.PyJWKSet, *, verify_exp: bool = True) -> dict[str, Any]:
    key = keys[jwt.get_unverified_header(token)["kid"]]
    options: Options = {"verify_aud": False, "verify_exp": verify_exp}
    return jwt.decode(token, key, algorithms=["ES256"], options=options)


def wait_for_no_active_stream(emu: RunningEmulator) -> int:
    for _ in range(POLLS):
        active = int(emu.stats()["active_streams"])
        if active == 0:
            return 0
        time.sleep(POLL_INTERVAL_S)
    return int(emu.stats()["active_streams"])


def injected(emu: RunningEmulator) -> dict[str, int]:
    return {name: n for name, n in emu.stats()["faults_injected"].items() if n}


def raw_request(emu: RunningEmulator) -> bytes:
    host_port = emu.base_url.removeprefix("http://")
    return (
        f"POST {token_path(emu)} HTTP/1.1\r\nHost: {host_port}\r\n"
        f"Authorization: Bearer {emu.api_key}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def open_socket(emu: RunningEmulator) -> socket.socket:
    host, port = emu.base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def read_head_and_first_bytes(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read until the headers and at least one body byte have come (bounded reads)."""
    received = b""
    for _ in range(100):
        head, sep, body = received.partition(b"\r\n\r\n")
        if sep and body:
            return head, body
        chunk = sock.recv(65536)
        assert chunk, "the emulator closed the connection before the body began"
        received += chunk
    raise AssertionError("no body byte in 100 reads")


# --- slow_body ------------------------------------------------------------------------


def test_slow_body_sends_headers_and_a_first_byte_then_stalls(emu: RunningEmulator) -> None:
    emu.set_faults(slow_body_rate=1.0, slow_body_interval_ms=60_000)
    with open_socket(emu) as sock:
        sock.sendall(raw_request(emu))
        head, body = read_head_and_first_bytes(sock)
        assert head.startswith(b"HTTP/1.1 201")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        assert length > 1
        assert body == b"{"
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(65536)
        assert emu.stats()["active_streams"] == 1
    assert wait_for_no_active_stream(emu) == 0
    assert injected(emu) == {"slow_body": 1}


def test_slow_body_is_a_sound_token_for_a_client_that_waits(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    emu.set_faults(slow_body_rate=1.0, slow_body_interval_ms=1)
    response = post(http, emu)
    assert response.status_code == 201
    verify(response.json()["accessToken"], jwks(http))


def test_slow_body_is_cut_off_after_stream_limit_s(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    emu.set_faults(slow_body_rate=1.0, slow_body_interval_ms=60_000, stream_limit_s=0.3)
    with pytest.raises(httpx.RemoteProtocolError):
        post(http, emu)
    assert wait_for_no_active_stream(emu) == 0


# --- endless_body ---------------------------------------------------------------------


def test_endless_body_streams_until_the_client_leaves_then_stops(emu: RunningEmulator) -> None:
    emu.set_faults(endless_body_rate=1.0)
    received = bytearray()
    with (
        httpx.Client(base_url=emu.base_url, timeout=5) as client,
        client.stream("POST", token_path(emu), headers=auth(emu)) as response,
    ):
        assert response.status_code == 201
        assert "content-length" not in response.headers
        # Hold the iterator: dropping it would close the connection before the check.
        chunks = response.iter_raw()
        for chunk in chunks:
            received += chunk
            if len(received) > 200 * 1024:
                break
        assert emu.stats()["active_streams"] == 1
    assert received.startswith(b'{"accessToken":"aaaa')
    assert wait_for_no_active_stream(emu) == 0
    assert injected(emu) == {"endless_body": 1}


def test_endless_body_is_cut_off_after_stream_limit_s(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    emu.set_faults(endless_body_rate=1.0, stream_limit_s=0.3)
    with pytest.raises(httpx.RemoteProtocolError):
        post(http, emu)
    assert wait_for_no_active_stream(emu) == 0


# --- forged tokens --------------------------------------------------------------------


def test_expired_token_is_validly_signed_but_expired_an_hour_ago(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    emu.set_faults(expired_rate=1.0)
    body = post(http, emu).json()
    keys = jwks(http)
    claims = verify(body["accessToken"], keys, verify_exp=False)
    now = time.time()
    assert claims["exp"] <= now - 3600 + 5
    expires_at = datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
    assert expires_at.timestamp() == claims["exp"]
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(body["accessToken"], keys)


def test_bad_signature_token_names_the_real_kid_but_fails_the_jwks(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    emu.set_faults(bad_signature_rate=1.0)
    token = post(http, emu).json()["accessToken"]
    keys = jwks(http)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256"
    assert header["kid"] in {key.key_id for key in keys.keys}
    with pytest.raises(jwt.InvalidSignatureError):
        verify(token, keys)


def test_alg_none_token_has_an_unsigned_header_and_no_signature(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    emu.set_faults(alg_none_rate=1.0)
    token = post(http, emu).json()["accessToken"]
    assert jwt.get_unverified_header(token) == {"alg": "none"}
    assert token.endswith(".")
    assert token.count(".") == 2
    key = jwks(http).keys[0]
    with pytest.raises(jwt.InvalidTokenError):
        jwt.decode(token, key, algorithms=["ES256"], options={"verify_aud": False})


# --- bodies a parser must refuse ------------------------------------------------------


def test_oversize_body_is_over_64_kib(http: httpx.Client, emu: RunningEmulator) -> None:
    emu.set_faults(oversize_rate=1.0)
    response = post(http, emu)
    assert response.status_code == 201
    assert int(response.headers["content-length"]) > MAX_BODY
    assert len(response.content) > MAX_BODY


def test_nested_body_is_deeper_than_a_recursive_parser_goes(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    emu.set_faults(nested_rate=1.0)
    response = post(http, emu)
    assert response.status_code == 201
    assert response.content.startswith(b"[" * 100_000)
    assert response.content.endswith(b"]" * 100_000)
    with pytest.raises(RecursionError):
        json.loads(response.content)


def test_garbage_body_is_not_json_though_labelled_json(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    emu.set_faults(garbage_rate=1.0)
    response = post(http, emu)
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("application/json")
    with pytest.raises(ValueError):
        json.loads(response.content)


# --- when faults strike, and how they are counted -------------------------------------


def test_hostile_faults_spare_refused_requests(http: httpx.Client, emu: RunningEmulator) -> None:
    emu.set_faults(garbage_rate=1.0)
    response = http.post(token_path(emu), headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert injected(emu) == {}


def test_faulty_answers_are_not_counted_as_issued_tokens(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    emu.set_faults(expired_rate=1.0)
    post(http, emu)
    stats = emu.stats()
    assert stats["by_status"] == {"201": 1}
    assert stats["tokens_issued"] == 0
    assert set(stats["faults_injected"]) == set(FAULT_NAMES)


def test_faults_route_sets_and_shows_the_hostile_rates(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    changed = http.post("/_emulator/faults", json={"garbage_rate": 1.0, "stream_limit_s": 5})
    assert changed.status_code == 200
    shown = http.get("/_emulator/faults").json()
    assert shown["garbage_rate"] == 1.0
    assert shown["stream_limit_s"] == 5
    assert shown["slow_body_interval_ms"] == 2000
    assert post(http, emu).content.startswith(b"\x89PNG")


# --- rates must add up to at most 1 ---------------------------------------------------


def test_set_faults_refuses_rates_over_1_naming_the_fields(emu: RunningEmulator) -> None:
    with pytest.raises(ConfigurationError, match=r"nested_rate=0\.6 \+ garbage_rate=0\.5"):
        emu.set_faults(nested_rate=0.6, garbage_rate=0.5)
    assert emu.faults.nested_rate == 0.0


def test_faults_route_refuses_rates_over_1_with_400(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    response = http.post("/_emulator/faults", json={"drop_rate": 0.5, "expired_rate": 0.6})
    assert response.status_code == 400
    assert "drop_rate=0.5 + expired_rate=0.6" in response.json()["message"]


def test_run_emulator_refuses_rates_over_1() -> None:
    with (
        pytest.raises(ConfigurationError, match="alg_none_rate"),
        run_emulator(alg_none_rate=0.7, oversize_rate=0.7),
    ):
        pass  # pragma: no cover


def test_rates_adding_up_to_1_in_floats_are_accepted(emu: RunningEmulator) -> None:
    faults = emu.set_faults(fail_rate=0.7, nested_rate=0.2, garbage_rate=0.1)
    assert faults.garbage_rate == 0.1


def test_cli_refuses_rates_over_1_naming_the_flags() -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "usegrant_flows.emulator", "--port", "0"),
            *("--nested-rate", "0.6", "--garbage-rate", "0.6", "--fault-seed", "3"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "nested_rate=0.6 + garbage_rate=0.6" in result.stderr
    assert "Traceback" not in result.stderr


# --- one seeded draw per request ------------------------------------------------------

MIXED: dict[str, Any] = {
    "drop_rate": 0.1,
    "fail_rate": 0.1,
    "expired_rate": 0.1,
    "bad_signature_rate": 0.1,
    "alg_none_rate": 0.1,
    "nested_rate": 0.1,
    "garbage_rate": 0.1,
}


def seen_on_the_wire(http: httpx.Client, emu: RunningEmulator, keys: jwt.PyJWKSet) -> str:
    """Name the fault of one answer from what the client receives, trusting nothing."""
    try:
        response = post(http, emu)
    except (httpx.RemoteProtocolError, httpx.ReadError):
        return "drop"
    if response.status_code != 201:
        return "fail"
    try:
        token = json.loads(response.content)["accessToken"]
    except RecursionError:
        return "nested"
    except ValueError:
        return "garbage"
    if jwt.get_unverified_header(token)["alg"] == "none":
        return "alg_none"
    try:
        verify(token, keys)
    except jwt.InvalidSignatureError:
        return "bad_signature"
    except jwt.ExpiredSignatureError:
        return "expired"
    return "none"


def test_a_fixed_seed_gives_the_same_fault_sequence_twice(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    keys = jwks(http)
    emu.set_faults(random_seed=11, **MIXED)
    first = [seen_on_the_wire(http, emu, keys) for _ in range(60)]
    emu.set_faults(random_seed=11)
    second = [seen_on_the_wire(http, emu, keys) for _ in range(60)]
    assert first == second
    assert len(set(first)) >= 5


def test_stats_count_exactly_the_faults_the_client_saw(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    keys = jwks(http)
    emu.set_faults(**MIXED)
    seen = Counter(seen_on_the_wire(http, emu, keys) for _ in range(80))
    del seen["none"]
    assert injected(emu) == dict(seen)
