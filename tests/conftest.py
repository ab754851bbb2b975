"""Root fixtures shared by every test.

The repository's root ``conftest.py`` points PREFECT_HOME at a session temporary
directory before any test module (or doctest) imports Prefect.
"""

from __future__ import annotations

import importlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import keyring
import keyring.errors
import pytest
from keyring.backend import KeyringBackend

# Set by the repository's root conftest.py, which pytest loads before anything else.
_PREFECT_HOME = os.environ["PREFECT_HOME"]


@pytest.fixture(scope="session")
def prefect_home() -> str:
    """The PREFECT_HOME of this test session."""
    return _PREFECT_HOME


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Run Prefect against a temporary local API and database for the whole session.

    Use it with ``pytestmark = pytest.mark.usefixtures("prefect_harness")``.
    """
    from prefect.testing.utilities import prefect_test_harness

    # None: the start-up limit is PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (180 s,
    # set in the root conftest), not the harness's own 30 s, which a loaded 2-core
    # machine overruns ("Timed out while attempting to connect to ephemeral Prefect API").
    with prefect_test_harness(server_startup_timeout=None):
        yield


@pytest.fixture(autouse=True)
def _no_retry_sleeps() -> None:
    """Make the client's retry waits zero, when the client offers the switch."""
    try:
        client = importlib.import_module("usegrant_flows.api.client")
    except ImportError:
        return
    set_testing = getattr(client, "set_testing", None)
    if set_testing is not None:
        set_testing(True)


@pytest.fixture(autouse=True)
def _fresh_process_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give each test the empty JWKS cache of a new process.

    The process's cache outlives runs (keys within 300 s); across tests a loopback port
    reused by another emulator would otherwise find the previous one's keys there.
    """
    monkeypatch.setattr("usegrant_flows.api.jwks._SHARED", None)


def _make_token(lifetime: int = 3600, **claims: Any) -> Any:
    """Return an AccessToken holding a real (HS256-signed) JWT expiring in ``lifetime`` s."""
    import jwt

    from usegrant_flows.api.models import AccessToken, format_js_datetime

    now = int(time.time())
    body = {"jti": str(uuid.uuid4()), "iat": now, "exp": now + lifetime, **claims}
    encoded = jwt.encode(body, "test-signing-key-of-32-bytes-min!", algorithm="HS256")
    expires = format_js_datetime(datetime.fromtimestamp(body["exp"], tz=timezone.utc))
    return AccessToken.model_validate(
        {"accessToken": encoded, "expiresAt": expires, "type": "Bearer"}
    )


@pytest.fixture
def make_token() -> Callable[..., Any]:
    """Factory of AccessTokens with real JWTs: ``make_token(lifetime=600, sub="x")``."""
    return _make_token


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


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    """An empty in-memory keyring in place of the OS one, for the test's duration."""
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)
