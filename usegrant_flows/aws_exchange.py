"""Trade a freshly minted UseGrant token for temporary AWS credentials, inside a flow.

:func:`exchange_aws_credentials` (sync) and :func:`aexchange_aws_credentials` (async)
mint a token with :func:`~usegrant_flows.tasks.create_access_token`'s machinery (same
client, request budget and client-level retries) and call STS
``AssumeRoleWithWebIdentity`` with it. That STS call needs no AWS credentials, so it
is sent unsigned. An ``AwsCredentials`` block passed as ``aws_credentials`` lends its
``aws_client_parameters`` (a VPC endpoint for STS, ``verify``, botocore ``config``) to
that call, as prefect-aws's ``get_client`` would, and to the answer. The answer is a
``prefect_aws.AwsCredentials`` (a subclass whose session token is a ``SecretStr`` as
well as the secret access key, see :func:`temporary_credentials_class`) holding the
temporary keys, ready for any prefect-aws task, ``get_client()`` or
``get_boto3_session()``.

The AWS role's trust policy must allow ``sts:AssumeRoleWithWebIdentity`` for the
UseGrant issuer (an IAM OIDC identity provider for ``iss``) with ``aud`` and ``sub``
conditions matching the client.

Both tasks use ``cache_policy=NO_CACHE`` and ``persist_result=False``: neither the
token nor the keys ever reach Prefect's result storage. They log the token's
fingerprint, the role ARN and the credentials' expiry, never a key or the token.
Arguments are checked before any request.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import SecretStr

from usegrant_flows._aws_client import build_client, error_code, is_sdk_error
from usegrant_flows._aws_names import REGION, check_role_arn
from usegrant_flows.api.errors import ConfigurationError, UseGrantError
from usegrant_flows.api.models import AccessToken
from usegrant_flows.credentials import UseGrantCredentials
from usegrant_flows.sinks._remote import check_endpoint, scrub
from usegrant_flows.tasks import acreate_access_token, create_access_token

if TYPE_CHECKING:
    import boto3
    from prefect_aws import AwsCredentials

__all__ = [
    "DEFAULT_TOKEN_LIFETIME",
    "MAX_DURATION",
    "MIN_DURATION",
    "AwsExchangeError",
    "aexchange_aws_credentials",
    "exchange_aws_credentials",
    "temporary_credentials_class",
]

#: Shortest and longest ``duration_seconds`` STS accepts (15 minutes, 12 hours).
MIN_DURATION = 900
MAX_DURATION = 43200
#: Lifetime of the minted token, in seconds: it only has to reach STS.
DEFAULT_TOKEN_LIFETIME = 300

_SESSION_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]{2,64}$")
_STS_TIMEOUT = 10.0
_STS_ATTEMPTS = 3


class AwsExchangeError(UseGrantError):
    """Raised when STS refused the web identity token or could not be reached."""


_TEMPORARY_CLASS: type[AwsCredentials] | None = None


def temporary_credentials_class() -> type[AwsCredentials]:
    """Return the ``AwsCredentials`` subclass whose session token is a ``SecretStr`` too.

    prefect-aws types ``aws_session_token`` as a plain ``str``, which its repr shows.
    The subclass holds it as a ``SecretStr`` and unwraps it only when it builds a boto3
    session, so neither temporary secret shows in a repr, a log line or an error. It is
    built on first use, so that importing this module does not import prefect-aws.
    """
    global _TEMPORARY_CLASS
    if _TEMPORARY_CLASS is not None:
        return _TEMPORARY_CLASS
    import boto3
    from prefect_aws import AwsCredentials
    from pydantic import Field

    class TemporaryAwsCredentials(AwsCredentials):  # type: ignore[misc]
        """Temporary AWS credentials from STS; every secret part is a ``SecretStr``.

        Example:
            >>> from usegrant_flows.aws_exchange import temporary_credentials_class
            >>> TemporaryAwsCredentials = temporary_credentials_class()
            >>> credentials = TemporaryAwsCredentials.load("BLOCK_NAME")  # doctest: +SKIP
        """

        _block_type_name = "UseGrant Temporary AWS Credentials"
        _block_type_slug = "usegrant-temporary-aws-credentials"
        _description = "Temporary AWS credentials obtained from STS with a UseGrant token."

        aws_session_token: SecretStr | None = Field(
            default=None, description="The temporary session token, kept secret."
        )

        def get_boto3_session(self) -> boto3.Session:
            """Return a boto3 session holding the temporary keys (no role chaining)."""
            secret = self.aws_secret_access_key
            token = self.aws_session_token
            return boto3.Session(
                aws_access_key_id=self.aws_access_key_id,
                aws_secret_access_key=secret.get_secret_value() if secret else None,
                aws_session_token=token.get_secret_value() if token else None,
                region_name=self.region_name,
            )

    _TEMPORARY_CLASS = TemporaryAwsCredentials
    return TemporaryAwsCredentials


def _check_arguments(
    role_arn: object,
    session_name: object,
    duration_seconds: object,
    region_name: object,
    sts_endpoint_url: object,
) -> None:
    """Raise ConfigurationError, naming the argument, for anything STS would refuse."""
    check_role_arn(role_arn)
    if not isinstance(session_name, str) or not _SESSION_NAME.match(session_name):
        raise ConfigurationError(
            "session_name must be 2..64 characters of letters, digits and +=,.@_-"
        )
    if (
        isinstance(duration_seconds, bool)
        or not isinstance(duration_seconds, int)
        or not MIN_DURATION <= duration_seconds <= MAX_DURATION
    ):
        raise ConfigurationError(
            f"duration_seconds must be an integer from {MIN_DURATION} to {MAX_DURATION} "
            f"seconds (15 minutes to 12 hours), got {duration_seconds!r}"
        )
    if region_name is not None and (
        not isinstance(region_name, str) or not REGION.match(region_name)
    ):
        raise ConfigurationError("region_name must look like eu-west-1")
    if sts_endpoint_url is not None:
        try:
            check_endpoint("sts_endpoint_url", str(sts_endpoint_url))
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None


def _assume_role(
    token: AccessToken,
    *,
    role_arn: str,
    session_name: str,
    duration_seconds: int,
    region_name: str | None,
    sts_endpoint_url: str | None,
    aws_credentials: AwsCredentials | None,
) -> tuple[AwsCredentials, str]:
    """Call STS AssumeRoleWithWebIdentity (unsigned); return the block and a log line."""
    client = build_client(
        "sts",
        aws_credentials=aws_credentials,
        region_name=region_name or "us-east-1",
        endpoint_url=sts_endpoint_url,
        timeout=_STS_TIMEOUT,
        max_attempts=_STS_ATTEMPTS,
        unsigned=True,
    )
    try:
        answer = client.assume_role_with_web_identity(
            RoleArn=role_arn,
            RoleSessionName=session_name,
            WebIdentityToken=token.access_token.get_secret_value(),
            DurationSeconds=duration_seconds,
        )
    except Exception as exc:
        if not is_sdk_error(exc):
            raise
        code = error_code(exc)
        message = (getattr(exc, "response", {}).get("Error") or {}).get("Message") or ""
        detail = f"{code}: {scrub(message)}" if code else f"{type(exc).__name__}: {scrub(exc)}"
        raise AwsExchangeError(
            f"STS AssumeRoleWithWebIdentity for {role_arn} with token {token.fingerprint} "
            f"failed: {detail}"
        ) from None
    finally:
        client.close()
    keys: dict[str, Any] = answer["Credentials"]
    credentials = temporary_credentials_class()(
        aws_access_key_id=keys["AccessKeyId"],
        aws_secret_access_key=SecretStr(keys["SecretAccessKey"]),
        aws_session_token=SecretStr(keys["SessionToken"]),
        region_name=region_name,
        **(
            {"aws_client_parameters": aws_credentials.aws_client_parameters}
            if aws_credentials is not None
            else {}
        ),
    )
    expiration: Any = keys.get("Expiration")
    when = expiration.isoformat() if isinstance(expiration, datetime) else str(expiration)
    line = (
        f"Assumed {role_arn} with UseGrant token fingerprint={token.fingerprint}; "
        f"temporary credentials until {when}"
    )
    return credentials, line


_TASK_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}


@task(**_TASK_OPTIONS)
def exchange_aws_credentials(
    usegrant_credentials: UseGrantCredentials | None,
    provider_id: str | UUID,
    client_id: str | UUID,
    role_arn: str,
    session_name: str = "usegrant-flows",
    duration_seconds: int = 3600,
    region_name: str | None = None,
    sts_endpoint_url: str | None = None,
    expires_in: int = DEFAULT_TOKEN_LIFETIME,
    aws_credentials: AwsCredentials | None = None,
) -> AwsCredentials:
    """Mint a token and exchange it at STS for temporary AWS credentials.

    Args:
        usegrant_credentials: The credentials block; ``None`` reads the ``USEGRANT_*``
            settings (environment, ``.env``, keyring).
        provider_id: The UseGrant provider's UUID.
        client_id: The UseGrant client's UUID (its audience must be the one the role's
            trust policy expects, usually ``sts.amazonaws.com``).
        role_arn: The IAM role to assume, ``arn:aws:iam::<account>:role/<name>``.
        session_name: Role session name, 2..64 characters of letters, digits, ``+=,.@_-``.
        duration_seconds: Lifetime of the AWS credentials, 900..43200 seconds (and at
            most the role's maximum session duration).
        region_name: Region of the STS endpoint and of the returned block; ``None``:
            the global endpoint (``us-east-1``) and no region in the block.
        sts_endpoint_url: STS endpoint override (VPC endpoint, tests): https, or http
            to a loopback host.
        expires_in: Lifetime of the minted token in seconds, 1..172800 (default 300:
            it only has to reach STS).
        aws_credentials: A ``prefect_aws.AwsCredentials`` block whose
            ``aws_client_parameters`` (endpoint, ``verify``, ``config``...) apply to the
            STS call, as prefect-aws's ``get_client`` applies them (``sts_endpoint_url``
            still wins), and are copied into the result; its keys are not used.

    Returns:
        A ``prefect_aws.AwsCredentials`` (not saved) with the temporary keys; the
        secret access key and the session token are ``SecretStr``.

    Raises:
        ConfigurationError: For a bad argument, before any request.
        UseGrantAPIError: When the mint failed.
        AwsExchangeError: When STS refused the token or could not be reached.
    """
    _check_arguments(role_arn, session_name, duration_seconds, region_name, sts_endpoint_url)
    token: AccessToken = create_access_token.fn(
        usegrant_credentials, provider_id=provider_id, client_id=client_id, expires_in=expires_in
    )
    credentials, line = _assume_role(
        token,
        role_arn=role_arn,
        session_name=session_name,
        duration_seconds=duration_seconds,
        region_name=region_name,
        sts_endpoint_url=sts_endpoint_url,
        aws_credentials=aws_credentials,
    )
    get_run_logger().info(line)
    return credentials


@task(**_TASK_OPTIONS)
async def aexchange_aws_credentials(
    usegrant_credentials: UseGrantCredentials | None,
    provider_id: str | UUID,
    client_id: str | UUID,
    role_arn: str,
    session_name: str = "usegrant-flows",
    duration_seconds: int = 3600,
    region_name: str | None = None,
    sts_endpoint_url: str | None = None,
    expires_in: int = DEFAULT_TOKEN_LIFETIME,
    aws_credentials: AwsCredentials | None = None,
) -> AwsCredentials:
    """Async form of :func:`exchange_aws_credentials`: same arguments, result and errors.

    The mint is async; the STS call runs in a worker thread.
    """
    import anyio.to_thread

    _check_arguments(role_arn, session_name, duration_seconds, region_name, sts_endpoint_url)
    token: AccessToken = await acreate_access_token.fn(
        usegrant_credentials, provider_id=provider_id, client_id=client_id, expires_in=expires_in
    )

    def call() -> tuple[AwsCredentials, str]:
        return _assume_role(
            token,
            role_arn=role_arn,
            session_name=session_name,
            duration_seconds=duration_seconds,
            region_name=region_name,
            sts_endpoint_url=sts_endpoint_url,
            aws_credentials=aws_credentials,
        )

    credentials, line = await anyio.to_thread.run_sync(call)
    get_run_logger().info(line)
    return credentials
