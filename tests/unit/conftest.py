"""Shared unit-test fixtures: no sleeping retries, no real keyring, no real environment."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from tests.conftest import MemoryKeyring
from usegrant_flows.api.client import set_testing


@pytest.fixture(autouse=True)
def _keyring_of_memory(memory_keyring: MemoryKeyring) -> None:
    """Every unit test gets an empty in-memory keyring instead of the developer's own."""


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
