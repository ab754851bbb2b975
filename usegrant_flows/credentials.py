"""The ``UseGrant Credentials`` block: an API key and where to send it.

Save it once (UI or code), load it by name in flows, and ask it for a client::

    UseGrantCredentials(api_key="usegrant_...").save("prod")
    client = UseGrantCredentials.load("prod").get_client()

The key stays a :class:`~pydantic.SecretStr`: Prefect stores it encrypted-at-rest as a
secret field and shows it obfuscated in the UI; it never appears in a repr or a log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect.blocks.abstract import CredentialsBlock
from pydantic import ConfigDict, Field, SecretStr, field_validator

from usegrant_flows._links import DOCUMENTATION_URL, LOGO_URL
from usegrant_flows.api.checks import URL_RULE, url_problem
from usegrant_flows.api.client import (
    AsyncUseGrantClient,
    RequestLimiter,
    RetryPolicy,
    UseGrantClient,
)
from usegrant_flows.api.models import DEFAULT_BASE_URL
from usegrant_flows.api.redact import register_secret
from usegrant_flows.loading import aload_block, load_block
from usegrant_flows.quota.budget import DEFAULT_REQUESTS, DEFAULT_WINDOW, Budget

if TYPE_CHECKING:
    from usegrant_flows.quota.limiter import QuotaLimiter

__all__ = ["UseGrantCredentials", "aload_credentials", "load_credentials"]

_MISSING_HINT = (
    "create it in the UI (Blocks > UseGrant Credentials) or with "
    "UseGrantCredentials(...).save(name)"
)


class UseGrantCredentials(CredentialsBlock):
    """UseGrant API credentials: an API key, the API's base URL and request limits.

    ``get_client()`` and ``get_async_client()`` build a fresh client on every call
    (the caller closes it: use it as a context manager). The key and base URL are
    checked then, by the client: a malformed key, or a base URL that is not https
    (plain http is allowed to a loopback host only), raises
    :class:`~usegrant_flows.api.errors.ConfigurationError` before any request.

    ``max_requests_per_hour`` is the request budget of the API key, shared by every
    flow and deployment that uses this block (UseGrant's default quota is 1000
    requests per hour and key); retries count against it. Every request of a client
    from this block takes a slot first: from the Prefect global concurrency limit
    ``usegrant-quota-<block name>`` when the block is saved and a Prefect server is
    configured (shared by all workers), else from an in-process limiter (see
    :mod:`usegrant_flows.quota.limiter`).

    Attributes:
        api_key: The UseGrant API key (``usegrant_...`` or ``uga_...``).
        base_url: The API's base URL, default ``https://sdk.usegrant.dev``.
        timeout: Seconds allowed for one HTTP attempt (> 0), default 10.
        max_requests_per_hour: Request budget of the key per hour (>= 1), default 1000.
        quota_window_seconds: The budget's window in seconds (> 0), default 3600; only
            change it for emulators and tests.
        jwks_url: Where the signing keys of the tokens minted with this key are (https,
            or http to a loopback host). Empty: OpenID Connect discovery at the token's
            issuer (or at ``base_url`` when that is a loopback emulator).

    Example:
        Load saved credentials by name (needs a Prefect API holding the block, which
        a docstring test does not have, hence the skip):

        >>> from usegrant_flows import UseGrantCredentials
        >>> credentials = UseGrantCredentials.load("BLOCK_NAME")  # doctest: +SKIP

        Or build them in code and get a client (no request is sent here):

        >>> credentials = UseGrantCredentials(
        ...     api_key="usegrant_example", base_url="http://127.0.0.1:8080", timeout=5
        ... )
        >>> with credentials.get_client() as client:
        ...     client.base_url
        'http://127.0.0.1:8080'
    """

    # A rejected value (a key pasted in the wrong field, say) never shows in an error.
    model_config = ConfigDict(hide_input_in_errors=True)

    _block_type_name = "UseGrant Credentials"
    _block_type_slug = "usegrant-credentials"
    _logo_url = LOGO_URL
    _documentation_url = DOCUMENTATION_URL
    _description = "API key and endpoint for minting UseGrant access tokens."

    api_key: SecretStr = Field(
        description="UseGrant API key, created in the UseGrant app (usegrant_... or uga_...).",
    )
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        description="Base URL of the UseGrant API: https, or http to a loopback host only.",
    )
    timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds allowed for one HTTP attempt (greater than 0).",
    )
    max_requests_per_hour: int = Field(
        default=DEFAULT_REQUESTS,
        ge=1,
        description=(
            "Requests per hour this API key may make, shared by every flow using this block "
            "(UseGrant's default quota: 1000)."
        ),
    )

    quota_window_seconds: float = Field(
        default=DEFAULT_WINDOW,
        gt=0,
        title="Quota window (seconds)",
        description=(
            "Advanced: the window max_requests_per_hour applies to. Only change it for "
            "emulators and tests; UseGrant's quota window is 3600 s."
        ),
    )

    jwks_url: str | None = Field(
        default=None,
        title="JWKS URL",
        description=(
            "Advanced: URL of the issuer's JWK set used to verify minted tokens (https, or "
            "http to a loopback host). Empty: found by OpenID Connect discovery."
        ),
    )

    @field_validator("api_key")
    @classmethod
    def _remember_key(cls, value: SecretStr) -> SecretStr:
        register_secret(value)  # scrubbed from any error text from now on
        return value

    @field_validator("jwks_url", mode="before")
    @classmethod
    def _secure_jwks_url(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None  # an emptied UI field means "not set"
        if value is not None:
            problem = url_problem(value)
            if problem:
                raise ValueError(f"jwks_url must be {URL_RULE}; {problem}")
        return value

    def budget(self) -> Budget:
        """Return the request budget this block declares for its key."""
        return Budget(self.max_requests_per_hour, self.quota_window_seconds)

    def quota_limiter(self) -> QuotaLimiter:
        """Return the request budget of this block's key (see :mod:`usegrant_flows.quota.limiter`).

        A saved block with a Prefect server configured uses the global concurrency
        limit ``usegrant-quota-<block name>``; otherwise the key's in-process limiter.
        """
        from usegrant_flows.quota.limiter import QuotaLimiter

        name = getattr(self, "_block_document_name", None)
        return QuotaLimiter(self.api_key, self.budget(), name)

    def get_client(
        self, *, retry: RetryPolicy | None = None, limiter: RequestLimiter | None = None
    ) -> UseGrantClient:
        """Return a new synchronous client; the caller closes it.

        Args:
            retry: Retry policy of the client; default :class:`RetryPolicy`.
            limiter: Called before every HTTP attempt; default :meth:`quota_limiter`,
                the key's request budget.

        Raises:
            ConfigurationError: When the key or the base URL is malformed.
        """
        return UseGrantClient(
            api_key=self.api_key,
            base_url=self.base_url,
            timeout=self.timeout,
            retry=retry,
            limiter=limiter if limiter is not None else self.quota_limiter(),
        )

    def get_async_client(
        self, *, retry: RetryPolicy | None = None, limiter: RequestLimiter | None = None
    ) -> AsyncUseGrantClient:
        """Return a new asynchronous client; the caller closes it (``aclose``).

        Args:
            retry: Retry policy of the client; default :class:`RetryPolicy`.
            limiter: Awaited before every HTTP attempt; default :meth:`quota_limiter`.

        Raises:
            ConfigurationError: When the key or the base URL is malformed.
        """
        return AsyncUseGrantClient(
            api_key=self.api_key,
            base_url=self.base_url,
            timeout=self.timeout,
            retry=retry,
            limiter=limiter if limiter is not None else self.quota_limiter(),
        )


async def aload_credentials(name: str) -> UseGrantCredentials:
    """Load a saved :class:`UseGrantCredentials` block by name.

    Raises:
        ConfigurationError: When no such block exists (the message says how to create it).
    """
    return await aload_block(
        UseGrantCredentials, name, what="credentials block", hint=_MISSING_HINT
    )


def load_credentials(name: str) -> UseGrantCredentials:
    """Sync form of :func:`aload_credentials`."""
    return load_block(UseGrantCredentials, name, what="credentials block", hint=_MISSING_HINT)
