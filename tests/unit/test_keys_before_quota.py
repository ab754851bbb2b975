"""Keys before quota: an issuer's keys are fetched before any mint, once per run.

A JWKS endpoint that hangs or fails must cost no request and at most one fetch timeout
per issuer per run; a freshly minted token must have been issued now (``iat`` neither
in the future nor in the past beyond the skew).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.issuer import JWKS_URL, Issuer
from tests.unit.test_rotation_runner import FakeClient, FakeSink, Runner, target
from usegrant_flows.api.claims import check_minted
from usegrant_flows.api.errors import TokenVerificationError
from usegrant_flows.api.jwks import JwksCache
from usegrant_flows.api.models import AccessToken
from usegrant_flows.rotation.fleet import RotationTarget
from usegrant_flows.rotation.issuer_keys import IssuerKeys, KeyLocation
from usegrant_flows.rotation.policy import RotationAction


class BrokenJwks:
    """A JWKS endpoint that hangs (``hang=True``) or answers an error status."""

    def __init__(self, *, hang: bool = False, status: int = 500) -> None:
        self.hang = hang
        self.status = status
        self.requests = 0
        self.transport = httpx.MockTransport(self._answer)

    async def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.hang:
            await asyncio.sleep(3600)
        return httpx.Response(self.status, text="down")


class KeyedRunner(Runner):
    """A runner whose targets name an explicit JWKS URL (credentials' jwks_url)."""

    def __init__(self, *args: Any, jwks: JwksCache, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.jwks = jwks
        self.issuer_keys = IssuerKeys(jwks)

    async def key_source(self, target: RotationTarget, client: Any) -> tuple[str, None]:
        return JWKS_URL, None


def fleet(n: int) -> list[RotationTarget]:
    return [target(f"t{i}", client=f"20000000-0000-4000-8000-{i:012d}") for i in range(n)]


async def run_fleet(
    broken: BrokenJwks, n: int, tmp_path: Path, held: AccessToken | None = None
) -> tuple[list[Any], FakeClient, JwksCache]:
    issuer = Issuer()
    cache = JwksCache(timeout=0.2, transport=broken.transport)
    client = FakeClient(issuer.mint)
    targets = fleet(n)
    sinks = {t.name: [FakeSink(t.name, held)] for t in targets}
    runner = KeyedRunner(sinks, client, jwks=cache, lock_dir=tmp_path)
    results = await asyncio.gather(*(runner.rotate(t) for t in targets))
    return list(results), client, cache


async def test_a_hanging_jwks_costs_no_mint_and_one_timeout_for_twelve_targets(
    tmp_path: Path, events
) -> None:
    broken = BrokenJwks(hang=True)
    results, client, cache = await run_fleet(broken, 12, tmp_path)
    assert client.calls == 0
    assert cache.fetches == {JWKS_URL: 1} and broken.requests == 1
    assert {r.action for r in results} == {RotationAction.FAILED}
    assert all("within 0.2 s" in (r.reason or "") for r in results)


async def test_a_jwks_500_costs_no_mint(tmp_path: Path, events) -> None:
    broken = BrokenJwks(status=500)
    results, client, _ = await run_fleet(broken, 5, tmp_path)
    assert (client.calls, broken.requests) == (0, 1)
    assert all("HTTP 500" in (r.reason or "") for r in results)


async def test_targets_holding_valid_tokens_end_failed_but_valid_in_one_line(
    tmp_path: Path, events
) -> None:
    due = Issuer().mint(lifetime=60)  # valid, but due: the rotation wants to mint
    results, client, _ = await run_fleet(BrokenJwks(status=503), 3, tmp_path, held=due)
    assert client.calls == 0
    assert {r.action for r in results} == {RotationAction.FAILED_BUT_VALID}
    reason = results[0].reason or ""
    assert "no token was minted" in reason and "\n" not in reason


async def test_keys_are_fetched_once_per_issuer_then_reused_by_every_mint(
    tmp_path: Path, events
) -> None:
    issuer = Issuer()
    cache = JwksCache(transport=issuer.transport)
    client = FakeClient(issuer.mint)
    targets = fleet(6)
    runner = KeyedRunner(
        {t.name: [FakeSink(t.name)] for t in targets}, client, jwks=cache, lock_dir=tmp_path
    )
    results = await asyncio.gather(*(runner.rotate(t) for t in targets))
    assert {r.action for r in results} == {RotationAction.MINTED} and client.calls == 6
    assert cache.fetches == {JWKS_URL: 1}


async def test_a_later_run_in_the_same_process_reuses_the_cached_keys() -> None:
    issuer = Issuer()
    cache = JwksCache(transport=issuer.transport)
    for _ in range(3):  # one IssuerKeys per run, one cache per process
        await IssuerKeys(cache).ready(KeyLocation(jwks_url=JWKS_URL))
    assert cache.fetches == {JWKS_URL: 1}


async def test_a_failed_fetch_is_asked_again_by_the_next_run() -> None:
    broken = BrokenJwks(status=500)
    cache = JwksCache(transport=broken.transport)
    for _ in range(2):
        with pytest.raises(TokenVerificationError, match="HTTP 500"):
            await IssuerKeys(cache).ready(KeyLocation(jwks_url=JWKS_URL))
    assert broken.requests == 2


def test_a_token_issued_a_day_ago_is_refused_at_mint() -> None:
    token = Issuer().mint(iat=int(time.time()) - 86_400)
    with pytest.raises(TokenVerificationError, match=r"its iat is 864\d\d s in the past"):
        check_minted(token, now=datetime.now(timezone.utc), renew_before=300)


def test_an_iat_within_the_skew_in_the_past_is_accepted() -> None:
    token = Issuer().mint(iat=int(time.time()) - 30)
    check_minted(token, now=datetime.now(timezone.utc), renew_before=300)


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    from usegrant_flows.rotation import outcome

    emitted: list[dict[str, Any]] = []
    monkeypatch.setattr(outcome, "emit_event", lambda **kw: emitted.append(kw))
    return emitted
