"""Every token a single-token task (or ``token create``) returns has passed the checks."""

from __future__ import annotations

from typing import Any

import pytest
from prefect import flow

from usegrant_flows.api import jwks
from usegrant_flows.api.errors import ConfigurationError, InvalidResponseError
from usegrant_flows.api.jwks import JwksCache
from usegrant_flows.api.models import AccessToken
from usegrant_flows.cli.commands import main
from usegrant_flows.credentials import UseGrantCredentials
from usegrant_flows.emulator import RunningEmulator
from usegrant_flows.tasks import acreate_access_token, create_access_token

pytestmark = pytest.mark.usefixtures("prefect_harness")

# Not retried (InvalidResponseError is not transient); no waits in any case.
sync_task = create_access_token.with_options(retry_delay_seconds=0)
async_task = acreate_access_token.with_options(retry_delay_seconds=0)


def ids(emu: RunningEmulator) -> dict[str, str]:
    provider = emu.seed.providers[0]
    return {"provider_id": str(provider.id), "client_id": str(provider.clients[0].id)}


def credentials(emu: RunningEmulator) -> UseGrantCredentials:
    return UseGrantCredentials(api_key=emu.api_key, base_url=emu.base_url)  # type: ignore[arg-type]


def token_calls(emu: RunningEmulator) -> int:
    return int(emu.stats()["token_calls"]["total"])


def fetches(emu: RunningEmulator, route: str) -> int:
    return int(emu.stats()["by_route"].get(route, 0))


@pytest.fixture
def fresh_keys() -> JwksCache:
    """The process key cache, empty (tests/conftest.py resets it for every test)."""
    keys = jwks.shared_jwks_cache()
    assert keys.fetches == {}
    return keys


def mint_sync(emu: RunningEmulator, **options: Any) -> AccessToken:
    @flow
    def mint() -> AccessToken:
        return sync_task(credentials(emu), **ids(emu), expires_in=600, **options)

    return mint()


async def mint_async(emu: RunningEmulator, **options: Any) -> AccessToken:
    @flow
    async def mint() -> AccessToken:
        return await async_task(credentials(emu), **ids(emu), expires_in=600, **options)

    return await mint()


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("alg_none_rate", "algorithm 'none' is refused"),
        ("bad_signature_rate", "signature does not verify"),
        ("expired_rate", "expires at"),
    ],
)
def test_the_sync_task_raises_and_returns_nothing_for_an_untrustworthy_token(
    emu: RunningEmulator, fault: str, reason: str
) -> None:
    emu.set_faults(**{fault: 1.0})
    with pytest.raises(InvalidResponseError, match=reason):
        mint_sync(emu)
    assert token_calls(emu) == 1  # refused once, not retried


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("alg_none_rate", "algorithm 'none' is refused"),
        ("bad_signature_rate", "signature does not verify"),
    ],
)
async def test_the_async_task_raises_and_returns_nothing_for_an_untrustworthy_token(
    emu: RunningEmulator, fault: str, reason: str
) -> None:
    emu.set_faults(**{fault: 1.0})
    with pytest.raises(InvalidResponseError, match=reason):
        await mint_async(emu)
    assert token_calls(emu) == 1


def test_claims_mode_accepts_a_rogue_signature_but_not_alg_none(emu: RunningEmulator) -> None:
    emu.set_faults(bad_signature_rate=1.0)
    assert isinstance(mint_sync(emu, verify="claims"), AccessToken)
    emu.set_faults(bad_signature_rate=0.0, alg_none_rate=1.0)
    with pytest.raises(InvalidResponseError, match="algorithm 'none' is refused"):
        mint_sync(emu, verify="claims")


async def test_off_returns_what_the_api_answered_unchecked(emu: RunningEmulator) -> None:
    emu.set_faults(alg_none_rate=1.0)
    token = await mint_async(emu, verify="off")
    assert token.header()["alg"] == "none"


def test_an_unknown_verify_mode_fails_before_any_request(emu: RunningEmulator) -> None:
    with pytest.raises(ConfigurationError, match="verify must be 'full', 'claims' or 'off'"):
        mint_sync(emu, verify="sometimes")
    assert token_calls(emu) == 0


def test_a_task_in_a_loop_fetches_the_issuers_keys_once(
    emu: RunningEmulator, fresh_keys: JwksCache
) -> None:
    @flow
    def mint_five() -> list[str]:
        return [
            sync_task(credentials(emu), **ids(emu), expires_in=600).fingerprint for _ in range(5)
        ]

    assert len(set(mint_five())) == 5
    assert fetches(emu, "GET /.well-known/openid-configuration") == 1
    assert fetches(emu, "GET /.well-known/jwks") == 1


async def test_async_tasks_share_the_process_key_cache_too(
    emu: RunningEmulator, fresh_keys: JwksCache
) -> None:
    for _ in range(3):
        await mint_async(emu)
    assert fetches(emu, "GET /.well-known/jwks") == 1


# --- usegrant-flows token create --------------------------------------------------------


@pytest.fixture
def emulator_env(emu: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> RunningEmulator:
    monkeypatch.setenv("USEGRANT_API_KEY", emu.api_key)
    monkeypatch.setenv("USEGRANT_BASE_URL", emu.base_url)
    monkeypatch.delenv("USEGRANT_JWKS_URL", raising=False)
    return emu


def create(emu: RunningEmulator, *extra: str) -> int:
    [provider_id, client_id] = ids(emu).values()
    return main(
        ["token", "create", "--provider-id", provider_id, "--client-id", client_id, "--raw", *extra]
    )


def test_token_create_prints_a_token_that_passed(
    emulator_env: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert create(emulator_env) == 0
    assert capsys.readouterr().out.count(".") == 2


@pytest.mark.parametrize("fault", ["alg_none_rate", "bad_signature_rate"])
def test_token_create_prints_no_token_that_failed(
    emulator_env: RunningEmulator, capsys: pytest.CaptureFixture[str], fault: str
) -> None:
    emulator_env.set_faults(**{fault: 1.0})
    assert create(emulator_env) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "refused" in err and len(err.strip().splitlines()) == 1


def test_token_create_verify_claims_accepts_a_rogue_signature(
    emulator_env: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator_env.set_faults(bad_signature_rate=1.0)
    assert create(emulator_env, "--verify", "claims") == 0
    assert capsys.readouterr().out.count(".") == 2
