"""KeyringTokenSink: wire JSON under service/username, round trip, missing backend."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import keyring
import keyring.backend
import keyring.backends.fail
import pytest
from pydantic import ValidationError

from tests.conftest import MemoryKeyring
from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.api.models import AccessToken
from usegrant_flows.api.settings import KEYRING_SERVICE, KEYRING_USERNAME
from usegrant_flows.sinks import KeyringTokenSink, SinkError

MakeToken = Callable[..., AccessToken]


@pytest.fixture
def no_keyring() -> Iterator[None]:
    previous = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(previous)


def test_stores_the_wire_json_under_service_and_username(
    memory_keyring: MemoryKeyring, make_token: MakeToken
) -> None:
    token = make_token()
    KeyringTokenSink(service="svc", username="deployer").write(token)
    stored = memory_keyring.passwords[("svc", "deployer")]
    assert stored == json.dumps(token.to_wire(), separators=(",", ":"))


def test_read_returns_the_written_token(
    memory_keyring: MemoryKeyring, make_token: MakeToken
) -> None:
    token = make_token()
    sink = KeyringTokenSink()
    sink.write(token)
    back = sink.read()
    assert back is not None
    assert back.fingerprint == token.fingerprint
    assert back.expires_at == token.expires_at


def test_read_returns_none_when_nothing_is_stored(memory_keyring: MemoryKeyring) -> None:
    assert KeyringTokenSink(username="nobody").read() is None


def test_read_of_an_entry_that_is_not_a_token_raises(memory_keyring: MemoryKeyring) -> None:
    memory_keyring.passwords[("usegrant-flows-tokens", "access-token")] = "hunter2"
    with pytest.raises(SinkError) as caught:
        KeyringTokenSink().read()
    assert "hunter2" not in str(caught.value)


@pytest.mark.usefixtures("no_keyring")
def test_write_without_a_backend_is_a_clear_configuration_error(make_token: MakeToken) -> None:
    with pytest.raises(ConfigurationError, match="no usable OS keyring backend"):
        KeyringTokenSink().write(make_token())


@pytest.mark.usefixtures("no_keyring")
def test_read_without_a_backend_is_a_clear_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="no usable OS keyring backend"):
        KeyringTokenSink().read()


def test_refuses_the_entry_that_holds_the_api_key() -> None:
    with pytest.raises(ValidationError, match="holds the UseGrant API key"):
        KeyringTokenSink(service=KEYRING_SERVICE, username=KEYRING_USERNAME)


async def test_async_twins_write_and_read(
    memory_keyring: MemoryKeyring, make_token: MakeToken
) -> None:
    token = make_token()
    sink = KeyringTokenSink()
    await sink.awrite(token)
    back = await sink.aread()
    assert back is not None
    assert back.fingerprint == token.fingerprint


def test_describe_and_readability() -> None:
    assert KeyringTokenSink(service="s", username="u").describe() == "keyring s/u"
    assert KeyringTokenSink.readable is True
    assert KeyringTokenSink.kind == "keyring"


@pytest.mark.usefixtures("no_keyring")
def test_preflight_without_a_backend_is_a_clear_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="no usable OS keyring backend"):
        KeyringTokenSink().preflight()


def test_preflight_with_a_backend_reads_and_writes_nothing(memory_keyring: MemoryKeyring) -> None:
    KeyringTokenSink().preflight()
    assert memory_keyring.passwords == {}


def test_preflight_refuses_the_api_key_entry_even_when_built_without_validation() -> None:
    sink = KeyringTokenSink.model_construct(service=KEYRING_SERVICE, username=KEYRING_USERNAME)
    with pytest.raises(ConfigurationError, match="holds the UseGrant API key"):
        sink.preflight()


async def test_apreflight_is_the_async_twin() -> None:
    with pytest.raises(ConfigurationError, match="no usable OS keyring backend"):
        previous = keyring.get_keyring()
        keyring.set_keyring(keyring.backends.fail.Keyring())
        try:
            await KeyringTokenSink().apreflight()
        finally:
            keyring.set_keyring(previous)
