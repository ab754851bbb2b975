"""A local UseGrant API: signs real ES256 JWTs, serves JWKS and injects faults.

Use it in tests through :func:`run_emulator`, or from a shell with
``usegrant-flows emulator`` (``python -m usegrant_flows.emulator``). It imports nothing
from the Prefect layer or the client.

Example:
    >>> from usegrant_flows.emulator import default_seed, DEFAULT_PROVIDER_ID
    >>> default_seed().providers[0].id == DEFAULT_PROVIDER_ID
    True
"""

from __future__ import annotations

from usegrant_flows.emulator.app import create_app
from usegrant_flows.emulator.faults import Faults
from usegrant_flows.emulator.routes import TOKEN_ROUTE
from usegrant_flows.emulator.seed import (
    AWS_CLIENT_ID,
    AZURE_CLIENT_ID,
    DEFAULT_PROVIDER_ID,
    GCP_CLIENT_ID,
    Seed,
    SeedClient,
    SeedProvider,
    default_seed,
    load_seed,
)
from usegrant_flows.emulator.server import RunningEmulator, run_emulator
from usegrant_flows.emulator.state import EmulatorState

__all__ = [
    "AWS_CLIENT_ID",
    "AZURE_CLIENT_ID",
    "DEFAULT_PROVIDER_ID",
    "GCP_CLIENT_ID",
    "TOKEN_ROUTE",
    "EmulatorState",
    "Faults",
    "RunningEmulator",
    "Seed",
    "SeedClient",
    "SeedProvider",
    "create_app",
    "default_seed",
    "load_seed",
    "run_emulator",
]
