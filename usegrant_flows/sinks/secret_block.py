"""A Prefect ``Secret`` block holding the token, for flows that need a bearer token.

The stored value is the bare JWT. ``Secret.get()`` tries ``json.loads`` on string
values; a JWT is not JSON (it starts with ``eyJ``, not a quote or brace), so
``Secret.load(name).get()`` gives consumers the JWT string itself, ready for an
``Authorization: Bearer`` header. The expiry is read back from the JWT's ``exp`` claim.
"""

from __future__ import annotations

import re
from typing import ClassVar

from prefect.blocks.system import Secret
from prefect.exceptions import ObjectNotFound
from pydantic import Field, SecretStr, field_validator

from usegrant_flows._links import DOCUMENTATION_URL, LOGO_URL
from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.api.models import AccessToken
from usegrant_flows.sinks.base import (
    ADOPT_DESCRIPTION,
    SinkError,
    TokenMetadata,
    TokenSink,
    not_owned,
    token_from_parts,
)

__all__ = ["SecretBlockSink"]

# Prefect block document names: lowercase letters, digits and dashes.
_BLOCK_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")


class SecretBlockSink(TokenSink):
    """Writes UseGrant access tokens to a Prefect Secret block (overwriting it).

    Consumers read the bare JWT with ``Secret.load(secret_block_name).get()``.

    Example:
        >>> from usegrant_flows.sinks import SecretBlockSink
        >>> SecretBlockSink(secret_block_name="aws-token").describe()
        'secret block aws-token'

        Load a saved sink (needs a Prefect API holding the block, hence the skip):

        >>> sink = SecretBlockSink.load("BLOCK_NAME")  # doctest: +SKIP
    """

    _block_type_name = "UseGrant Secret Block Token Sink"
    _block_type_slug = "usegrant-secret-block-token-sink"
    _logo_url = LOGO_URL
    _documentation_url = DOCUMENTATION_URL
    _description = "Writes UseGrant access tokens to a Prefect Secret block."

    kind: ClassVar[str] = "secret-block"
    readable: ClassVar[bool] = True
    _native_async: ClassVar[bool] = True

    secret_block_name: str = Field(
        description=(
            "Name of the Secret block to create, or to overwrite when it holds a JWT "
            "(lowercase, digits, dashes)."
        ),
    )
    adopt: bool = Field(default=False, title="Adopt what is there", description=ADOPT_DESCRIPTION)

    @field_validator("secret_block_name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _BLOCK_NAME.match(value):
            raise ValueError(
                f"secret_block_name must be lowercase letters, digits and dashes, got {value!r}"
            )
        return value

    async def awrite(self, token: AccessToken, metadata: TokenMetadata | None = None) -> None:
        """Save the JWT as the Secret block's value, replacing the previous one.

        Args:
            token: The token to store.
            metadata: Ignored: the Secret holds the token only.

        Raises:
            SinkError: When the Prefect API refused the write; the previous block
                document is left as it was.
        """
        await self._check_owner()
        # Not Secret[str]: a parametrized class registers under another block type slug.
        secret: Secret[str] = Secret(value=SecretStr(token.access_token.get_secret_value()))
        try:
            await secret.asave(self.secret_block_name, overwrite=True)
        except Exception as exc:
            raise SinkError(
                f"could not save Secret block {self.secret_block_name!r}: {type(exc).__name__}"
            ) from None

    async def apreflight(self, metadata: TokenMetadata | None = None) -> None:
        """Check that the Secret block is missing or holds a JWT, before a mint.

        A Secret block holding anything else (a database password, say) is not ours:
        it is never overwritten unless the sink says ``adopt``.

        Args:
            metadata: Unused: a Secret block carries no mark but its JWT.

        Raises:
            ConfigurationError: When the block name is malformed, or
                (:class:`~usegrant_flows.sinks.base.NotOwnedError`) the block holds
                something other than a JWT.
            SinkError: When the Prefect API cannot be asked for the block.
        """
        if not _BLOCK_NAME.match(self.secret_block_name):  # a block built without validation
            raise ConfigurationError(
                "secret_block_name must be lowercase letters, digits and dashes"
            )
        await self._check_owner()

    async def _check_owner(self) -> None:
        """Refuse a Secret block that holds something other than a JWT (unless adopt)."""
        if self.adopt:
            return
        try:
            secret: Secret[str] = await Secret.aload(self.secret_block_name)
        except (ObjectNotFound, ValueError):
            return  # missing: the first write creates it
        except Exception as exc:
            raise SinkError(
                f"could not load Secret block {self.secret_block_name!r}: {type(exc).__name__}"
            ) from None
        value = secret.get()
        try:
            if not isinstance(value, str):
                raise ValueError("not a string")
            token_from_parts(value)
        except ValueError:
            raise not_owned(
                f"Secret block {self.secret_block_name!r} holds something other than a JWT"
            ) from None

    async def aread(self) -> AccessToken | None:
        """Return the token held by the Secret block, or ``None`` if it does not exist.

        Raises:
            SinkError: When the block holds something that is not a JWT with an
                ``exp`` claim.
        """
        try:
            secret: Secret[str] = await Secret.aload(self.secret_block_name)
        except (ObjectNotFound, ValueError):
            # Block.aload raises ValueError("Unable to find block document ...").
            return None
        value = secret.get()
        try:
            if not isinstance(value, str):
                raise ValueError("not a string")
            return token_from_parts(value)
        except ValueError:
            raise SinkError(
                f"Secret block {self.secret_block_name!r} does not hold a JWT with an exp claim"
            ) from None

    def describe(self) -> str:
        """Return ``"secret block <name>"``."""
        return f"secret block {self.secret_block_name}"
