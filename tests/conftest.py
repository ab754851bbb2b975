"""Root fixtures shared by every test.

Prefect reads PREFECT_HOME when it is first imported, so it is pointed at a session
temporary directory here, at conftest import time, before any test module imports
Prefect: no test touches ~/.prefect.
"""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

_PREFECT_HOME = tempfile.mkdtemp(prefix="usegrant-tests-prefect-home-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
# Tests only talk to loopback: no telemetry from the Prefect servers they start.
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)


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
