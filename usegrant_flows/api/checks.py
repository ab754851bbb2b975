"""Client-side checks: arguments before any request is sent, answers after.

Every argument check raises :class:`~usegrant_flows.api.errors.ConfigurationError` naming the
argument and the allowed values. Messages never quote a rejected string (it might be
a key pasted into the wrong place); they give its type and length instead.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from typing import cast
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import SecretStr, ValidationError

from usegrant_flows.api.errors import (
    ConfigurationError,
    InvalidResponseError,
    UseGrantAPIError,
    api_error_for_status,
)
from usegrant_flows.api.models import MAX_EXPIRES_IN, AccessToken
from usegrant_flows.api.redact import redact, register_secret
from usegrant_flows.api.retry import parse_retry_after
from usegrant_flows.api.transport import Answer

__all__ = [
    "MAX_TOKEN_CHARS",
    "URL_RULE",
    "check_api_key",
    "check_base_url",
    "check_expires_in",
    "check_flag",
    "check_secure_url",
    "check_timeout",
    "check_uuid",
    "is_loopback",
    "parse_token_response",
    "short_errors",
    "url_problem",
]

_CANONICAL_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
# Printable ASCII without the space: anything else could split or forge an HTTP header.
_API_KEY = re.compile(r"^[\x21-\x7e]+$")
_MAX_ERROR_MESSAGE = 300
#: Longest access token accepted, in characters (16 KiB); UseGrant's are under 2 KiB.
MAX_TOKEN_CHARS = 16 * 1024
_BARE_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
#: Where a key or a token may travel (see :func:`url_problem`).
URL_RULE = "an https:// URL, or http:// to a loopback host (127.0.0.0/8, ::1, localhost)"


def short_errors(exc: ValidationError, *, whole: str = "value", limit: int = 5) -> str:
    """Return pydantic's errors as one line, ``field.path: message; ...``.

    The input values are left out (they can be secrets), and so are pydantic's links.

    Args:
        exc: The validation error.
        whole: What to call an error about the whole object (no field path).
        limit: Most errors listed (>= 1); the rest are counted.
    """
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    parts = [
        f"{'.'.join(str(part) for part in err['loc']) or whole}: {err['msg']}"
        for err in errors[:limit]
    ]
    if len(errors) > limit:
        parts.append(f"and {len(errors) - limit} more")
    return "; ".join(parts)


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
    register_secret(raw)  # any error text that quotes it is scrubbed
    return value if isinstance(value, SecretStr) else SecretStr(raw)


def is_loopback(host: str) -> bool:
    """Tell whether ``host`` names this machine (``localhost``, 127.0.0.0/8 or ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_problem(value: object, *, base: bool = False) -> str | None:
    """Return why a URL may not carry a secret, or ``None`` when it may.

    The rule for every URL we send a key or a token to, or trust keys from: https, or
    plain http to a loopback host (the emulator, a test server); a host; no user info.
    A ``base`` URL (an API or a store's endpoint, to which paths are added) has no query
    or fragment either. The answer never quotes the URL (it may embed a credential).

    Example:
        >>> url_problem("http://127.0.0.1:8080"), url_problem("http://example.com")
        (None, 'plain http is only allowed to a loopback host')
    """
    if not isinstance(value, str) or not value:
        return f"got {_describe(value)}"
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        return "it contains whitespace"
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "it is not a URL"
    if parts.scheme.lower() not in ("https", "http"):
        return f"scheme {parts.scheme or '(none)'!r} is not allowed"
    if not host:
        return "it has no host"
    if parts.scheme.lower() == "http" and not is_loopback(host):
        return "plain http is only allowed to a loopback host"
    if parts.username is not None or parts.password is not None:
        return "it contains user info"
    if base and (parts.query or "?" in value):
        return "it contains a query"
    if base and (parts.fragment or "#" in value):
        return "it contains a fragment"
    return None


def check_secure_url(value: object, name: str) -> str:
    """Return ``value`` when :func:`url_problem` finds nothing, else raise.

    Args:
        value: The URL.
        name: What the URL is, for the message (``"jwks_url"``).

    Raises:
        ConfigurationError: ``"<name> must be https, or http to a loopback host; ..."``.
    """
    problem = url_problem(value)
    if problem:
        raise ConfigurationError(f"{name} must be {URL_RULE}; {problem}")
    return cast(str, value)


def check_base_url(value: object) -> str:
    """Return the base URL without a trailing slash, after checking where it points.

    The API key travels in every request, so it may only go over https, or over plain
    http to this machine (the emulator), and has no query or fragment: :func:`url_problem`.

    Args:
        value: An absolute URL, e.g. ``https://sdk.usegrant.dev``.

    Raises:
        ConfigurationError: Naming ``base_url`` and the allowed forms.

    Example:
        >>> check_base_url("http://127.0.0.1:8080/")
        'http://127.0.0.1:8080'
    """
    problem = url_problem(value, base=True)
    if problem:
        raise ConfigurationError(f"base_url must be {URL_RULE}; {problem}")
    return cast(str, value).rstrip("/")


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


def _scrub(text: str, api_key: str) -> str:
    """Remove the API key and anything JWT-shaped from server-provided text."""
    text = text.replace(api_key, "[redacted]") if api_key else text
    text = redact(text)
    text = " ".join(text.split())  # one line, no control characters
    if len(text) > _MAX_ERROR_MESSAGE:
        text = text[: _MAX_ERROR_MESSAGE - 3] + "..."
    return text


def _json_of(answer: Answer) -> object:
    """Return the body's JSON value, or raise ``ValueError`` saying why there is none."""
    if answer.refused is not None:
        raise ValueError(f"a body {answer.refused}")
    try:
        text = answer.body.decode("utf-8")  # strict: no replacement characters
    except UnicodeDecodeError:
        raise ValueError("a body that is not JSON (invalid UTF-8)") from None
    try:
        return json.loads(text)
    except RecursionError:  # the C scanner recurses per nesting level
        raise ValueError("a body that is not JSON we accept (nested too deeply)") from None
    except ValueError:
        raise ValueError("a body that is not JSON") from None


def parse_token_response(answer: Answer, api_key: str) -> AccessToken:
    """Return the token of a 200 or 201 answer, or raise the matching error.

    Args:
        answer: The API's answer, body read within the bounds of
            :mod:`~usegrant_flows.api.transport`.
        api_key: The key the request carried, scrubbed out of any server message.

    Raises:
        UseGrantAPIError: For 4xx/5xx (the subclass matches the status), with the
            body's ``code`` and ``message`` when it is JSON, else a short description.
        InvalidResponseError: For any other status, or a 200/201 without a usable
            token: a body over 64 KiB, not UTF-8 JSON, nested too deeply, of the wrong
            shape, a token that is not a bare JWT of at most 16 KiB, or a ``type`` other
            than ``Bearer``. The message never quotes the body or the token.
    """
    status = answer.status
    if status in (200, 201):
        return _token_from(answer)
    if 400 <= status <= 599:
        raise _api_error(answer, api_key)
    raise InvalidResponseError(
        f"UseGrant API answered {status}; expected 201 (or 200) with a token"
    )


def _token_from(answer: Answer) -> AccessToken:
    status = answer.status
    try:
        data = _json_of(answer)
    except ValueError as exc:
        raise InvalidResponseError(f"UseGrant API answered {status} with {exc}") from None
    if not isinstance(data, dict):
        raise InvalidResponseError(
            f"UseGrant API answered {status} with JSON that is not an object"
        )
    problem = _token_problem(data)
    if problem is not None:
        raise InvalidResponseError(
            f"UseGrant API answered {status} with an unusable token ({problem})"
        )
    try:
        return AccessToken.model_validate({**data, "type": "Bearer"})
    except ValidationError as exc:
        # Never chain or quote the ValidationError: its text can hold input values.
        problems = short_errors(exc, whole="body")
        raise InvalidResponseError(
            f"UseGrant API answered {status} with an unusable token ({problems})"
        ) from None


def _token_problem(data: dict[str, object]) -> str | None:
    """Say what makes a token answer unusable before the model sees it, if anything.

    The model's own JWT check lets a trailing newline through (``$`` matches before
    one), and a token goes into HTTP headers downstream: only the bare three-part
    base64url form, of bounded size, is accepted here.
    """
    token = data.get("accessToken")
    if isinstance(token, str):
        if len(token) > MAX_TOKEN_CHARS:
            return f"accessToken: longer than {MAX_TOKEN_CHARS} characters"
        if not _BARE_JWT.fullmatch(token):
            return "accessToken: not a bare JWT (three base64url parts and nothing else)"
    kind = data.get("type", "Bearer")  # absent: the API's only type
    if not isinstance(kind, str) or kind.lower() != "bearer":
        return "type: not Bearer"
    return None


def _api_error(answer: Answer, api_key: str) -> UseGrantAPIError:
    status = answer.status
    code: str | None = None
    message: str | None = None
    try:
        data = _json_of(answer)
    except ValueError:
        data = None
    if isinstance(data, dict):
        raw_code, raw_message = data.get("code"), data.get("message")
        if isinstance(raw_code, (str, int)) and not isinstance(raw_code, bool):
            code = _scrub(str(raw_code), api_key) or None
        if isinstance(raw_message, str):
            message = _scrub(raw_message, api_key) or None
    if message is None:  # the reason phrase and media type come from the server too
        message = _scrub(_describe_body(answer), api_key)
    retry_after = parse_retry_after(answer.headers.get("Retry-After"))
    return api_error_for_status(status, code, message, retry_after)


def _describe_body(answer: Answer) -> str:
    reason = answer.reason or f"HTTP {answer.status}"
    if answer.refused is not None:
        return f"{reason} (a body {answer.refused}, not read)"
    if not answer.body.strip():
        return f"{reason} (empty body)"
    media = answer.headers.get("Content-Type", "").split(";")[0].strip() or "unknown"
    return f"{reason} (a {media} body without a UseGrant error code)"
