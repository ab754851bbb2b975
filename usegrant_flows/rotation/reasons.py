"""One line a person can act on, for any failure of a target's rotation.

:func:`explain_error` turns an exception into that line: built from status codes, error
codes, names and ids, never a token or an API key, at most 300 characters.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

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
)
from usegrant_flows.api.redact import redact
from usegrant_flows.rotation.issuer_keys import KeysUnavailableError

__all__ = ["MAX_REASON", "explain_error", "one_line"]

#: Longest reason, in characters.
MAX_REASON = 300


def one_line(text: str) -> str:
    """Return ``text`` on one line, cut to :data:`MAX_REASON` characters."""
    line = " ".join(redact(text).split())
    return line if len(line) <= MAX_REASON else line[: MAX_REASON - 3] + "..."


def explain_error(
    exc: BaseException,
    *,
    credentials: str | None = None,
    provider_id: object = None,
    client_id: object = None,
    now: datetime | None = None,
) -> str:
    """Turn an exception into one line a person can act on.

    The line is built from status codes, error codes, names and ids; it never contains
    a token or an API key (our exceptions never carry them).

    Args:
        exc: What went wrong.
        credentials: The credentials block name used, or ``None`` for the settings.
        provider_id: The provider id of the request, for a 404.
        client_id: The client id of the request, for a 404.
        now: The reference time (aware) for rate-limit reasons; defaults to now.

    Returns:
        A single line of at most 300 characters.

    Example:
        >>> from usegrant_flows.api.errors import AuthenticationError
        >>> explain_error(AuthenticationError(401), credentials="prod")
        "UseGrant rejected the API key (401): check the credentials block 'prod'"
    """
    if isinstance(exc, AuthenticationError):
        where = (
            f"check the credentials block '{credentials}'"
            if credentials
            else "check USEGRANT_API_KEY, the .env file or `usegrant-flows login`"
        )
        return f"UseGrant rejected the API key ({exc.status_code}): {where}"
    if isinstance(exc, NotFoundError):
        return one_line(
            f"UseGrant does not know provider {provider_id} or its client {client_id} "
            f"(404 {exc.code or 'not found'}): check both ids"
        )
    if isinstance(exc, RateLimitError):
        if exc.retry_after is not None:
            until = (now or datetime.now(timezone.utc)) + timedelta(seconds=exc.retry_after)
            stamp = until.strftime("%Y-%m-%d %H:%M:%SZ")
            return f"rate limited until {stamp} (429): the next run retries"
        return "rate limited (429): the next run retries"
    if isinstance(exc, BadRequestError):
        return one_line(f"UseGrant refused the request (400): {exc.message}")
    if isinstance(exc, ServerError):
        return f"UseGrant failed ({exc.status_code}) after retries: the next run retries"
    if isinstance(exc, UseGrantAPIError):
        return one_line(f"UseGrant answered {exc.status_code}: {exc.message}")
    if isinstance(exc, UseGrantConnectionError):
        return one_line(f"could not reach UseGrant: {exc}")
    if isinstance(exc, InvalidResponseError):
        return one_line(f"UseGrant's answer is not a usable token: {exc}")
    if isinstance(exc, KeysUnavailableError):  # before a mint: nothing was minted
        return one_line(str(exc))
    if isinstance(exc, TokenVerificationError):
        return one_line(f"the minted token was written nowhere: {exc}")
    if isinstance(exc, ConfigurationError):
        return one_line(str(exc))
    text = str(exc)
    return one_line(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
