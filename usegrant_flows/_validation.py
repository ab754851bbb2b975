"""Client-side checks run before any request is sent.

Every check raises :class:`~usegrant_flows.errors.ConfigurationError` naming the
argument and the allowed values. Messages never quote a rejected string (it might be
a key pasted into the wrong place); they give its type and length instead.
"""

from __future__ import annotations

import ipaddress
import math
import re
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import SecretStr

from usegrant_flows.errors import ConfigurationError
from usegrant_flows.models import MAX_EXPIRES_IN

__all__ = [
    "check_api_key",
    "check_base_url",
    "check_expires_in",
    "check_flag",
    "check_timeout",
    "check_uuid",
]

_CANONICAL_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
# Printable ASCII without the space: anything else could split or forge an HTTP header.
_API_KEY = re.compile(r"^[\x21-\x7e]+$")
_BASE_URL_RULE = (
    "an https:// URL, or http:// to a loopback host (127.0.0.0/8, ::1, localhost), "
    "without user info, query or fragment"
)


def _describe(value: object) -> str:
    if isinstance(value, str):
        return f"a str of {len(value)} characters"
    return f"a value of type {type(value).__name__}"


def check_uuid(name: str, value: object) -> str:
    """Return ``value`` as a canonical lower-case UUID string.

    Args:
        name: The argument's name, for the error message.
        value: A :class:`~uuid.UUID` or a string in the 8-4-4-4-12 hex form.

    Raises:
        ConfigurationError: For any other type or form (braces, ``urn:``, path tricks).

    Example:
        >>> check_uuid("provider_id", "123E4567-E89B-12D3-A456-426614174000")
        '123e4567-e89b-12d3-a456-426614174000'
    """
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, str) and _CANONICAL_UUID.fullmatch(value):
        return str(UUID(value))
    raise ConfigurationError(
        f"{name} must be a UUID (uuid.UUID or a string like "
        f"123e4567-e89b-12d3-a456-426614174000); got {_describe(value)}"
    )


def check_expires_in(value: object) -> int | None:
    """Return ``expires_in`` if it is ``None`` or an int from 1 to 172800 seconds.

    Raises:
        ConfigurationError: For a bool, a float, a str or an int out of range.
    """
    rule = f"expires_in must be an integer number of seconds from 1 to {MAX_EXPIRES_IN} (48 h)"
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{rule}; got {_describe(value)}")
    if not 1 <= value <= MAX_EXPIRES_IN:
        raise ConfigurationError(f"{rule}; got {value}")
    return value


def check_flag(name: str, value: object) -> bool | None:
    """Return ``value`` if it is ``True``, ``False`` or ``None``.

    Raises:
        ConfigurationError: For anything else (``1``, ``"true"``...).
    """
    if value is None or isinstance(value, bool):
        return value
    raise ConfigurationError(f"{name} must be True, False or None; got {_describe(value)}")


def check_api_key(value: object) -> SecretStr:
    """Return the API key as a :class:`~pydantic.SecretStr` after checking its characters.

    Args:
        value: A ``str`` or ``SecretStr``: non-empty printable ASCII, no whitespace or
            control characters (they would allow header injection).

    Raises:
        ConfigurationError: Naming ``api_key``; the key itself is never quoted.
    """
    if isinstance(value, SecretStr):
        raw = value.get_secret_value()
    elif isinstance(value, str):
        raw = value
    else:
        raise ConfigurationError(f"api_key must be a str or SecretStr; got {_describe(value)}")
    if not raw:
        raise ConfigurationError("api_key must not be empty")
    if not _API_KEY.fullmatch(raw):
        raise ConfigurationError(
            "api_key must be printable ASCII without whitespace or control characters "
            f"(got {len(raw)} characters, some not allowed)"
        )
    return value if isinstance(value, SecretStr) else SecretStr(raw)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(value: object) -> str:
    """Return the base URL without a trailing slash, after checking where it points.

    The API key travels in every request, so it may only go over https, or over plain
    http to this machine (the emulator).

    Args:
        value: An absolute URL, e.g. ``https://sdk.usegrant.dev``.

    Raises:
        ConfigurationError: Naming ``base_url`` and the allowed forms.

    Example:
        >>> check_base_url("http://127.0.0.1:8080/")
        'http://127.0.0.1:8080'
    """
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"base_url must be {_BASE_URL_RULE}; got {_describe(value)}")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ConfigurationError(f"base_url must be {_BASE_URL_RULE}; it contains whitespace")
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigurationError(f"base_url must be {_BASE_URL_RULE}; it is not a URL") from None
    problem = None
    if parts.scheme not in ("https", "http"):
        problem = f"scheme {parts.scheme or '(none)'!r} is not allowed"
    elif not host:
        problem = "it has no host"
    elif parts.scheme == "http" and not _is_loopback(host):
        problem = "plain http is only allowed to a loopback host"
    elif parts.username is not None or parts.password is not None:
        problem = "it contains user info"
    elif parts.query or "?" in value:
        problem = "it contains a query"
    elif parts.fragment or "#" in value:
        problem = "it contains a fragment"
    if problem:
        raise ConfigurationError(f"base_url must be {_BASE_URL_RULE}; {problem}")
    return value.rstrip("/")


def check_timeout(value: object) -> float:
    """Return the request timeout in seconds: a finite number > 0.

    Raises:
        ConfigurationError: For a bool, a non-number, zero, a negative or infinite value.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"timeout must be a number of seconds > 0; got {_describe(value)}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"timeout must be a finite number of seconds > 0; got {value}")
    return float(value)
