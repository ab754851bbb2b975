"""An AWS Systems Manager Parameter Store ``SecureString`` parameter holding the token.

Each write is ``PutParameter`` with ``Type=SecureString`` and ``Overwrite=True`` (a new
parameter version, encrypted with ``kms_key_id`` or the account's ``alias/aws/ssm``
key). The value is the bare JWT. Consumers read it with ``GetParameter`` and
``WithDecryption=True``.

Size limits: a Standard parameter holds at most 4,096 characters, an Advanced one at
most 8,192. A longer token is refused before any request (AWS would refuse it too;
test doubles such as moto do not), with the tier and the length in the message.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from usegrant_flows._links import DOCUMENTATION_URL, LOGO_URL
from usegrant_flows.api.models import AccessToken
from usegrant_flows.sinks._aws import (
    AwsTokenSink,
    aws_error,
    aws_tags,
    error_code,
    is_sdk_error,
    tag_dict,
)
from usegrant_flows.sinks.base import (
    SinkError,
    TokenMetadata,
    token_from_parts,
)

__all__ = ["MAX_VALUE_LENGTH", "AwsSsmParameterTokenSink"]

#: Longest value of a parameter per tier, in characters.
MAX_VALUE_LENGTH = {"Standard": 4096, "Advanced": 8192}

_NAME = re.compile(r"^/?[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*$")
_MAX_DEPTH = 15


class AwsSsmParameterTokenSink(AwsTokenSink):
    """Writes UseGrant access tokens to an SSM Parameter Store SecureString parameter.

    See the module docstring for the parameter's type, tiers and size limits.

    Example:
        >>> from usegrant_flows.sinks import AwsSsmParameterTokenSink
        >>> AwsSsmParameterTokenSink(parameter_name="/usegrant/aws").describe()
        'aws-ssm-parameter /usegrant/aws (Standard)'

        Load a saved sink (needs a Prefect API holding the block, hence the skip):

        >>> sink = AwsSsmParameterTokenSink.load("BLOCK_NAME")  # doctest: +SKIP
    """

    _block_type_name = "UseGrant AWS SSM Parameter Token Sink"
    _block_type_slug = "usegrant-aws-ssm-parameter-token-sink"
    _logo_url = LOGO_URL
    _documentation_url = DOCUMENTATION_URL
    _description = "Writes UseGrant access tokens to an AWS SSM SecureString parameter."

    kind: ClassVar[str] = "aws-ssm-parameter"
    readable: ClassVar[bool] = True
    aws_service: ClassVar[str] = "ssm"

    parameter_name: str = Field(
        description=(
            "Parameter name, e.g. /usegrant/aws: letters, digits and _ . - in at most 15 "
            "'/'-separated levels, up to 2048 characters; not starting with aws or ssm."
        )
    )
    tier: Literal["Standard", "Advanced"] = Field(
        default="Standard",
        description="Standard (values up to 4,096 characters) or Advanced (8,192; charged).",
    )

    @field_validator("parameter_name")
    @classmethod
    def _check_parameter_name(cls, value: str) -> str:
        rule = (
            "parameter_name must be letters, digits and _ . - in at most 15 '/'-separated "
            "levels (up to 2048 characters), not starting with aws or ssm"
        )
        first = value.lstrip("/").split("/")[0].lower()
        if (
            len(value) > 2048
            or not _NAME.match(value)
            or value.count("/") > _MAX_DEPTH
            or first.startswith(("aws", "ssm"))
        ):
            raise ValueError(rule)
        return value

    def describe(self) -> str:
        """Return ``"aws-ssm-parameter <name> (<tier>[, <region>])"``."""
        region = f", {self.region_name}" if self.region_name else ""
        return f"aws-ssm-parameter {self.parameter_name} ({self.tier}{region})"

    def write(self, token: AccessToken, metadata: TokenMetadata | None = None) -> None:
        """Overwrite the parameter with the JWT, as a SecureString.

        Args:
            token: The token to store.
            metadata: ``target``: the target's name, carried by the parameter's tags.

        Raises:
            SinkError: When the token is longer than the tier allows (before any
                request), or AWS refused the write or could not be reached; the
                previous version stays in place.
            ConfigurationError: When the credentials block is missing or no region is
                known, or (``NotOwnedError``) the parameter exists without our tags and
                the sink does not say ``adopt``: nothing is written.
        """
        value = token.access_token.get_secret_value()
        limit = MAX_VALUE_LENGTH[self.tier]
        if len(value) > limit:
            hint = " (use tier Advanced for up to 8,192)" if self.tier == "Standard" else ""
            raise SinkError(
                f"{self.describe()}: the token is {len(value):,} characters, more than the "
                f"{limit:,} a {self.tier} parameter holds{hint}; nothing was sent"
            )
        options = {"KeyId": self.kms_key_id} if self.kms_key_id else {}
        client = self._client(self.aws_service)
        action = "list_tags_for_resource"
        try:
            tags = self._read_tags(client)
            mark = self._judge(tags, metadata)
            exists = tags is not None
            action = "put_parameter"
            if exists:
                client.put_parameter(
                    Name=self.parameter_name,
                    Value=value,
                    Type="SecureString",
                    Overwrite=True,
                    Tier=self.tier,
                    **options,
                )
                if mark:  # adopted: ours from now on
                    action = "add_tags_to_resource"
                    client.add_tags_to_resource(
                        ResourceType="Parameter",
                        ResourceId=self.parameter_name,
                        Tags=aws_tags(metadata),
                    )
            else:  # created with our tags at once (AWS refuses Tags with Overwrite)
                client.put_parameter(
                    Name=self.parameter_name,
                    Value=value,
                    Type="SecureString",
                    Overwrite=False,
                    Tier=self.tier,
                    Tags=aws_tags(metadata),
                    **options,
                )
        except Exception as exc:
            if not is_sdk_error(exc):
                raise
            raise aws_error(self.describe(), action, exc) from None
        finally:
            client.close()

    def _read_tags(self, client: Any) -> dict[str, str] | None:
        """Return the parameter's tags, or ``None`` when there is no such parameter."""
        try:
            answer = client.list_tags_for_resource(
                ResourceType="Parameter", ResourceId=self.parameter_name
            )
        except Exception as exc:
            if error_code(exc) in ("InvalidResourceId", "ParameterNotFound"):
                return None
            raise
        return tag_dict(answer.get("TagList"))

    def read(self) -> AccessToken | None:
        """Return the token in the parameter (decrypted), or ``None`` when it does not exist.

        The expiry comes from the JWT's ``exp`` claim.

        Raises:
            SinkError: When AWS refused or could not be reached, or the value is not a JWT.
        """
        client = self._client(self.aws_service)
        try:
            answer = client.get_parameter(Name=self.parameter_name, WithDecryption=True)
        except Exception as exc:
            if error_code(exc) == "ParameterNotFound":
                return None
            if not is_sdk_error(exc):
                raise
            raise aws_error(self.describe(), "get_parameter", exc) from None
        finally:
            client.close()
        try:
            value = answer["Parameter"]["Value"]
            if not isinstance(value, str):
                raise ValueError("no string value")
            return token_from_parts(value.strip())
        except (KeyError, ValueError):
            raise SinkError(f"{self.describe()}: the parameter does not hold a JWT") from None
