"""UseGrantSettings: explicit > env > .env > keyring, and a clear error when all are empty."""

from __future__ import annotations

from pathlib import Path

import keyring
import keyring.backends.fail
import pytest
from keyrings.alt.file import PlaintextKeyring

from tests.unit.conftest import MemoryKeyring
from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.api.settings import (
    KEYRING_SERVICE,
    KEYRING_USERNAME,
    UseGrantSettings,
    load_settings,
)


def write_dotenv(text: str) -> None:
    Path(".env").write_text(text, encoding="utf-8")  # the cwd is a fresh tmp dir


def store_in_keyring(backend: MemoryKeyring, key: str) -> None:
    backend.set_password(KEYRING_SERVICE, KEYRING_USERNAME, key)


def test_the_keyring_entry_is_named_as_documented() -> None:
    assert (KEYRING_SERVICE, KEYRING_USERNAME) == ("usegrant-flows", "api-key")


def test_an_explicit_key_wins_over_env_dotenv_and_keyring(
    monkeypatch: pytest.MonkeyPatch, memory_keyring: MemoryKeyring
) -> None:
    monkeypatch.setenv("USEGRANT_API_KEY", "from_env")
    write_dotenv("USEGRANT_API_KEY=from_dotenv\n")
    store_in_keyring(memory_keyring, "from_keyring")

    settings = UseGrantSettings(api_key="explicit")

    assert settings.require_api_key().get_secret_value() == "explicit"


def test_the_environment_wins_over_dotenv_and_keyring(
    monkeypatch: pytest.MonkeyPatch, memory_keyring: MemoryKeyring
) -> None:
    monkeypatch.setenv("USEGRANT_API_KEY", "from_env")
    write_dotenv("USEGRANT_API_KEY=from_dotenv\n")
    store_in_keyring(memory_keyring, "from_keyring")

    assert UseGrantSettings().require_api_key().get_secret_value() == "from_env"


def test_dotenv_wins_over_the_keyring(memory_keyring: MemoryKeyring) -> None:
    write_dotenv("USEGRANT_API_KEY=from_dotenv\n")
    store_in_keyring(memory_keyring, "from_keyring")

    assert UseGrantSettings().require_api_key().get_secret_value() == "from_dotenv"


def test_the_keyring_is_used_when_nothing_else_has_a_key(memory_keyring: MemoryKeyring) -> None:
    store_in_keyring(memory_keyring, "from_keyring")

    assert UseGrantSettings().require_api_key().get_secret_value() == "from_keyring"


def test_a_file_backed_keyring_is_read(tmp_path: Path) -> None:
    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "keyring_pass.cfg")
    backend.set_password(KEYRING_SERVICE, KEYRING_USERNAME, "from_file_keyring")
    keyring.set_keyring(backend)  # the autouse fixture restores the previous one

    assert UseGrantSettings().require_api_key().get_secret_value() == "from_file_keyring"


def test_no_key_anywhere_names_all_three_ways_to_provide_one() -> None:
    with pytest.raises(ConfigurationError) as caught:
        UseGrantSettings().require_api_key()

    message = str(caught.value)
    assert "USEGRANT_API_KEY" in message
    assert ".env" in message
    assert "usegrant-flows login" in message
    assert "UseGrantCredentials" in message
    assert "api_key=" in message


def test_a_missing_keyring_backend_counts_as_no_key() -> None:
    keyring.set_keyring(keyring.backends.fail.Keyring())

    with pytest.raises(ConfigurationError, match="USEGRANT_API_KEY"):
        UseGrantSettings().require_api_key()


def test_a_missing_keyring_backend_does_not_hide_an_env_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keyring.set_keyring(keyring.backends.fail.Keyring())
    monkeypatch.setenv("USEGRANT_API_KEY", "from_env")

    assert UseGrantSettings().require_api_key().get_secret_value() == "from_env"


def test_a_blank_env_key_counts_as_unset(
    monkeypatch: pytest.MonkeyPatch, memory_keyring: MemoryKeyring
) -> None:
    monkeypatch.setenv("USEGRANT_API_KEY", "")
    store_in_keyring(memory_keyring, "from_keyring")

    assert UseGrantSettings().require_api_key().get_secret_value() == "from_keyring"


def test_base_url_and_timeout_default_to_production_values() -> None:
    settings = UseGrantSettings()

    assert settings.base_url == "https://sdk.usegrant.dev"
    assert settings.timeout == 10.0
    assert settings.api_key is None


def test_base_url_and_timeout_come_from_env_and_dotenv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USEGRANT_BASE_URL", "http://127.0.0.1:8787")
    write_dotenv("USEGRANT_TIMEOUT=2.5\nUSEGRANT_BASE_URL=https://ignored.example\n")

    settings = UseGrantSettings()

    assert settings.base_url == "http://127.0.0.1:8787"
    assert settings.timeout == 2.5


def test_the_settings_repr_hides_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USEGRANT_API_KEY", "usegrant_secret_in_env")

    settings = UseGrantSettings()

    assert "usegrant_secret_in_env" not in repr(settings) + str(settings)


def test_an_unusable_setting_names_its_variable_without_quoting_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USEGRANT_TIMEOUT", "ten-seconds-please")

    with pytest.raises(ConfigurationError) as caught:
        load_settings()

    assert "USEGRANT_TIMEOUT" in str(caught.value)
    assert "ten-seconds-please" not in str(caught.value)
    assert caught.value.__cause__ is None
