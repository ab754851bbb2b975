"""What a worker lets any fleet write to: folders for files, hosts for tokens sent away.

Two settings, read from the worker's own environment (set them on the worker, or in the
work pool's job variables ``env``), never from a run's parameters or a fleet:

* ``USEGRANT_FILE_ROOT``: one or more folders, separated by ``os.pathsep`` (``:`` on
  POSIX). When set, a file sink's path must resolve, after symbolic links and ``..``,
  inside one of them.
* ``USEGRANT_ALLOWED_ENDPOINTS``: ``host[:port]`` entries separated by commas or spaces
  (``vault.internal:8200, secretsmanager.eu-west-1.amazonaws.com``; IPv6 in brackets).
  When set, a Vault, AWS or webhook endpoint must match one: an entry without a port
  allows every port of its host.

Unset means unbounded (what the fleet says goes). Every sink checks its bound in its
preflight, before any request, so a target outside them fails at no cost.

Example:
    >>> bounds = WorkerBounds(allowed_endpoints="vault.internal:8200, [::1]")
    >>> bounds.endpoint_problem("https://vault.internal:8200/v1")
    >>> bounds.endpoint_problem("http://[::1]:9000")
    >>> bounds.endpoint_problem("https://attacker.example")
    'https://attacker.example is not in USEGRANT_ALLOWED_ENDPOINTS (vault.internal:8200, [::1])'
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic_settings import BaseSettings, SettingsConfigDict

from usegrant_flows.api.errors import ConfigurationError

__all__ = ["WorkerBounds", "check_endpoint_allowed", "check_file_allowed", "worker_bounds"]

_SPLIT = re.compile(r"[\s,]+")
_DEFAULT_PORTS = {"https": 443, "http": 80}
_MAX_LISTED = 160  # characters of the allowed list quoted in a message


class WorkerBounds(BaseSettings):
    """The worker's bounds (see the module docstring); both unset: unbounded.

    Attributes:
        file_root: ``USEGRANT_FILE_ROOT``: folders separated by ``os.pathsep``.
        allowed_endpoints: ``USEGRANT_ALLOWED_ENDPOINTS``: ``host[:port]`` entries
            separated by commas or spaces.
    """

    model_config = SettingsConfigDict(env_prefix="USEGRANT_", extra="ignore")

    file_root: str | None = None
    allowed_endpoints: str | None = None

    def roots(self) -> list[Path]:
        """Return the file roots, resolved (symbolic links followed); empty: unbounded."""
        if not self.file_root or not self.file_root.strip():
            return []
        parts = [part.strip() for part in self.file_root.split(os.pathsep) if part.strip()]
        return [Path(os.path.realpath(Path(part).expanduser())) for part in parts]

    def endpoints(self) -> list[tuple[str, int | None]]:
        """Return the allowed ``(host, port or None)`` pairs; empty: unbounded."""
        pairs: list[tuple[str, int | None]] = []
        for entry in _SPLIT.split(self.allowed_endpoints or ""):
            if not entry:
                continue
            parts = urlsplit(f"//{entry}")
            try:
                port = parts.port
            except ValueError:
                raise ConfigurationError(
                    f"USEGRANT_ALLOWED_ENDPOINTS: {entry[:80]!r} is not host[:port]"
                ) from None
            if not parts.hostname:
                raise ConfigurationError(
                    f"USEGRANT_ALLOWED_ENDPOINTS: {entry[:80]!r} is not host[:port]"
                )
            pairs.append((parts.hostname.lower(), port))
        return pairs

    def file_problem(self, path: Path) -> str | None:
        """Say why ``path`` is outside the file roots, or return ``None`` when allowed."""
        roots = self.roots()
        if not roots:
            return None
        resolved = Path(os.path.realpath(Path(path).expanduser()))
        if any(resolved == root or resolved.is_relative_to(root) for root in roots):
            return None
        listed = os.pathsep.join(map(str, roots))[:_MAX_LISTED]
        where = f" (it resolves to {resolved})" if resolved != Path(path) else ""
        return f"{path}{where} is outside USEGRANT_FILE_ROOT ({listed})"

    def endpoint_problem(self, url: str) -> str | None:
        """Say why ``url`` is not an allowed endpoint, or return ``None`` when allowed."""
        allowed = self.endpoints()
        if not allowed:
            return None
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        try:
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            port = None
        for allowed_host, allowed_port in allowed:
            if host == allowed_host and allowed_port in (None, port):
                return None
        shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        listed = (self.allowed_endpoints or "").strip()[:_MAX_LISTED]
        return f"{shown} is not in USEGRANT_ALLOWED_ENDPOINTS ({listed})"


def worker_bounds() -> WorkerBounds:
    """Read the bounds from this process's environment now (a worker may change them)."""
    return WorkerBounds()


def check_file_allowed(path: Path) -> None:
    """Refuse a file path outside ``USEGRANT_FILE_ROOT`` (when set).

    Raises:
        ConfigurationError: Naming the path, what it resolves to and the roots.
    """
    problem = worker_bounds().file_problem(path)
    if problem:
        raise ConfigurationError(f"{problem}: this worker writes token files only there")


def check_endpoint_allowed(url: str) -> None:
    """Refuse an endpoint outside ``USEGRANT_ALLOWED_ENDPOINTS`` (when set).

    Raises:
        ConfigurationError: Naming the endpoint's origin (never its path or user info).
    """
    problem = worker_bounds().endpoint_problem(url)
    if problem:
        raise ConfigurationError(f"{problem}: this worker sends tokens only there")
