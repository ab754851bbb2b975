"""Public home of the exception tree: ``from usegrant_flows.errors import UseGrantError``.

The classes live in :mod:`usegrant_flows.api.errors`; this module re-exports them so the
documented import path never changes.
"""

from __future__ import annotations

from usegrant_flows.api.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InvalidResponseError,
    NotFoundError,
    RateLimitError,
    ServerError,
    TokenVerificationError,
    UseGrantAPIError,
    UseGrantConnectionError,
    UseGrantError,
    api_error_for_status,
    is_transient,
)

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "InvalidResponseError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
    "TokenVerificationError",
    "UseGrantAPIError",
    "UseGrantConnectionError",
    "UseGrantError",
    "api_error_for_status",
    "is_transient",
]
