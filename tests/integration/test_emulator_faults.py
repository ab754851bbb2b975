"""Fault injection, rate limit, latency, stats and control routes of the emulator."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.emulator import TOKEN_ROUTE, RunningEmulator

CALLS = 400


@pytest.fixture
def http(emu: RunningEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url, timeout=10) as client:
        yield client


def path(emu: RunningEmulator, client: int = 0) -> str:
    provider = emu.seed.providers[0]
    return f"/v1/providers/{provider.id}/clients/{provider.clients[client].id}/tokens"


def post(http: httpx.Client, emu: RunningEmulator, client: int = 0) -> httpx.Response:
    return http.post(path(emu, client), headers={"Authorization": f"Bearer {emu.api_key}"})


def outcome(http: httpx.Client, emu: RunningEmulator) -> str:
    try:
        return str(post(http, emu).status_code)
    except (httpx.RemoteProtocolError, httpx.ReadError):
        return "dropped"


def binomial_bounds(n: int, p: float, sigmas: float = 5.0) -> tuple[float, float]:
    spread = sigmas * math.sqrt(n * p * (1 - p))
    return n * p - spread, n * p + spread


# --- fail_rate / fail_status ----------------------------------------------------------


def test_fail_rate_fails_that_share_of_requests(http: httpx.Client, emu: RunningEmulator) -> None:
    emu.set_faults(fail_rate=0.3, fail_status=503)
    counts = Counter(outcome(http, emu) for _ in range(CALLS))
    low, high = binomial_bounds(CALLS, 0.3)
    assert low <= counts["503"] <= high
    assert counts["503"] + counts["201"] == CALLS


def test_injected_503_has_an_html_body(http: httpx.Client, emu: RunningEmulator) -> None:
    emu.set_faults(fail_rate=1.0, fail_status=503)
    response = post(http, emu)
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert "<html>" in response.text


def test_injected_429_carries_retry_after(http: httpx.Client, emu: RunningEmulator) -> None:
    emu.set_faults(fail_rate=1.0, fail_status=429)
    response = post(http, emu)
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1


def test_injected_500_has_a_code_and_message_body(http: httpx.Client, emu: RunningEmulator) -> None:
    emu.set_faults(fail_rate=1.0, fail_status=500)
    response = post(http, emu)
    assert response.status_code == 500
    assert set(response.json()) == {"code", "message"}


def test_same_random_seed_gives_the_same_fault_sequence(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    emu.set_faults(fail_rate=0.5, random_seed=7)
    first = [outcome(http, emu) for _ in range(40)]
    emu.set_faults(random_seed=7)
    second = [outcome(http, emu) for _ in range(40)]
    assert first == second


# --- drop_rate ------------------------------------------------------------------------


def test_dropped_request_gets_no_answer(http: httpx.Client, emu: RunningEmulator) -> None:
    emu.set_faults(drop_rate=1.0)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        post(http, emu)


def test_drop_rate_drops_that_share_of_requests(http: httpx.Client, emu: RunningEmulator) -> None:
    emu.set_faults(drop_rate=0.2)
    counts = Counter(outcome(http, emu) for _ in range(CALLS))
    low, high = binomial_bounds(CALLS, 0.2)
    assert low <= counts["dropped"] <= high
    assert counts["dropped"] + counts["201"] == CALLS


def test_drops_are_counted_in_stats(http: httpx.Client, emu: RunningEmulator) -> None:
    emu.set_faults(drop_rate=0.5)
    counts = Counter(outcome(http, emu) for _ in range(60))
    stats = emu.stats()
    assert stats["dropped"] == counts["dropped"]
    assert stats["by_status"].get("201", 0) == counts["201"]
    assert stats["token_calls"]["total"] == 60


def test_connection_still_serves_after_drops_stop(http: httpx.Client, emu: RunningEmulator) -> None:
    emu.set_faults(drop_rate=1.0)
    assert outcome(http, emu) == "dropped"
    emu.set_faults(drop_rate=0.0)
    assert post(http, emu).status_code == 201


# --- rate limit -----------------------------------------------------------------------


def test_retry_after_is_the_whole_seconds_until_a_slot_frees(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    emu.set_faults(rate_limit=3, rate_window=2.0)
    started = time.monotonic()
    assert [post(http, emu).status_code for _ in range(3)] == [201, 201, 201]
    refused = post(http, emu)
    elapsed = time.monotonic() - started
    assert refused.status_code == 429
    # The first admitted request arrived between `started` and `started + elapsed`.
    assert max(1, math.ceil(2.0 - elapsed)) <= int(refused.headers["Retry-After"]) <= 2


def test_waiting_retry_after_frees_a_slot(http: httpx.Client, emu: RunningEmulator) -> None:
    emu.set_faults(rate_limit=2, rate_window=1.5)
    post(http, emu)
    post(http, emu)
    refused = post(http, emu)
    assert refused.status_code == 429
    time.sleep(int(refused.headers["Retry-After"]))
    assert post(http, emu).status_code == 201


def test_refused_requests_do_not_use_quota(http: httpx.Client, emu: RunningEmulator) -> None:
    emu.set_faults(rate_limit=1, rate_window=1.0)
    assert post(http, emu).status_code == 201
    refusals = [post(http, emu) for _ in range(5)]
    assert {r.status_code for r in refusals} == {429}
    time.sleep(int(refusals[-1].headers["Retry-After"]))
    assert post(http, emu).status_code == 201


def test_rate_limited_requests_are_counted_in_stats(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    emu.set_faults(rate_limit=2)
    for _ in range(5):
        post(http, emu)
    assert emu.stats()["by_status"] == {"201": 2, "429": 3}


def test_reset_stats_empties_the_rate_limiter(http: httpx.Client, emu: RunningEmulator) -> None:
    emu.set_faults(rate_limit=1)
    post(http, emu)
    assert post(http, emu).status_code == 429
    emu.reset_stats()
    assert post(http, emu).status_code == 201


def test_token_calls_are_counted_per_rate_window(http: httpx.Client, emu: RunningEmulator) -> None:
    emu.set_faults(rate_window=1.0)
    for _ in range(3):
        post(http, emu)
    time.sleep(1.1)
    post(http, emu)
    calls = emu.stats()["token_calls"]
    assert sum(calls["per_window"]) == 4
    assert calls["per_window"][-1] >= 1
    assert calls["max_in_any_window"] == 3
    assert calls["rate_window"] == 1.0


# --- latency --------------------------------------------------------------------------


def test_latency_delays_the_token_answer_by_at_least_latency_ms(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    emu.set_faults(latency_ms=150)
    started = time.perf_counter()
    assert post(http, emu).status_code == 201
    assert time.perf_counter() - started >= 0.150


def test_latency_delays_the_jwks_answer_too(http: httpx.Client, emu: RunningEmulator) -> None:
    emu.set_faults(latency_ms=150)
    started = time.perf_counter()
    assert http.get("/.well-known/jwks").status_code == 200
    assert time.perf_counter() - started >= 0.150


# --- stats ----------------------------------------------------------------------------


def test_stats_count_per_route_status_and_client(http: httpx.Client, emu: RunningEmulator) -> None:
    post(http, emu, client=0)
    post(http, emu, client=0)
    post(http, emu, client=1)
    http.get("/.well-known/jwks")
    stats = emu.stats()
    clients = emu.seed.providers[0].clients
    assert stats["by_route"] == {TOKEN_ROUTE: 3, "GET /.well-known/jwks": 1}
    assert stats["by_status"] == {"201": 3, "200": 1}
    assert stats["by_client"][str(clients[0].id)] == {"total": 2, "by_status": {"201": 2}}
    assert stats["by_client"][str(clients[1].id)] == {"total": 1, "by_status": {"201": 1}}
    assert stats["tokens_issued"] == 3
    assert stats["total"] == 4


def test_stats_route_serves_the_same_counters(http: httpx.Client, emu: RunningEmulator) -> None:
    post(http, emu)
    assert http.get("/_emulator/stats").json() == emu.stats()


def test_control_routes_are_not_counted(http: httpx.Client, emu: RunningEmulator) -> None:
    http.get("/_emulator/stats")
    http.get("/_emulator/faults")
    assert emu.stats()["total"] == 0


@pytest.mark.parametrize(
    ("method", "url"), [("DELETE", "/_emulator/stats"), ("POST", "/_emulator/reset")]
)
def test_reset_routes_zero_the_counters(
    http: httpx.Client, emu: RunningEmulator, method: str, url: str
) -> None:
    post(http, emu)
    assert http.request(method, url).status_code == 204
    assert emu.stats()["total"] == 0


# --- fault control --------------------------------------------------------------------


def test_faults_route_reads_the_faults_in_force(http: httpx.Client, emu: RunningEmulator) -> None:
    emu.set_faults(latency_ms=5, rate_limit=10)
    faults = http.get("/_emulator/faults").json()
    assert faults["latency_ms"] == 5
    assert faults["rate_limit"] == 10
    assert faults["rate_window"] == 3600


def test_faults_route_changes_faults_at_run_time(http: httpx.Client, emu: RunningEmulator) -> None:
    response = http.post("/_emulator/faults", json={"fail_rate": 1.0, "fail_status": 502})
    assert response.status_code == 200
    assert emu.faults.fail_status == 502
    assert post(http, emu).status_code == 502


@pytest.mark.parametrize(
    "change",
    [{"fail_rate": 2}, {"nonsense": 1}, {"fail_rate": 0.6, "drop_rate": 0.6}, {"rate_limit": 0}],
)
def test_faults_route_refuses_bad_settings_with_400(
    http: httpx.Client, emu: RunningEmulator, change: dict[str, object]
) -> None:
    assert http.post("/_emulator/faults", json=change).status_code == 400
    assert emu.faults.fail_rate == 0.0


def test_set_faults_refuses_bad_settings_with_configuration_error(emu: RunningEmulator) -> None:
    with pytest.raises(ConfigurationError, match="fail_status"):
        emu.set_faults(fail_status=200)
