"""Isolation for every test, doctests of the library and the README included.

Prefect reads PREFECT_HOME when it is first imported, so it is pointed at a session
temporary directory here, at conftest import time, before any test imports Prefect:
no test touches ~/.prefect, and no Prefect server started by a test phones home. The
embedded API also gets a start-up limit that fits a loaded machine.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_PREFECT_HOME = tempfile.mkdtemp(prefix="usegrant-tests-prefect-home-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
for _outer in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE"):
    os.environ.pop(_outer, None)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
# Prefect's embedded API takes 7 s to start on a quiet machine and 14-35 s on a loaded
# 2-core one (CI shares the machine), past Prefect's default limit of 20 s.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)
