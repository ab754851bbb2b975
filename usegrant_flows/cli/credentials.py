"""``usegrant-flows credentials save NAME``: the API key into a Prefect credentials block.

The key is read where every other command reads it (``USEGRANT_API_KEY``, a ``.env``
file, the keyring written by ``usegrant-flows login``), never from the command line,
so it shows in no shell history or process list. The block is saved to the Prefect API
of the current profile (``PREFECT_API_URL``); flows and fleets name it.
"""

from __future__ import annotations

import sys

from cyclopts import App

from usegrant_flows.api.errors import ConfigurationError

__all__ = ["app"]

app = App(name="credentials", help="Save the API key as a UseGrant Credentials block.")


@app.command
def save(
    name: str,
    /,
    *,
    base_url: str | None = None,
    jwks_url: str | None = None,
    max_requests_per_hour: int | None = None,
    overwrite: bool = False,
) -> int:
    """Save the API key (USEGRANT_API_KEY, .env or keyring) as a credentials block.

    Args:
        name: Name of the block (fleets name it in ``credentials``).
        base_url: API base URL (default USEGRANT_BASE_URL or https://sdk.usegrant.dev).
        jwks_url: Where the issuer's signing keys are; default OpenID Connect discovery.
        max_requests_per_hour: The key's request budget (default 1000, UseGrant's).
        overwrite: Replace an existing block of that name.
    """
    from pydantic import ValidationError

    from usegrant_flows.api.checks import short_errors
    from usegrant_flows.api.settings import load_settings
    from usegrant_flows.credentials import UseGrantCredentials

    settings = load_settings(**({"base_url": base_url} if base_url is not None else {}))
    fields: dict[str, object] = {
        "api_key": settings.require_api_key(),
        "base_url": settings.base_url,
        "jwks_url": jwks_url,
    }
    if max_requests_per_hour is not None:
        fields["max_requests_per_hour"] = max_requests_per_hour
    try:
        block = UseGrantCredentials(**fields)
    except ValidationError as exc:
        raise ConfigurationError(f"credentials block {name!r}: {short_errors(exc)}") from None
    try:
        block.save(name, overwrite=overwrite)
    except ValueError as exc:
        if "already in use" in str(exc):  # Prefect's words for an existing name
            raise ConfigurationError(
                f"credentials block '{name}' already exists; pass --overwrite to replace it"
            ) from None
        raise ConfigurationError(f"credentials block '{name}': {exc}") from None
    print(f"Saved credentials block '{name}' for {settings.base_url}.", file=sys.stderr)
    return 0
