"""Isolation for every test, doctests of the library and the README included.

Prefect reads PREFECT_HOME when it is first imported, so it is pointed at a session
temporary directory here, at conftest import time, before any test imports Prefect:
no test touches ~/.prefect, and no Prefect server started by a test phones home. The
embedded API also gets a start-up limit that fits a loaded machine.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile

import pytest

_PREFECT_HOME = tempfile.mkdtemp(prefix="usegrant-tests-prefect-home-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
for _outer in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE"):
    os.environ.pop(_outer, None)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
# Prefect's embedded API takes 7 s to start on a quiet machine and 14-35 s on a loaded
# 2-core one (CI shares the machine), past Prefect's default limit of 20 s.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop Prefect's embedded API while pytest's output capture is still open.

    Doctests that run flows (the tasks', the README's) start Prefect's embedded API, a
    subprocess Prefect stops at interpreter exit, logging "Stopping temporary server" to
    the console stream it was configured with: pytest's capture, closed by then. That is
    the "--- Logging error ---" traceback printed after the summary. Here the logs and
    events Prefect still holds are sent first, then the API stops without that line.
    """
    if "prefect.server.api.server" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api import server

    APILogWorker.drain_all(timeout=30)
    EventsWorker.drain_all(timeout=30)
    logger = server.subprocess_server_logger
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        server.SubprocessASGIServer().stop()  # the embedded API's instance (no port given)
    finally:
        logger.setLevel(level)
