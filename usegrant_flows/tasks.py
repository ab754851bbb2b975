"""Prefect tasks that mint UseGrant access tokens.

:func:`create_access_token` (sync) and :func:`acreate_access_token` (async) take the
same arguments and return an :class:`~usegrant_flows.api.models.AccessToken`; a sync flow
calls the sync task and never receives a coroutine.

Two layers of retries, and how they multiply:

* the client retries transient failures (connection errors, timeouts, 408, 429 with
  ``Retry-After``, 5xx) inside one task run: at most 5 HTTP attempts, and no attempt
  starts after 30 s (its timeout is cut to what is left of those 30 s);
* Prefect retries the task run only when the final error is still transient
  (:func:`usegrant_flows.api.errors.is_transient`): 2 task retries, after about 10 s and
  30 s (jitter factor 0.5: at most 15 s and 45 s).

Worst case for one call: 3 task runs x 5 attempts = **15 HTTP attempts**, in at most
3 x 30 s + 15 s + 45 s = **150 seconds**. A 400, 401/403 or 404, or bad input
(:class:`~usegrant_flows.api.errors.ConfigurationError`) fails the task run at once:
1 HTTP attempt (0 for bad input), no task retry.

Every HTTP attempt first takes a slot of the API key's request budget: the credentials
block's (see :mod:`usegrant_flows.quota.limiter`), or for the settings' key an in-process limit
of UseGrant's default 1000 requests per hour.

The tasks share one client per credentials within a process (sync) or event loop
(async), so task runs reuse its connections instead of a handshake each
(:func:`usegrant_flows.client_pool.task_client`); calls of one key also share its gate: a
429 with ``Retry-After`` pauses them all, and a 401 fails the calls in flight, after
which the next call starts with a fresh client.

Every token a task returns has passed the rotation's checks (``verify="full"``, the
default: claims and signature against the issuer's keys; ``"claims"``: the claims only;
``"off"``: none, see :mod:`usegrant_flows.api.trust`). A token that fails is an
:class:`~usegrant_flows.api.errors.InvalidResponseError` (not retried) and is returned
to nobody. The issuer's keys are cached per process, so a task called in a loop fetches
them once.

Both tasks use ``cache_policy=NO_CACHE`` and ``persist_result=False``: a token is
never written to Prefect's result storage. They log the token's fingerprint, ``jti``
and expiry only.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun

from usegrant_flows.api.errors import is_transient
from usegrant_flows.api.models import AccessToken
from usegrant_flows.api.settings import load_settings
from usegrant_flows.api.trust import TrustMode, acheck_issued, check_issued, check_mode
from usegrant_flows.client_pool import atask_client, task_client
from usegrant_flows.credentials import UseGrantCredentials

__all__ = [
    "TASK_RETRIES",
    "TASK_RETRY_DELAYS",
    "acreate_access_token",
    "create_access_token",
    "retry_if_transient",
]

#: Task-level retries on top of the client's own (see the module docstring).
TASK_RETRIES = 2
#: Seconds before each task retry (before jitter).
TASK_RETRY_DELAYS = [10.0, 30.0]
#: Prefect's jitter: a delay stays below ``delay * (1 + factor)``.
TASK_RETRY_JITTER = 0.5


def retry_if_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn``: retry the task run only for a transient error.

    Args:
        task: The task (unused).
        task_run: The failed task run (unused).
        state: The Failed state; its data is the exception the task raised.

    Returns:
        True when the exception is transient (connection error, 408, 429, 5xx).
    """
    error = state.data
    return isinstance(error, BaseException) and is_transient(error)


_TASK_OPTIONS: dict[str, Any] = {
    "cache_policy": NO_CACHE,
    "persist_result": False,
    "retries": TASK_RETRIES,
    "retry_delay_seconds": TASK_RETRY_DELAYS,
    "retry_jitter_factor": TASK_RETRY_JITTER,
    "retry_condition_fn": retry_if_transient,
}


def _jwks_url(credentials: UseGrantCredentials | None, mode: TrustMode) -> str | None:
    """The configured JWK set URL of the credentials (``USEGRANT_JWKS_URL`` for settings)."""
    if mode != "full":
        return None
    return credentials.jwks_url if credentials is not None else load_settings().jwks_url


def _log_minted(token: AccessToken) -> AccessToken:
    get_run_logger().info(
        "Minted UseGrant access token fingerprint=%s jti=%s expires_at=%s",
        token.fingerprint,
        token.jti,
        token.expires_at.isoformat(),
    )
    return token


@task(**_TASK_OPTIONS)
def create_access_token(
    usegrant_credentials: UseGrantCredentials | None = None,
    *,
    provider_id: str | UUID,
    client_id: str | UUID,
    expires_in: int | None = None,
    use_jwt_type: bool | None = None,
    audience_as_array: bool | None = None,
    force_default_domain: bool | None = None,
    verify: TrustMode = "full",
) -> AccessToken:
    """Mint an access token for a provider's client.

    Args:
        usegrant_credentials: The credentials block; ``None`` reads
            :class:`~usegrant_flows.api.settings.UseGrantSettings` (``USEGRANT_API_KEY``,
            ``.env``, the OS keyring; ``USEGRANT_BASE_URL``).
        provider_id: The provider's UUID.
        client_id: The client's UUID.
        expires_in: Token lifetime in seconds, 1..172800 (48 h); ``None`` lets the API
            choose.
        use_jwt_type: True sets the JWT header ``typ`` to ``jwt`` instead of ``at+jwt``.
        audience_as_array: True makes the ``aud`` claim an array.
        force_default_domain: True makes ``iss`` the provider's default domain.
        verify: ``"full"`` (claims and signature, the default), ``"claims"`` (claims
            only, when the issuer's keys cannot be reached) or ``"off"``.

    Returns:
        The token, once it passed the checks (kept in memory only: never persisted as
        a Prefect result).

    Raises:
        ConfigurationError: For bad arguments or credentials, before any request.
        InvalidResponseError: The API's answer, or the token in it, failed the checks
            (``alg: none``, a signature that does not verify, an ``exp`` already past...).
        UseGrantAPIError: For an error answer, after retries when transient.
        UseGrantConnectionError: When the API could not be reached, after retries.

    Example:
        In a flow, here against the local emulator (in real life, ``credentials`` is
        ``UseGrantCredentials.load("BLOCK_NAME")``):

        >>> from prefect import flow
        >>> from usegrant_flows import UseGrantCredentials, create_access_token
        >>> from usegrant_flows.emulator import run_emulator
        >>> with run_emulator() as emu:
        ...     credentials = UseGrantCredentials(api_key=emu.api_key, base_url=emu.base_url)
        ...     @flow
        ...     def mint() -> str:
        ...         token = create_access_token(
        ...             credentials,
        ...             provider_id="10000000-0000-4000-8000-000000000001",
        ...             client_id="20000000-0000-4000-8000-000000000001",
        ...             expires_in=3600,
        ...         )
        ...         return token.fingerprint
        ...     len(mint())
        12
    """
    mode = check_mode(verify)
    client = task_client(usegrant_credentials)
    token = client.create_token(
        provider_id,
        client_id,
        expires_in=expires_in,
        use_jwt_type=use_jwt_type,
        audience_as_array=audience_as_array,
        force_default_domain=force_default_domain,
    )
    jwks_url = _jwks_url(usegrant_credentials, mode)
    return _log_minted(check_issued(token, mode=mode, base_url=client.base_url, jwks_url=jwks_url))


@task(**_TASK_OPTIONS)
async def acreate_access_token(
    usegrant_credentials: UseGrantCredentials | None = None,
    *,
    provider_id: str | UUID,
    client_id: str | UUID,
    expires_in: int | None = None,
    use_jwt_type: bool | None = None,
    audience_as_array: bool | None = None,
    force_default_domain: bool | None = None,
    verify: TrustMode = "full",
) -> AccessToken:
    """Async form of :func:`create_access_token`, with the same arguments and errors.

    Example:
        In an async flow, against the local emulator:

        >>> import asyncio
        >>> from prefect import flow
        >>> from usegrant_flows import UseGrantCredentials, acreate_access_token
        >>> from usegrant_flows.emulator import run_emulator
        >>> with run_emulator() as emu:
        ...     credentials = UseGrantCredentials(api_key=emu.api_key, base_url=emu.base_url)
        ...     @flow
        ...     async def mint() -> str:
        ...         token = await acreate_access_token(
        ...             credentials,
        ...             provider_id="10000000-0000-4000-8000-000000000001",
        ...             client_id="20000000-0000-4000-8000-000000000001",
        ...         )
        ...         return token.fingerprint
        ...     len(asyncio.run(mint()))
        12
    """
    mode = check_mode(verify)
    client = await atask_client(usegrant_credentials)
    token = await client.create_token(
        provider_id,
        client_id,
        expires_in=expires_in,
        use_jwt_type=use_jwt_type,
        audience_as_array=audience_as_array,
        force_default_domain=force_default_domain,
    )
    jwks_url = _jwks_url(usegrant_credentials, mode)
    checked = await acheck_issued(token, mode=mode, base_url=client.base_url, jwks_url=jwks_url)
    return _log_minted(checked)
