"""The operating system's keyring, for tokens used by people and tools on one machine.

The stored password is the wire JSON ``{"accessToken":..,"expiresAt":..,"type":..}``
under ``service`` / ``username``. The pair ``usegrant-flows`` / ``api-key`` is where
:mod:`usegrant_flows.api.settings` keeps the API key: a sink may never overwrite it.
"""

from __future__ import annotations

import json
from typing import ClassVar

import keyring
import keyring.backends.fail
import keyring.errors
from pydantic import Field, model_validator

from usegrant_flows._links import DOCUMENTATION_URL, LOGO_URL
from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.api.models import AccessToken
from usegrant_flows.api.settings import KEYRING_SERVICE, KEYRING_USERNAME
from usegrant_flows.sinks.base import (
    SinkError,
    TokenMetadata,
    TokenSink,
    token_from_parts,
)

__all__ = ["KeyringTokenSink"]

# Where `usegrant-flows login` keeps the API key.
_API_KEY_ENTRY = (KEYRING_SERVICE, KEYRING_USERNAME)
_NO_BACKEND = (
    "no usable OS keyring backend ({backend}): install and configure one "
    "(for example the keyrings.alt package, or a Secret Service daemon) or use another sink"
)


def _backend_name() -> str:
    return type(keyring.get_keyring()).__name__


class KeyringTokenSink(TokenSink):
    """Stores UseGrant access tokens in the OS keyring (Keychain, Secret Service, ...).

    Example:
        >>> from usegrant_flows.sinks import KeyringTokenSink
        >>> KeyringTokenSink(username="ci-deployer").describe()
        'keyring usegrant-flows-tokens/ci-deployer'

        Load a saved sink (needs a Prefect API holding the block, hence the skip):

        >>> sink = KeyringTokenSink.load("BLOCK_NAME")  # doctest: +SKIP
    """

    _block_type_name = "UseGrant Keyring Token Sink"
    _block_type_slug = "usegrant-keyring-token-sink"
    _logo_url = LOGO_URL
    _documentation_url = DOCUMENTATION_URL
    _description = "Stores UseGrant access tokens in the operating system's keyring."

    kind: ClassVar[str] = "keyring"
    readable: ClassVar[bool] = True

    service: str = Field(
        default="usegrant-flows-tokens",
        min_length=1,
        description="Keyring service name the token is stored under.",
    )
    username: str = Field(
        default="access-token",
        min_length=1,
        description="Keyring user name the token is stored under.",
    )

    @model_validator(mode="after")
    def _not_the_api_key(self) -> KeyringTokenSink:
        if (self.service, self.username) == _API_KEY_ENTRY:
            raise ValueError(
                f"service/username {KEYRING_SERVICE}/{KEYRING_USERNAME} holds the UseGrant "
                "API key; choose another entry for tokens"
            )
        return self

    def preflight(self, metadata: TokenMetadata | None = None) -> None:
        """Check that a keyring backend is usable and the entry is not the API key's.

        Nothing is read or written (a read may prompt the user on some backends).

        Raises:
            ConfigurationError: When no keyring backend is available, or the entry is
                where ``usegrant-flows login`` keeps the API key.
        """
        if (self.service, self.username) == _API_KEY_ENTRY:
            raise ConfigurationError(
                f"keyring entry {KEYRING_SERVICE}/{KEYRING_USERNAME} holds the UseGrant API key"
            )
        backend = keyring.get_keyring()
        if isinstance(backend, keyring.backends.fail.Keyring):
            raise ConfigurationError(_NO_BACKEND.format(backend=_backend_name()))

    def write(self, token: AccessToken, metadata: TokenMetadata | None = None) -> None:
        """Store the token's wire JSON, replacing the previous entry.

        Args:
            token: The token to store.
            metadata: Ignored.

        Raises:
            ConfigurationError: When no keyring backend is available.
            SinkError: When the backend refused the write.
        """
        secret = json.dumps(token.to_wire(), separators=(",", ":"))
        try:
            keyring.set_password(self.service, self.username, secret)
        except keyring.errors.NoKeyringError:
            raise ConfigurationError(_NO_BACKEND.format(backend=_backend_name())) from None
        except keyring.errors.KeyringError as exc:
            raise SinkError(
                f"keyring refused to store {self.describe()}: {type(exc).__name__}"
            ) from None

    def read(self) -> AccessToken | None:
        """Return the stored token, or ``None`` when the entry does not exist.

        Raises:
            ConfigurationError: When no keyring backend is available.
            SinkError: When the entry does not hold a token.
        """
        try:
            stored = keyring.get_password(self.service, self.username)
        except keyring.errors.NoKeyringError:
            raise ConfigurationError(_NO_BACKEND.format(backend=_backend_name())) from None
        except keyring.errors.KeyringError as exc:
            raise SinkError(
                f"keyring could not read {self.describe()}: {type(exc).__name__}"
            ) from None
        if stored is None:
            return None
        try:
            wire = json.loads(stored)
            if not isinstance(wire, dict):
                raise ValueError("not an object")
            return token_from_parts(wire["accessToken"], wire.get("expiresAt"), wire.get("type"))
        except (ValueError, KeyError, TypeError):
            raise SinkError(f"keyring entry {self.describe()} does not hold a token") from None

    def describe(self) -> str:
        """Return ``"keyring <service>/<username>"``."""
        return f"keyring {self.service}/{self.username}"
