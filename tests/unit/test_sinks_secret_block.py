"""SecretBlockSink: the Secret block holds the bare JWT; read() gives the token back."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prefect.blocks.system import Secret
from pydantic import ValidationError

from usegrant_flows.api.models import AccessToken
from usegrant_flows.sinks import SecretBlockSink, SinkError
from usegrant_flows.sinks.base import NotOwnedError

pytestmark = pytest.mark.usefixtures("prefect_harness")

MakeToken = Callable[..., AccessToken]


def test_secret_get_gives_consumers_the_bare_jwt(make_token: MakeToken) -> None:
    token = make_token()
    SecretBlockSink(secret_block_name="sink-get").write(token)
    value = Secret.load("sink-get", _sync=True).get()  # type: ignore[call-arg]
    assert value == token.access_token.get_secret_value()


def test_read_returns_the_written_token_with_expiry_from_exp(make_token: MakeToken) -> None:
    token = make_token(lifetime=1200)
    sink = SecretBlockSink(secret_block_name="sink-read")
    sink.write(token)
    back = sink.read()
    assert back is not None
    assert back.fingerprint == token.fingerprint
    assert back.expires_at == token.expires_at


def test_write_overwrites_the_previous_token(make_token: MakeToken) -> None:
    sink = SecretBlockSink(secret_block_name="sink-overwrite")
    sink.write(make_token())
    newer = make_token()
    sink.write(newer)
    back = sink.read()
    assert back is not None
    assert back.fingerprint == newer.fingerprint


def test_read_returns_none_when_the_block_does_not_exist() -> None:
    assert SecretBlockSink(secret_block_name="sink-never-written").read() is None


def test_read_of_a_secret_that_is_not_a_jwt_raises_without_quoting_it() -> None:
    Secret(value="hunter2-not-a-jwt").save("sink-garbage", overwrite=True, _sync=True)  # type: ignore[call-arg]
    with pytest.raises(SinkError) as caught:
        SecretBlockSink(secret_block_name="sink-garbage").read()
    assert "hunter2" not in str(caught.value)


async def test_async_twins_write_and_read(make_token: MakeToken) -> None:
    token = make_token()
    sink = SecretBlockSink(secret_block_name="sink-async")
    await sink.awrite(token)
    back = await sink.aread()
    assert back is not None
    assert back.fingerprint == token.fingerprint


@pytest.mark.parametrize("name", ["", "Upper", "under_score", "-dash", "dash-", "a b"])
def test_refuses_a_name_prefect_would_not_accept(name: str) -> None:
    with pytest.raises(ValidationError, match="secret_block_name"):
        SecretBlockSink(secret_block_name=name)


def test_describe_and_readability() -> None:
    sink = SecretBlockSink(secret_block_name="aws-token")
    assert sink.describe() == "secret block aws-token"
    assert SecretBlockSink.readable is True
    assert SecretBlockSink.kind == "secret-block"


async def test_apreflight_accepts_a_missing_block_and_creates_nothing() -> None:
    await SecretBlockSink(secret_block_name="preflight-missing").apreflight()
    with pytest.raises(ValueError):
        await Secret.aload("preflight-missing")


def test_preflight_accepts_an_existing_block(make_token: MakeToken) -> None:
    sink = SecretBlockSink(secret_block_name="preflight-existing")
    sink.write(make_token())
    sink.preflight()


async def test_apreflight_without_a_reachable_prefect_api_is_a_sink_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def unreachable(*args: object, **kwargs: object) -> None:
        raise ConnectionError("no API")

    monkeypatch.setattr(Secret, "aload", unreachable)
    with pytest.raises(SinkError, match="could not load Secret block 'x-token'"):
        await SecretBlockSink(secret_block_name="x-token").apreflight()


def test_a_secret_block_holding_a_password_fails_preflight_and_stays(
    make_token: MakeToken,
) -> None:
    Secret(value="db-password-of-another-team").save("team-db-password", overwrite=True, _sync=True)  # type: ignore[call-arg]
    sink = SecretBlockSink(secret_block_name="team-db-password")
    with pytest.raises(NotOwnedError, match="set `adopt: true`") as caught:
        sink.preflight()
    assert "db-password-of-another-team" not in str(caught.value)
    with pytest.raises(NotOwnedError):
        sink.write(make_token())
    assert Secret.load("team-db-password", _sync=True).get()  # type: ignore[call-arg] == "db-password-of-another-team"


def test_adopt_takes_a_foreign_secret_block_over(make_token: MakeToken) -> None:
    Secret(value="hand-written placeholder").save("adopted-token", overwrite=True, _sync=True)  # type: ignore[call-arg]
    token = make_token()
    SecretBlockSink(secret_block_name="adopted-token", adopt=True).write(token)
    assert Secret.load("adopted-token", _sync=True).get()  # type: ignore[call-arg] == token.access_token.get_secret_value()
    SecretBlockSink(secret_block_name="adopted-token").preflight()  # ours now
