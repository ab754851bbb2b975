"""Shared unit-test fixtures: no sleeping retries, no real keyring, no real environment."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import keyring
import keyring.errors
import pytest
from keyring.backend import KeyringBackend

from usegrant_flows.client import set_testing


class MemoryKeyring(KeyringBackend):
    """A keyring backend that lives in a dict, for tests."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        try:
            del self.passwords[(service, username)]
        except KeyError:
            raise keyring.errors.PasswordDeleteError("not stored") from None


@pytest.fixture(autouse=True)
def memory_keyring() -> Iterator[MemoryKeyring]:
    """Every test gets an empty in-memory keyring instead of the developer's own."""
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


@pytest.fixture(autouse=True)
def isolated_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No USEGRANT_* variable from the developer's shell, and no .env from their checkout."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("USEGRANT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(autouse=True)
def retries_without_sleeping() -> Iterator[None]:
    set_testing(True)
    try:
        yield
    finally:
        set_testing(False)


def make_jwt(
    claims: dict[str, object] | None = None, header: dict[str, object] | None = None
) -> str:
    """Return an unsigned-looking but well-formed JWT (signature part is dummy bytes)."""

    def part(value: dict[str, object]) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = header or {"alg": "ES256", "typ": "at+jwt", "kid": "test"}
    claims = claims or {"jti": "jti-1", "sub": "client", "exp": 1_900_000_000, "iat": 1_899_999_100}
    return f"{part(header)}.{part(claims)}.c2lnbmF0dXJl"
