"""Checks and error text shared by the sinks that talk to a remote secret store.

Nothing here imports an SDK: the Vault and AWS sinks import theirs inside methods.
"""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from usegrant_flows.api.checks import URL_RULE, url_problem
from usegrant_flows.api.redact import redact
from usegrant_flows.sinks.base import SinkError

__all__ = ["ENDPOINT_RULE", "check_endpoint", "origin_of", "require_sdk", "scrub"]

#: What an endpoint URL may be: the token travels to it.
ENDPOINT_RULE = f"{URL_RULE}, without user info, query or fragment"
_MAX_DETAIL = 200


def check_endpoint(name: str, value: str) -> str:
    """Return ``value`` without a trailing slash after checking where it points.

    The rule is the library's one URL rule for a base URL (:func:`url_problem`).

    Args:
        name: The field's name, for the message.
        value: An absolute URL.

    Raises:
        ValueError: Naming the field and the allowed forms (never quoting the value).

    Example:
        >>> check_endpoint("url", "http://127.0.0.1:8200/")
        'http://127.0.0.1:8200'
    """
    problem = url_problem(value, base=True)
    if problem:
        raise ValueError(f"{name} must be {ENDPOINT_RULE}; {problem}")
    return value.rstrip("/")


def origin_of(url: str) -> str:
    """Return ``scheme://host[:port]`` of a checked URL (for descriptions).

    Example:
        >>> origin_of("https://vault.example.com:8200/x")
        'https://vault.example.com:8200'
    """
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def scrub(text: object) -> str:
    """Return server-provided text on one line, secrets removed, at most 200 characters.

    Every secret the library holds and anything JWT-shaped is cut out
    (:func:`usegrant_flows.api.redact.redact`).

    Example:
        >>> scrub("bad  token eyJa.eyJb.c   here")
        'bad token [redacted JWT] here'
    """
    cleaned = redact(str(text))
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > _MAX_DETAIL:
        cleaned = cleaned[: _MAX_DETAIL - 3] + "..."
    return cleaned


def require_sdk(module: str, extra: str, where: str) -> None:
    """Check that an optional SDK is installed (a preflight: nothing is sent).

    Args:
        module: The module to import, e.g. ``"hvac"``.
        extra: The usegrant-flows extra that installs it, e.g. ``"vault"``.
        where: The sink's ``describe()``, first in the message.

    Raises:
        SinkError: ``"<where>: needs <module>: pip install 'usegrant-flows[<extra>]'"``.
    """
    try:
        importlib.import_module(module)
    except ImportError:
        raise SinkError(f"{where}: needs {module}: pip install 'usegrant-flows[{extra}]'") from None
