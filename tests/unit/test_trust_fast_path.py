"""Cached keys verify in the caller's thread; only a fetch goes to the private loop.

``JwksCache.verify_cached`` is the no-I/O half of ``verify_signature``: it verifies with
keys at hand or says it cannot, and never fetches. ``check_issued`` (the sync tasks and
``token create``) uses it first, so a task in a loop stops paying a thread hand-off per
token once the issuer's keys are cached.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from tests.issuer import ISSUER, JWKS_URL, Issuer
from usegrant_flows.api import jwks as jwks_module
from usegrant_flows.api import trust
from usegrant_flows.api.claims import MintedToken, check_minted
from usegrant_flows.api.errors import InvalidResponseError, TokenVerificationError
from usegrant_flows.api.jwks import JwksCache, averify_minted
from usegrant_flows.api.models import AccessToken
from usegrant_flows.emulator.keys import SigningKey


def read(token: AccessToken) -> MintedToken:
    return check_minted(token, now=datetime.now(timezone.utc), renew_before=0)


def prefetched(issuer: Issuer) -> JwksCache:
    keys = JwksCache(transport=issuer.transport)
    asyncio.run(keys.prefetch(issuer=ISSUER))
    return keys


@pytest.fixture
def no_private_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any use of check_issued's private event loop fails the test."""

    def refuse() -> asyncio.AbstractEventLoop:
        raise AssertionError("check_issued handed the check to its private loop")

    monkeypatch.setattr(trust, "_checks_loop", refuse)


def test_verify_cached_says_no_and_fetches_nothing_while_no_keys_are_at_hand() -> None:
    issuer = Issuer()
    keys = JwksCache(transport=issuer.transport)
    token = issuer.mint()
    assert keys.verify_cached(token, read(token)) is False
    assert keys.verify_cached(token, read(token), jwks_url=JWKS_URL) is False
    assert issuer.requests == {}


def test_verify_cached_verifies_with_prefetched_keys_and_no_request() -> None:
    issuer = Issuer()
    keys = prefetched(issuer)
    before = dict(issuer.requests)
    for _ in range(3):
        token = issuer.mint()
        assert keys.verify_cached(token, read(token)) is True
    assert issuer.requests == before
    assert before == {"/.well-known/openid-configuration": 1, "/.well-known/jwks": 1}


def test_verify_cached_refuses_a_rogue_signature_in_one_line_without_the_token() -> None:
    issuer = Issuer()
    keys = prefetched(issuer)
    rogue = issuer.mint(key=SigningKey.generate(), header={"kid": issuer.key.kid})
    with pytest.raises(TokenVerificationError) as info:
        keys.verify_cached(rogue, read(rogue))
    message = str(info.value)
    assert message.startswith(f"token {rogue.fingerprint} refused: ")
    assert "signature does not verify" in message and "\n" not in message
    assert rogue.access_token.get_secret_value() not in message


def test_verify_cached_leaves_an_unknown_kid_to_the_one_refetch() -> None:
    issuer = Issuer()
    keys = prefetched(issuer)
    issuer.key = SigningKey.generate()  # the issuer rotated its key
    issuer.published.append(issuer.key)
    token = issuer.mint()
    assert keys.verify_cached(token, read(token)) is False
    assert issuer.requests["/.well-known/jwks"] == 1
    asyncio.run(averify_minted(token, now=datetime.now(timezone.utc), renew_before=0, keys=keys))
    assert issuer.requests["/.well-known/jwks"] == 2
    assert keys.verify_cached(token, read(token)) is True


def test_verify_cached_says_no_once_the_keys_are_older_than_their_ttl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1_000.0]
    monkeypatch.setattr(jwks_module.time, "monotonic", lambda: clock[0])
    issuer = Issuer()
    keys = prefetched(issuer)
    token = issuer.mint()
    clock[0] += keys.ttl - 1
    assert keys.verify_cached(token, read(token)) is True
    clock[0] += 2
    assert keys.verify_cached(token, read(token)) is False


def test_check_issued_fetches_missing_keys_then_verifies_in_the_callers_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    issuer = Issuer()
    keys = JwksCache(transport=issuer.transport)
    token = issuer.mint()
    assert trust.check_issued(token, jwks_url=JWKS_URL, keys=keys) is token
    assert issuer.requests == {"/.well-known/jwks": 1}

    def refuse() -> asyncio.AbstractEventLoop:
        raise AssertionError("check_issued handed the check to its private loop")

    monkeypatch.setattr(trust, "_checks_loop", refuse)
    for _ in range(3):
        fresh = issuer.mint()
        assert trust.check_issued(fresh, jwks_url=JWKS_URL, keys=keys) is fresh
    assert issuer.requests == {"/.well-known/jwks": 1}


@pytest.mark.usefixtures("no_private_loop")
def test_check_issued_refuses_a_rogue_signature_with_cached_keys() -> None:
    issuer = Issuer()
    keys = prefetched(issuer)
    rogue = issuer.mint(key=SigningKey.generate(), header={"kid": issuer.key.kid})
    with pytest.raises(InvalidResponseError, match="signature does not verify"):
        trust.check_issued(rogue, keys=keys)


@pytest.mark.usefixtures("no_private_loop")
def test_check_issued_checks_the_claims_in_the_callers_thread_too() -> None:
    issuer = Issuer()
    keys = JwksCache(transport=issuer.transport)
    unsigned = issuer.mint(raw=issuer.unsigned({"alg": "none", "typ": "at+jwt"}))
    with pytest.raises(InvalidResponseError, match="algorithm 'none' is refused"):
        trust.check_issued(unsigned, keys=keys)
    assert trust.check_issued(issuer.mint(), mode="claims", keys=keys) is not None
    assert issuer.requests == {}
