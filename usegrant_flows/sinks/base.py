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
from pydantic import ConfigDict, SecretBytes, SecretStr, model_validator

from usegrant_flows.api.errors import ConfigurationError, UseGrantError
from usegrant_flows.api.models import AccessToken
from usegrant_flows.api.redact import register_secret

__all__ = [
    "ADOPT_DESCRIPTION",
    "ADOPT_HINT",
    "MANAGED_BY",
    "TARGET_MARK",
    "NotOwnedError",
    "SinkError",
    "TokenMetadata",
    "TokenSink",
    "marks_problem",
    "not_owned",
    "owner_marks",
    "token_from_parts",
]

#: Free-form, non-secret context about a token (``providerId``, ``clientId``, target name).
TokenMetadata = dict[str, Any]


class SinkError(UseGrantError):
    """Raised when a sink cannot store a token, or holds something that is not a token."""


class NotOwnedError(ConfigurationError):
    """Raised when a sink's destination holds something usegrant-flows did not write."""


#: The mark on everything a sink creates in a remote store (Vault custom metadata, AWS
#: tags): ``managed-by: usegrant-flows``, and ``usegrant-target: <target name>``.
MANAGED_BY = ("managed-by", "usegrant-flows")
#: The key of the mark naming the target.
TARGET_MARK = "usegrant-target"
#: The ``adopt`` field's description, shared by every sink that owns what it writes.
ADOPT_DESCRIPTION = (
    "Take over, once, a destination usegrant-flows did not write (a file that is not a "
    "token file, a Secret block without a JWT, a Vault secret or AWS secret/parameter "
    "without our marks). Off: such a destination fails the target before any request."
)
#: How every ownership refusal ends: the way out.
ADOPT_HINT = "set `adopt: true` on this sink to take it over once"


def owner_marks(metadata: TokenMetadata | None) -> dict[str, str]:
    """Return the marks a sink puts on what it creates for the target in ``metadata``.

    Example:
        >>> owner_marks({"target": "aws"})
        {'managed-by': 'usegrant-flows', 'usegrant-target': 'aws'}
    """
    marks = dict([MANAGED_BY])
    target = (metadata or {}).get("target")
    if isinstance(target, str) and target:
        marks[TARGET_MARK] = target
    return marks


def marks_problem(marks: Any, metadata: TokenMetadata | None) -> str | None:
    """Say why remote ``marks`` (metadata or tags) are not ours, or ``None`` when they are.

    Ours: ``managed-by: usegrant-flows`` and, when both name one, the same target.

    Example:
        >>> marks_problem({"managed-by": "usegrant-flows", "usegrant-target": "a"},
        ...               {"target": "b"})
        "is marked for target 'a', not 'b'"
    """
    if not isinstance(marks, dict) or marks.get(MANAGED_BY[0]) != MANAGED_BY[1]:
        return "has no usegrant-flows mark (managed-by: usegrant-flows)"
    expected = owner_marks(metadata).get(TARGET_MARK)
    held = marks.get(TARGET_MARK)
    if expected is not None and held is not None and held != expected:
        return f"is marked for target {str(held)[:100]!r}, not {expected!r}"
    return None


def not_owned(what: str) -> NotOwnedError:
    """Return the one-line refusal: ``"<what>: not ours, left as it is; <the way out>"``.

    Args:
        what: The destination and what it holds, in a few words, never its content.

    Example:
        >>> str(not_owned("token file /x holds something other than a raw token"))
        'token file /x holds something other than a raw token: not ours, left as it is; set `adopt: true` on this sink to take it over once'
    """  # noqa: E501
    return NotOwnedError(f"{what}: not ours, left as it is; {ADOPT_HINT}")


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

    @model_validator(mode="after")
    def _remember_secrets(self) -> TokenSink:
        """Register every secret field's value, so no error text can quote it."""
        for name in type(self).model_fields:
            value = getattr(self, name, None)
            if isinstance(value, (SecretStr, SecretBytes)) or hasattr(value, "get_secret_value"):
                register_secret(value.get_secret_value())  # type: ignore[union-attr]
        return self

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

    def preflight(self, metadata: TokenMetadata | None = None) -> None:
        """Check that a write could succeed, without writing or creating anything.

        Sinks that own what they write check here, before any token is minted, that
        what the destination holds is theirs (:class:`NotOwnedError` otherwise, unless
        the sink says ``adopt``), and that the worker's bounds allow the destination
        (:mod:`usegrant_flows.api.worker_bounds`). The default accepts (a sink with
        nothing it can check ahead of time).

        Args:
            metadata: The context the write will get (``target``: the target's name,
                which remote sinks' marks carry).

        Raises:
            ConfigurationError: When the sink's settings, the worker's bounds or what
                the destination holds forbid a write.
            SinkError: When the sink's backend cannot be used.
        """
        if self._native_async:
            run_coro_as_sync(self.apreflight(metadata))

    async def apreflight(self, metadata: TokenMetadata | None = None) -> None:
        """Async form of :meth:`preflight`."""
        if not self._native_async:
            await anyio.to_thread.run_sync(functools.partial(self.preflight, metadata))

    def describe(self) -> str:
        """Return a short, non-secret description of where tokens go, for artifacts."""
        return f"{self.kind or type(self).__name__} sink"
