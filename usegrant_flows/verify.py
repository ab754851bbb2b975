"""Public home of token verification: ``from usegrant_flows.verify import verify_token``.

The code lives in :mod:`usegrant_flows.api.verify`; this module re-exports it so the
documented import path never changes.
"""

from __future__ import annotations

from usegrant_flows.api.verify import (
    ALLOWED_ALGORITHMS,
    JWKS_CACHE_SECONDS,
    clear_jwks_cache,
    fetch_openid_configuration,
    issuer_for,
    verify_token,
)

__all__ = [
    "ALLOWED_ALGORITHMS",
    "JWKS_CACHE_SECONDS",
    "clear_jwks_cache",
    "fetch_openid_configuration",
    "issuer_for",
    "verify_token",
]
