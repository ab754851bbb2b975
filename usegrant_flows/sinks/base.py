"""The common base of every token sink: where a minted token goes.

A sink is a Prefect block, so it can be saved once (``sink.save("aws-web-identity")``)
and loaded by name in flows. Each kind of sink implements either the sync or the async
pair of methods; the base class derives the other pair, so no sink duplicates a body:

* ``write`` / ``read`` implemented: ``awrite`` / ``aread`` run them in a worker thread
  (:func:`anyio.to_thread.run_sync`);
* ``awrite`` / ``aread`` implemented: set ``_native_async = True`` and ``write`` /
  ``read`` run them with :func:`prefect.utilities.asyncutils.run_coro_as_sync`.

Rules every sink keeps:

* nothing is written when the token cannot be delivered, and a failed write never
  deletes or damages the token the sink held before;
* error messages, ``describe()`` and reprs never contain the token;
* ``read()`` returns ``None`` when the sink holds no token, and raises
  :class:`SinkError` when it holds something that is not a token;
* ``preflight()`` (and ``apreflight()``, derived the same way) checks, before any token
  is minted, that a write could succeed: it creates, sends and writes nothing. The
  rotation runs it on every sink of a target first, so a broken sink costs no request.
  A sink with nothing to check keeps the default, which accepts.
"""

from __future__ import annotations

import functools
from abc import ABC
from datetime import datetime, timezone
from typing import Any, ClassVar

import anyio.to_thread
from prefect.blocks.core import Block
from prefect.utilities.asyncutils import run_coro_as_sync
from pydantic import ConfigDict, SecretStr

from usegrant_flows.api.errors import UseGrantError
from usegrant_flows.api.models import AccessToken

__all__ = [
    "SinkError",
    "TokenMetadata",
    "TokenSink",
    "token_from_parts",
]

#: Free-form, non-secret context about a token (``providerId``, ``clientId``, target name).
TokenMetadata = dict[str, Any]


class SinkError(UseGrantError):
    """Raised when a sink cannot store a token, or holds something that is not a token."""


def token_from_parts(
    jwt: str, expires_at: str | None = None, token_type: str | None = None
) -> AccessToken:
    """Rebuild an :class:`AccessToken` from what a sink stored.

    Args:
        jwt: The stored JWT.
        expires_at: The stored ISO-8601 expiry; ``None`` takes the JWT's ``exp`` claim.
        token_type: The stored token type; ``None`` means ``Bearer``.

    Raises:
        ValueError: When ``jwt`` is not a JWT (pydantic's ``ValidationError`` is a
            ``ValueError``), or no expiry is stored and the JWT has no numeric ``exp``.
    """
    if expires_at is None:
        exp = (
            AccessToken.model_validate({"accessToken": jwt, "expiresAt": "1970-01-01T00:00:00Z"})
            .claims()
            .get("exp")
        )
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            raise ValueError("the JWT has no numeric exp claim and no expiry is stored")
        moment = datetime.fromtimestamp(exp, tz=timezone.utc)
        return AccessToken(
            access_token=SecretStr(jwt), expires_at=moment, type=token_type or "Bearer"
        )
    return AccessToken.model_validate(
        {"accessToken": jwt, "expiresAt": expires_at, "type": token_type or "Bearer"}
    )


class TokenSink(Block, ABC):
    """Base class of the places a minted UseGrant access token is written to.

    Subclasses set :attr:`kind` and :attr:`readable` and implement ``write`` and
    ``read`` (or ``awrite`` and ``aread`` with ``_native_async = True``) and
    ``describe``.
    """

    # A rejected value (a URL with a credential in it, say) never shows in an error.
    model_config = ConfigDict(hide_input_in_errors=True)

    #: Short name of the sink's kind, e.g. ``"file"``; used in fleet files.
    kind: ClassVar[str] = ""
    #: Whether :meth:`read` can give back what was written. A write-only sink (a
    #: webhook) always reads ``None`` and cannot vouch that its consumer holds a
    #: fresh token.
    readable: ClassVar[bool] = True
    #: Fields holding paths that a fleet file may give relative to its own folder.
    fleet_paths: ClassVar[tuple[str, ...]] = ()
    #: True when the subclass implements ``awrite``/``aread`` rather than ``write``/``read``.
    _native_async: ClassVar[bool] = False

    def write(self, token: AccessToken, metadata: TokenMetadata | None = None) -> None:
        """Deliver ``token``, replacing what the sink held.

        Args:
            token: The token to store.
            metadata: Non-secret context (``providerId``, ``clientId``, ...); sinks
                that have no use for it ignore it.

        Raises:
            SinkError: When the token could not be delivered; the previous token,
                if any, is left as it was.
            ConfigurationError: When the sink's settings forbid the write.
        """
        if not self._native_async:
            raise NotImplementedError(f"{type(self).__name__} must implement write()")
        run_coro_as_sync(self.awrite(token, metadata))

    def read(self) -> AccessToken | None:
        """Return the token the sink holds, or ``None`` when it holds none.

        Raises:
            SinkError: When the sink holds something that is not a token.
        """
        if not self._native_async:
            raise NotImplementedError(f"{type(self).__name__} must implement read()")
        return run_coro_as_sync(self.aread())

    async def awrite(self, token: AccessToken, metadata: TokenMetadata | None = None) -> None:
        """Async form of :meth:`write`."""
        if self._native_async:
            raise NotImplementedError(f"{type(self).__name__} must implement awrite()")
        await anyio.to_thread.run_sync(functools.partial(self.write, token, metadata))

    async def aread(self) -> AccessToken | None:
        """Async form of :meth:`read`."""
        if self._native_async:
            raise NotImplementedError(f"{type(self).__name__} must implement aread()")
        return await anyio.to_thread.run_sync(self.read)

    def preflight(self) -> None:
        """Check that a write could succeed, without writing, creating or sending anything.

        The default accepts (a sink with nothing it can check ahead of time).

        Raises:
            ConfigurationError: When the sink's settings or its target forbid a write.
            SinkError: When the sink's backend cannot be used.
        """
        if self._native_async:
            run_coro_as_sync(self.apreflight())

    async def apreflight(self) -> None:
        """Async form of :meth:`preflight`."""
        if not self._native_async:
            await anyio.to_thread.run_sync(self.preflight)

    def describe(self) -> str:
        """Return a short, non-secret description of where tokens go, for artifacts."""
        return f"{self.kind or type(self).__name__} sink"
