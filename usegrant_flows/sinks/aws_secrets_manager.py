"""An AWS Secrets Manager secret holding the token.

Each write stores a new ``SecretString`` version (never ``SecretBinary``), which
Secrets Manager labels ``AWSCURRENT``; the previous one becomes ``AWSPREVIOUS``. The
secret is created on the first write when it does not exist (with ``kms_key_id`` when
set); after that ``PutSecretValue`` adds versions. ``format`` picks the value:

* ``raw``: the bare JWT;
* ``json``: ``{"accessToken":"<JWT>","expiresAt":"<ISO>","type":"Bearer"}``, the same
  body as the file sink's json format.

Consumers read it with ``GetSecretValue`` (``AWSCURRENT``), e.g. from a Lambda or an
ECS task definition's ``secrets``.
"""

from __future__ import annotations

import json
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

__all__ = ["AwsSecretsManagerTokenSink"]

_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
_ARN = re.compile(
    r"^arn:aws(?:-[a-z]+)*:secretsmanager:[a-z]{2}(?:-[a-z]+)+-\d{1,2}:\d{12}:secret:"
    r"[A-Za-z0-9/_+=.@-]{1,512}$"
)


class AwsSecretsManagerTokenSink(AwsTokenSink):
    """Writes UseGrant access tokens to an AWS Secrets Manager secret (SecretString).

    See the module docstring for the stored value. No AWS secret is held here:
    ``aws_credentials`` names a saved ``AwsCredentials`` block (or is empty for
    boto3's default chain).

    Example:
        >>> from usegrant_flows.sinks import AwsSecretsManagerTokenSink
        >>> sink = AwsSecretsManagerTokenSink(secret_name="usegrant/aws", region_name="eu-west-1")
        >>> sink.describe()
        'aws-secrets-manager usegrant/aws (raw, eu-west-1)'

        Load a saved sink (needs a Prefect API holding the block, hence the skip):

        >>> sink = AwsSecretsManagerTokenSink.load("BLOCK_NAME")  # doctest: +SKIP
    """

    _block_type_name = "UseGrant AWS Secrets Manager Token Sink"
    _block_type_slug = "usegrant-aws-secrets-manager-token-sink"
    _logo_url = LOGO_URL
    _documentation_url = DOCUMENTATION_URL
    _description = "Writes UseGrant access tokens to an AWS Secrets Manager secret."

    kind: ClassVar[str] = "aws-secrets-manager"
    readable: ClassVar[bool] = True
    aws_service: ClassVar[str] = "secretsmanager"

    secret_name: str = Field(
        description="Secret name (letters, digits and /_+=.@-, up to 512) or full secret ARN."
    )
    format: Literal["raw", "json"] = Field(
        default="raw",
        description="raw: the bare JWT; json: {accessToken, expiresAt, type}.",
    )

    @field_validator("secret_name")
    @classmethod
    def _check_secret_name(cls, value: str) -> str:
        if value.startswith("arn:"):
            if not _ARN.match(value):
                raise ValueError(
                    "secret_name is not a valid Secrets Manager ARN "
                    "(arn:aws:secretsmanager:<region>:<12-digit account>:secret:<name>)"
                )
        elif not _NAME.match(value):
            raise ValueError(
                "secret_name must be 1..512 letters, digits and /_+=.@- characters, or a secret ARN"
            )
        return value

    def describe(self) -> str:
        """Return ``"aws-secrets-manager <name or ARN> (<format>[, <region>])"``."""
        region = f", {self.region_name}" if self.region_name else ""
        return f"aws-secrets-manager {self.secret_name} ({self.format}{region})"

    def render(self, token: AccessToken) -> str:
        """Return the exact ``SecretString`` stored for ``token`` (reveals the token)."""
        wire = token.to_wire()
        if self.format == "raw":
            return wire["accessToken"]
        body = {
            "accessToken": wire["accessToken"],
            "expiresAt": wire["expiresAt"],
            "type": wire["type"],
        }
        return json.dumps(body, separators=(",", ":"))

    def parse(self, value: str) -> AccessToken:
        """Parse a stored ``SecretString`` in this sink's format.

        Raises:
            ValueError: When it is not a token in ``format``.
        """
        if self.format == "raw":
            return token_from_parts(value.strip())
        body = json.loads(value)
        if not isinstance(body, dict) or not isinstance(body.get("accessToken"), str):
            raise ValueError("no string accessToken key")
        return token_from_parts(body["accessToken"], body.get("expiresAt"), body.get("type"))

    def write(self, token: AccessToken, metadata: TokenMetadata | None = None) -> None:
        """Store the token as the secret's new ``AWSCURRENT`` version.

        Args:
            token: The token to store.
            metadata: ``target``: the target's name, carried by the secret's tags.

        Raises:
            ConfigurationError: When the credentials block is missing or no region is
                known, or (``NotOwnedError``) the secret exists without our tags and
                the sink does not say ``adopt``: nothing is written.
            SinkError: When AWS refused the write or could not be reached; the previous
                version stays current.
        """
        value = self.render(token)
        client = self._client(self.aws_service)
        action = "describe_secret"
        try:
            tags = self._read_tags(client)
            mark = self._judge(tags, metadata)
            if tags is None and not self.secret_name.startswith("arn:"):
                action = "create_secret"
                options = {"KmsKeyId": self.kms_key_id} if self.kms_key_id else {}
                try:
                    client.create_secret(
                        Name=self.secret_name,
                        SecretString=value,
                        Description="UseGrant access token (usegrant-flows)",
                        Tags=aws_tags(metadata),
                        **options,
                    )
                    return
                except Exception as exc:
                    if error_code(exc) != "ResourceExistsException":
                        raise
                # Created by another writer meanwhile: replaced only if it is ours.
                action = "describe_secret"
                mark = self._check_owner(client, metadata)
            action = "put_secret_value"
            client.put_secret_value(SecretId=self.secret_name, SecretString=value)
            if mark:  # adopted: ours from now on
                action = "tag_resource"
                client.tag_resource(SecretId=self.secret_name, Tags=aws_tags(metadata))
        except Exception as exc:
            if not is_sdk_error(exc):
                raise
            raise aws_error(self.describe(), action, exc) from None
        finally:
            client.close()

    def _read_tags(self, client: Any) -> dict[str, str] | None:
        """Return the secret's tags, or ``None`` when there is no such secret."""
        try:
            answer = client.describe_secret(SecretId=self.secret_name)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        return tag_dict(answer.get("Tags"))

    def read(self) -> AccessToken | None:
        """Return the token of the secret's ``AWSCURRENT`` version.

        Returns:
            The token, or ``None`` when the secret does not exist.

        Raises:
            SinkError: When AWS refused or could not be reached, or the value is not a
                token in ``format`` (or is a ``SecretBinary``).
        """
        client = self._client(self.aws_service)
        try:
            answer = client.get_secret_value(SecretId=self.secret_name, VersionStage="AWSCURRENT")
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            if not is_sdk_error(exc):
                raise
            raise aws_error(self.describe(), "get_secret_value", exc) from None
        finally:
            client.close()
        value = answer.get("SecretString")
        try:
            if not isinstance(value, str):
                raise ValueError("no SecretString")
            return self.parse(value)
        except ValueError:
            # No chaining: the parse error could quote the secret.
            raise SinkError(
                f"{self.describe()}: AWSCURRENT does not hold a token in {self.format} format"
            ) from None
