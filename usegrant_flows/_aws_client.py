"""The boto3 client the AWS sinks and the STS exchange share, built as prefect-aws does.

``boto3``, ``botocore`` and ``prefect_aws`` (``pip install 'usegrant-flows[aws]'``) are
imported when a function runs, never when this module is imported.

A client comes from the session of a ``prefect_aws.AwsCredentials`` block (saved, by
name, or an instance), or from boto3's default chain (environment, shared files,
instance role) when there is no block. Like prefect-aws's own
``AwsCredentials.get_client``, the block's ``aws_client_parameters`` apply
(``endpoint_url``, ``verify``, ``verify_cert_path``, ``use_ssl``, ``api_version``,
``config``), through prefect-aws's ``get_params_override``; what the caller sets itself
wins: its ``endpoint_url`` and ``region_name``, and the bounded timeouts and retries of
:func:`client_config`, merged over the block's ``config`` (botocore ``Config.merge``).
Every endpoint, the block's included, must be https, or http to a loopback host.

At DEBUG level botocore logs every request's parameters (a ``SecretString``, an STS
``WebIdentityToken``) and every response body (temporary keys). Building a client
installs :class:`RedactBodies` on the loggers that do it (and on ``botocore.auth``,
whose canonical request quotes the session token header): their DEBUG records are
dropped, so turning on DEBUG logging never writes a token or a key to a log.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from usegrant_flows.api.checks import URL_RULE, url_problem
from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.api.redact import register_secret
from usegrant_flows.loading import load_block

if TYPE_CHECKING:
    from prefect_aws import AwsCredentials

__all__ = [
    "BODY_LOGGERS",
    "RedactBodies",
    "block_parameters",
    "build_client",
    "client_config",
    "error_code",
    "install_log_redaction",
    "is_sdk_error",
]

#: botocore loggers whose DEBUG records carry request parameters, response bodies or
#: (the signer's canonical request) the session token header.
BODY_LOGGERS = ("botocore.endpoint", "botocore.parsers", "botocore.auth")


class RedactBodies(logging.Filter):
    """Drop the DEBUG records of botocore that quote request parameters or bodies."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Return False (drop) for DEBUG and lower records, True for the others."""
        return record.levelno > logging.DEBUG


def install_log_redaction() -> None:
    """Attach one :class:`RedactBodies` to each of :data:`BODY_LOGGERS` (idempotent)."""
    for name in BODY_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactBodies) for f in target.filters):
            target.addFilter(RedactBodies())


def client_config(timeout: float, max_attempts: int, *, unsigned: bool = False) -> Any:
    """Return a botocore ``Config`` with bounded timeouts and retries.

    Args:
        timeout: Connect and read timeout of each attempt, in seconds (> 0).
        max_attempts: Attempts in total, first one included (1..10).
        unsigned: Send requests unsigned (STS ``AssumeRoleWithWebIdentity``).
    """
    from botocore import UNSIGNED
    from botocore.config import Config

    options: dict[str, Any] = {
        "connect_timeout": timeout,
        "read_timeout": timeout,
        "retries": {"max_attempts": max_attempts, "mode": "standard"},
    }
    if unsigned:
        options["signature_version"] = UNSIGNED
    return Config(**options)


def block_parameters(block: AwsCredentials | None) -> dict[str, Any]:
    """Return the keyword arguments a block's ``aws_client_parameters`` give a client.

    The same dictionary prefect-aws's ``AwsCredentials.get_client`` passes to boto3
    (``AwsClientParameters.get_params_override``: unset fields left out, ``config`` as a
    botocore ``Config``), after checking the block's ``endpoint_url``.

    Args:
        block: The credentials block, or ``None`` (no parameters).

    Raises:
        ConfigurationError: The block's ``endpoint_url`` is neither https nor http to a
            loopback host (the URL itself is not quoted).
    """
    if block is None:
        return {}
    parameters: dict[str, Any] = dict(block.aws_client_parameters.get_params_override())
    endpoint = parameters.get("endpoint_url")
    if endpoint is not None:
        problem = url_problem(str(endpoint), base=True)
        if problem:
            raise ConfigurationError(
                f"the AwsCredentials block's aws_client_parameters.endpoint_url must be "
                f"{URL_RULE}; {problem}"
            )
    return parameters


def _block(aws_credentials: str | AwsCredentials) -> AwsCredentials:
    from prefect_aws import AwsCredentials

    if isinstance(aws_credentials, AwsCredentials):
        return aws_credentials
    return load_block(
        AwsCredentials, aws_credentials, what="AwsCredentials block", hint="save it first"
    )


def build_client(
    service: str,
    *,
    aws_credentials: str | AwsCredentials | None,
    region_name: str | None,
    endpoint_url: str | None,
    timeout: float,
    max_attempts: int,
    unsigned: bool = False,
) -> Any:
    """Return a boto3 client for ``service`` (no request is sent).

    Args:
        service: The boto3 service name, e.g. ``"secretsmanager"``.
        aws_credentials: A ``prefect_aws.AwsCredentials`` block or the name of a saved
            one, or ``None`` for boto3's default credential chain. Its
            ``aws_client_parameters`` apply; unsigned, its keys are not used.
        region_name: The region; ``None`` takes the block's, then boto3's default.
        endpoint_url: Endpoint override (VPC endpoint, tests); ``None``: the block's
            ``aws_client_parameters.endpoint_url``, else AWS's.
        timeout: Connect and read timeout of each attempt, in seconds.
        max_attempts: Attempts in total (botocore standard retry mode).
        unsigned: Send unsigned requests (no credentials are looked up).

    Raises:
        ConfigurationError: When the block does not exist, its endpoint is not
            allowed, or no region is known.
    """
    import boto3
    from botocore.exceptions import NoRegionError

    install_log_redaction()
    block = _block(aws_credentials) if aws_credentials is not None else None
    if block is not None:  # its keys: scrubbed from any error text from now on
        register_secret(block.aws_secret_access_key, block.aws_session_token)
    options = block_parameters(block)
    session = block.get_boto3_session() if block is not None and not unsigned else boto3.Session()
    ours = client_config(timeout, max_attempts, unsigned=unsigned)
    theirs = options.pop("config", None)
    options["config"] = theirs.merge(ours) if theirs is not None else ours
    if endpoint_url is not None:
        options["endpoint_url"] = endpoint_url
    region = region_name or (block.region_name if block is not None else None)
    try:
        return session.client(service, region_name=region or session.region_name, **options)
    except NoRegionError:
        raise ConfigurationError(
            f"no AWS region for {service}: set region_name, the credentials block's "
            "region or AWS_REGION"
        ) from None


def error_code(exc: BaseException) -> str | None:
    """Return the AWS error code of a botocore ``ClientError``, else ``None``."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = (response.get("Error") or {}).get("Code")
        return str(code) if code else None
    return None


def is_sdk_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from botocore (an answer or a transport failure)."""
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, (BotoCoreError, ClientError))
