"""Search for a secret and its base64 forms in bytes, text and directory trees.

Prefect persists a result as base64 of a cloudpickle, wrapped every 76 characters
(``base64.encodebytes``) and usually inside a JSON string, where each newline is the
two characters ``\\n``. A plain grep misses such a copy, so besides the literal value
we look for the standard and URL-safe base64 encodings of the secret at all three byte
alignments, in the haystack with real and escaped line breaks removed.

For alignment ``k`` (the secret starting ``k`` bytes into a 3-byte group) we keep only
the base64 characters whose 6 bits all come from the secret: the characters on the
edges also depend on the neighbouring bytes, which we do not know.
"""

from __future__ import annotations

import base64
import math
from pathlib import Path

__all__ = ["base64_needles", "find_secret", "scan_tree"]

_BREAKS = (b"\\r\\n", b"\\n", b"\\r", b"\r", b"\n")


def base64_needles(secret: str) -> dict[str, bytes]:
    """Return ``{form name: bytes that must appear}`` for every base64 form of ``secret``.

    Form names are ``base64@k`` and ``base64url@k`` for alignments ``k`` = 0, 1, 2.
    """
    raw = secret.encode("utf-8")
    needles: dict[str, bytes] = {}
    for k in range(3):
        first = math.ceil(8 * k / 6)
        last = (8 * (k + len(raw))) // 6
        for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
            encoded = encode(b"\0" * k + raw + b"\0\0\0")
            needles[f"{name}@{k}"] = encoded[first:last]
    return needles


def find_secret(haystack: bytes | str, secret: str) -> list[str]:
    """Return the forms of ``secret`` found in ``haystack`` (empty list: no leak).

    Args:
        haystack: Bytes or text to search.
        secret: The secret's literal value (at least 8 characters, or the base64
            needles would be too short to mean anything).

    Returns:
        ``"literal"`` and/or ``"base64@k"`` / ``"base64url@k"`` names, in that order.
    """
    if len(secret) < 8:
        raise ValueError("secret must be at least 8 characters long to search for it")
    data = haystack.encode("utf-8") if isinstance(haystack, str) else haystack
    found = ["literal"] if secret.encode("utf-8") in data else []
    joined = data
    for line_break in _BREAKS:
        joined = joined.replace(line_break, b"")
    found.extend(name for name, needle in base64_needles(secret).items() if needle in joined)
    return found


def scan_tree(path: Path | str, secret: str) -> dict[str, list[str]]:
    """Search every regular file under ``path`` (symlinks not followed).

    Returns:
        ``{file path relative to path: forms found}`` for the files with a hit.
    """
    root = Path(path)
    hits: dict[str, list[str]] = {}
    for file in sorted(root.rglob("*")):
        if file.is_symlink() or not file.is_file():
            continue
        try:
            data = file.read_bytes()
        except OSError:
            continue  # vanished or unreadable while we walked
        forms = find_secret(data, secret)
        if forms:
            hits[str(file.relative_to(root))] = forms
    return hits
