"""Scrubbing by value: every secret the library holds is cut out of any error text.

A secret (an API key, a Vault token, an AppRole secret id, an AWS secret key, a webhook's
URL, headers or signing key) is registered the moment the library takes hold of it:
when a credentials block, a sink block or a client is built, or when a login hands back
a token. :func:`redact` then replaces each registered value, and anything shaped like a
JWT, in any text: it runs on every failure reason of a rotation (so on what reaches
logs, states, events and artifacts) and on every error text a remote store sends back.
One mechanism in one place, instead of each sink knowing which of its secrets an error
might quote.

The registry lives in the process, holds at most :data:`MAX_SECRETS` values (the oldest
are forgotten first) and ignores values shorter than :data:`MIN_LENGTH` characters,
which would redact ordinary words.

Example:
    >>> register_secret("s.hvs-0123456789abcdef")
    >>> redact("permission denied for token s.hvs-0123456789abcdef")
    'permission denied for token [redacted]'
    >>> redact("got eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln back")
    'got [redacted JWT] back'
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterable, Mapping

from pydantic import SecretBytes, SecretStr

__all__ = ["MAX_SECRETS", "MIN_LENGTH", "redact", "register_secret", "register_secrets_of"]

#: Values shorter than this are not registered (they would redact ordinary words).
MIN_LENGTH = 8
#: Most values remembered per process; the oldest are forgotten first.
MAX_SECRETS = 4096

_JWT_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_lock = threading.Lock()
_secrets: dict[str, None] = {}  # an ordered set: insertion order is age
_ordered: tuple[str, ...] = ()  # longest first, so a value inside another goes last


def _plain(value: object) -> list[str]:
    if isinstance(value, (SecretStr, SecretBytes)):
        value = value.get_secret_value()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [text for item in value.values() for text in _plain(item)]
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in _plain(item)]
    return []


def register_secret(*values: object) -> None:
    """Remember secret values so :func:`redact` cuts them out of any text.

    Args:
        values: Strings, ``SecretStr``/``SecretBytes``, or mappings and lists of them
            (a webhook's headers); ``None`` and values under :data:`MIN_LENGTH`
            characters are skipped. Each value's base64 form is remembered too (an
            ``Authorization: Basic`` header carries it so).
    """
    global _ordered
    found: list[str] = []
    for value in values:
        for text in _plain(value):
            text = text.strip()
            if len(text) >= MIN_LENGTH:
                found.append(text)
                found.append(base64.b64encode(text.encode()).decode().rstrip("="))
    if not found:
        return
    with _lock:
        changed = False
        for text in found:
            if text not in _secrets:
                _secrets[text] = None
                changed = True
        while len(_secrets) > MAX_SECRETS:
            del _secrets[next(iter(_secrets))]
        if changed:
            _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def register_secrets_of(model: object, names: Iterable[str]) -> None:
    """Register the values of a model's fields ``names`` (missing or ``None`` skipped)."""
    register_secret(*(getattr(model, name, None) for name in names))


def redact(text: str) -> str:
    """Return ``text`` with every registered secret and every JWT-shaped part replaced.

    Args:
        text: Any text: an exception's message, a server's error body.

    Returns:
        The same text, secrets as ``[redacted]``, JWTs as ``[redacted JWT]``.
    """
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    return _JWT_LIKE.sub("[redacted JWT]", text)
