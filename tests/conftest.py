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

import pytest

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

    with prefect_test_harness():
        yield


@pytest.fixture(autouse=True)
def _no_retry_sleeps() -> None:
    """Make the client's retry waits zero, when the client offers the switch."""
    try:
        client = importlib.import_module("usegrant_flows.client")
    except ImportError:
        return
    set_testing = getattr(client, "set_testing", None)
    if set_testing is not None:
        set_testing(True)


def _make_token(lifetime: int = 3600, **claims: Any) -> Any:
    """Return an AccessToken holding a real (HS256-signed) JWT expiring in ``lifetime`` s."""
    import jwt

    from usegrant_flows.models import AccessToken, format_js_datetime

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
