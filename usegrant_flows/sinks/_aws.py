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
from abc import ABC, abstractmethod
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
from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.api.worker_bounds import check_endpoint_allowed
from usegrant_flows.sinks._remote import check_endpoint, require_sdk, scrub
from usegrant_flows.sinks.base import (
    ADOPT_DESCRIPTION,
    SinkError,
    TokenMetadata,
    TokenSink,
    marks_problem,
    not_owned,
    owner_marks,
)

__all__ = [
    "BODY_LOGGERS",
    "AwsTokenSink",
    "RedactBodies",
    "aws_error",
    "aws_tags",
    "build_client",
    "client_config",
    "error_code",
    "is_sdk_error",
    "tag_dict",
]

# Prefect block document names: lowercase letters, digits and dashes.
_BLOCK_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_KMS_KEY = re.compile(r"^[A-Za-z0-9:/_+=,.@-]{1,2048}$")


def aws_tags(metadata: TokenMetadata | None) -> list[dict[str, str]]:
    """Return our marks as an AWS tag list (``[{"Key": ..., "Value": ...}]``)."""
    return [{"Key": key, "Value": value} for key, value in owner_marks(metadata).items()]


def tag_dict(tags: Any) -> dict[str, str]:
    """Return an AWS tag list as a dict (malformed entries skipped)."""
    found: dict[str, str] = {}
    for tag in tags or []:
        if isinstance(tag, dict) and isinstance(tag.get("Key"), str):
            found[tag["Key"]] = str(tag.get("Value", ""))
    return found


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
    adopt: bool = Field(default=False, title="Adopt what is there", description=ADOPT_DESCRIPTION)

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

    def preflight(self, metadata: TokenMetadata | None = None) -> None:
        """Check, writing nothing, that a write could be attempted and would be ours.

        The SDK is installed, the named ``AwsCredentials`` block loads, a region is
        known and the endpoint is one the worker allows (``USEGRANT_ALLOWED_ENDPOINTS``):
        building the client checks all four. Then an existing secret or parameter must
        carry our tags (``managed-by=usegrant-flows`` and this target), unless
        ``adopt``: one read-only AWS call.

        Args:
            metadata: ``target``: the target's name, which the tags must carry.

        Raises:
            SinkError: When ``usegrant-flows[aws]`` is not installed, or AWS refuses
                or cannot be reached.
            ConfigurationError: When the block is missing, no region is known, the
                endpoint is not allowed, or
                (:class:`~usegrant_flows.sinks.base.NotOwnedError`) the destination is
                not ours.
        """
        require_sdk("boto3", "aws", self.describe())
        require_sdk("prefect_aws", "aws", self.describe())
        client = self._client(self.aws_service)
        try:
            self._check_owner(client, metadata)
        except Exception as exc:
            if not is_sdk_error(exc):
                raise
            raise aws_error(self.describe(), "preflight", exc) from None
        finally:
            client.close()

    def _check_owner(self, client: Any, metadata: TokenMetadata | None) -> bool:
        """Refuse a destination without our tags (unless adopt); return whether to tag it.

        Returns:
            True when it is new or adopted: the write puts our tags on it.

        Raises:
            NotOwnedError: Naming the destination, what its tags lack and the way out.
        """
        return self._judge(self._read_tags(client), metadata)

    def _judge(self, tags: dict[str, str] | None, metadata: TokenMetadata | None) -> bool:
        """:meth:`_check_owner` on tags already read (``None``: no such destination)."""
        if tags is None:
            return True
        problem = marks_problem(tags, metadata)
        if problem is None:
            return False
        if self.adopt:
            return True
        raise not_owned(f"{self.describe()} {problem}")

    @abstractmethod
    def _read_tags(self, client: Any) -> dict[str, str] | None:
        """Return the destination's tags, or ``None`` when it does not exist."""

    def _client(self, service: str) -> Any:
        client = build_client(
            service,
            aws_credentials=self.aws_credentials,
            region_name=self.region_name,
            endpoint_url=self.endpoint_url,
            timeout=self.timeout,
            max_attempts=self.max_attempts,
        )
        try:
            # The endpoint the client will really call (the sink's, the credentials
            # block's or AWS's own for the region) must be one the worker allows.
            check_endpoint_allowed(client.meta.endpoint_url)
        except ConfigurationError:
            client.close()
            raise
        return client
