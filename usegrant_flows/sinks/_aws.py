"""What the AWS sinks share: their common fields and the error text.

``boto3``, ``botocore`` and ``prefect_aws`` (``pip install 'usegrant-flows[aws]'``) are
imported when a method runs, never when this module is imported.

The client comes from :func:`usegrant_flows._aws_client.build_client`, shared with the
STS exchange: the session of a saved ``prefect_aws.AwsCredentials`` block (by name) with
the block's ``aws_client_parameters`` applied as prefect-aws's ``get_client`` does, or
boto3's default chain when no block is named; the sink's own ``endpoint_url`` and
``region_name`` win over the block's. Every client has bounded timeouts and retries
(``connect_timeout`` and ``read_timeout`` of ``timeout`` seconds, ``max_attempts``
attempts in botocore's ``standard`` retry mode), and botocore's DEBUG records that quote
bodies are dropped.
"""

from __future__ import annotations

import re
from abc import ABC
from typing import Any, ClassVar

from pydantic import Field, field_validator

from usegrant_flows._aws_client import (
    BODY_LOGGERS,
    RedactBodies,
    build_client,
    client_config,
    error_code,
    is_sdk_error,
)
from usegrant_flows._aws_names import REGION
from usegrant_flows.sinks._remote import check_endpoint, require_sdk, scrub
from usegrant_flows.sinks.base import SinkError, TokenSink

__all__ = [
    "BODY_LOGGERS",
    "AwsTokenSink",
    "RedactBodies",
    "aws_error",
    "build_client",
    "client_config",
    "error_code",
    "is_sdk_error",
]

# Prefect block document names: lowercase letters, digits and dashes.
_BLOCK_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_KMS_KEY = re.compile(r"^[A-Za-z0-9:/_+=,.@-]{1,2048}$")


def aws_error(where: str, action: str, exc: BaseException) -> SinkError:
    """Return a one-line :class:`SinkError` for a botocore exception.

    Args:
        where: The sink's ``describe()``.
        action: What failed, e.g. ``"put_secret_value"``.
        exc: The botocore exception (its message is scrubbed of JWT-shaped text).
    """
    code = error_code(exc)
    if code is not None:
        message = (getattr(exc, "response", {}).get("Error") or {}).get("Message") or ""
        detail = f"{code}: {scrub(message)}" if message else code
    else:
        detail = f"{type(exc).__name__}: {scrub(exc)}"
    return SinkError(f"{where}: {action} failed: {detail}")


class AwsTokenSink(TokenSink, ABC):
    """Fields and the client of the AWS sinks (Secrets Manager, SSM Parameter Store).

    ``aws_credentials`` is the name of a saved ``AwsCredentials`` block, so no AWS
    secret is stored in this block.
    """

    #: The boto3 service the sink writes to.
    aws_service: ClassVar[str]

    aws_credentials: str | None = Field(
        default=None,
        description=(
            "Name of a saved AWS Credentials block (prefect-aws); empty: boto3's default "
            "chain (environment, shared files, instance or pod role)."
        ),
    )
    region_name: str | None = Field(
        default=None, description="AWS region, e.g. eu-west-1; empty: the credentials' default."
    )
    endpoint_url: str | None = Field(
        default=None,
        description=(
            "Endpoint override (VPC endpoint, tests): https, or http to loopback; empty: "
            "the credentials block's client parameters, else AWS's."
        ),
    )
    kms_key_id: str | None = Field(
        default=None, description="KMS key id, ARN or alias; empty: the AWS managed key."
    )
    timeout: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Connect and read timeout of each AWS call, in seconds (0 < t <= 300).",
    )
    max_attempts: int = Field(
        default=3, ge=1, le=10, description="Attempts per AWS call, first included (1..10)."
    )

    @field_validator("aws_credentials")
    @classmethod
    def _check_block_name(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not _BLOCK_NAME.match(value):
            raise ValueError(
                "aws_credentials must be the name of a saved AwsCredentials block "
                "(lowercase letters, digits and dashes)"
            )
        return value

    @field_validator("region_name")
    @classmethod
    def _check_region(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not REGION.match(value):
            raise ValueError(f"region_name must look like eu-west-1, got {value!r}")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        return None if value in (None, "") else check_endpoint("endpoint_url", value)

    @field_validator("kms_key_id")
    @classmethod
    def _check_kms_key(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not _KMS_KEY.match(value):
            raise ValueError("kms_key_id must be a KMS key id, key ARN, alias name or alias ARN")
        return value

    def preflight(self) -> None:
        """Check, sending nothing to AWS, that a write could be attempted.

        The SDK is installed, the named ``AwsCredentials`` block loads, and a region is
        known: building the client checks all three.

        Raises:
            SinkError: When ``usegrant-flows[aws]`` is not installed.
            ConfigurationError: When the block is missing or no region is known.
        """
        require_sdk("boto3", "aws", self.describe())
        require_sdk("prefect_aws", "aws", self.describe())
        self._client(self.aws_service)

    def _client(self, service: str) -> Any:
        return build_client(
            service,
            aws_credentials=self.aws_credentials,
            region_name=self.region_name,
            endpoint_url=self.endpoint_url,
            timeout=self.timeout,
            max_attempts=self.max_attempts,
        )
