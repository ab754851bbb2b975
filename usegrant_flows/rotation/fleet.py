"""Rotation targets and fleet files: what to mint, with which credentials, and where to put it.

A :class:`RotationTarget` names one UseGrant client, the token options, the credentials
(a ``UseGrantCredentials`` block name, or ``None`` for :class:`UseGrantSettings`: the
``USEGRANT_*`` environment, ``.env`` or the keyring), the refresh policy, and its sinks.
A sink is given inline (the ``type`` field picks the kind, and the other keys are the
fields of that kind's sink block: :mod:`usegrant_flows.sinks.registry`) or as the name
of a saved sink block, ``"<block-type-slug>/<block-name>"``:

.. code-block:: yaml

    # fleet.yaml: `defaults` are merged into every target (a target's own keys win)
    defaults:
      credentials: usegrant          # UseGrantCredentials block name
      expires_in: 3600               # seconds, 1..172800
    targets:
      - name: aws-prod
        provider_id: 2f1e9c3a-...
        client_id: 7b0d...
        sinks:
          - {type: file, path: tokens/aws.jwt}           # relative to this file's folder
          - {type: secret-block, secret_block_name: aws-token}
          - usegrant-webhook-token-sink/ops-hook         # a saved sink block

Secrets are never part of a target (a sink's secret fields are not part of its inline
spec: webhook URLs, headers and signing keys live in a saved webhook sink block), so
targets are safe flow parameters.

Example:
    >>> t = RotationTarget.model_validate({
    ...     "name": "aws",
    ...     "provider_id": "00000000-0000-4000-8000-000000000001",
    ...     "client_id": "00000000-0000-4000-8000-000000000002",
    ...     "sinks": [{"type": "file", "path": "/run/aws.jwt"}, "usegrant-file-token-sink/x"],
    ... })
    >>> [s.type for s in t.sinks]
    ['file', 'block']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from usegrant_flows.api.claims import VerifyMode
from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.api.models import MAX_EXPIRES_IN
from usegrant_flows.rotation.destinations import check_destinations
from usegrant_flows.rotation.policy import RefreshPolicy
from usegrant_flows.sinks.registry import BlockSinkSpec, InlineSinkSpec, SinkSpec

__all__ = [
    "BlockSinkSpec",
    "InlineSinkSpec",
    "Location",
    "Locator",
    "RotationTarget",
    "SinkSpec",
    "at_line",
    "parse_fleet",
]


class RotationTarget(BaseModel):
    """One UseGrant client whose token is kept fresh in one or more sinks.

    Attributes:
        name: Unique name of the target in its fleet (1..200 characters); names locks,
            artifact rows and events.
        provider_id: The UseGrant provider id.
        client_id: The UseGrant client id.
        expires_in: Token lifetime in seconds, 1..172800; ``None`` lets the API choose
            (3600).
        use_jwt_type: JWT header ``typ`` is ``jwt`` instead of ``at+jwt``.
        audience_as_array: The ``aud`` claim is an array.
        force_default_domain: The issuer is the provider's default domain.
        credentials: Name of a ``UseGrantCredentials`` block; ``None`` uses
            ``UseGrantSettings`` (``USEGRANT_API_KEY``, ``.env``, keyring).
        sinks: Where the token goes (at least one).
        policy: When a held token is due for refresh.
        verify: How a minted token is checked before any sink gets it: ``"full"``
            (default: claims and signature against the issuer's keys) or ``"claims"``
            (claims only, for workers that cannot reach the issuer).
        work_queue: Name of the work queue whose worker runs this target (a host-bound
            target, e.g. one writing a file on that host); ``None``: any worker.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$", title="Name")
    provider_id: UUID = Field(title="Provider ID", description="UseGrant provider id (UUID).")
    client_id: UUID = Field(title="Client ID", description="UseGrant client id (UUID).")
    # strict: YAML reads `yes` as True, which a lax int would take as 1 second.
    expires_in: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=MAX_EXPIRES_IN,
        title="Expires in (seconds)",
        description="Token lifetime in seconds, 1..172800 (48 h); empty: the API's 3600.",
    )
    use_jwt_type: bool | None = Field(default=None, strict=True, title="JWT type 'jwt'")
    audience_as_array: bool | None = Field(default=None, strict=True, title="Audience as array")
    force_default_domain: bool | None = Field(
        default=None, strict=True, title="Force default domain"
    )
    credentials: str | None = Field(
        default=None,
        title="Credentials block",
        description="UseGrantCredentials block name; empty: USEGRANT_* settings.",
    )
    sinks: list[SinkSpec] = Field(min_length=1, title="Sinks")
    policy: RefreshPolicy = Field(default_factory=RefreshPolicy, title="Refresh policy")
    verify: VerifyMode = Field(
        default="full",
        title="Verify minted tokens",
        description=(
            "full: claims and signature against the issuer's keys; claims: claims only "
            "(for workers that cannot reach the issuer)."
        ),
    )
    work_queue: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        title="Work queue",
        description=(
            "Work queue (of the deployment's pool) whose worker rotates this target, "
            "e.g. the queue of the host whose files it writes; empty: any worker."
        ),
    )

    @field_validator("sinks", mode="before")
    @classmethod
    def _block_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [
                {"type": "block", "block": item} if isinstance(item, str) else item
                for item in value
            ]
        return value

    @property
    def identity(self) -> str:
        """A stable string for this target: name, provider and client (for jitter)."""
        return f"{self.name}:{self.provider_id}:{self.client_id}"

    def token_options(self) -> dict[str, Any]:
        """Return the token options that are set, as ``create_token`` keywords."""
        options = {
            "expires_in": self.expires_in,
            "use_jwt_type": self.use_jwt_type,
            "audience_as_array": self.audience_as_array,
            "force_default_domain": self.force_default_domain,
        }
        return {key: value for key, value in options.items() if value is not None}


#: Where a value sits in a fleet document: mapping keys and list indexes.
Location = tuple[str | int, ...]
#: Gives the 1-based line of the value at a location, or ``None`` when unknown.
Locator = Callable[[Location], "int | None"]


def at_line(line: int | None) -> str:
    """Return `` (line N)`` for a known line, else an empty string."""
    return f" (line {line})" if line is not None else ""


def _field_errors(exc: ValidationError, where: Location, locate: Locator | None) -> str:
    """One line: ``field (line N): message; ...``, never an input value."""
    errors = exc.errors(include_url=False, include_context=False)
    parts = []
    for err in errors[:5]:
        loc = tuple(err["loc"])
        field = ".".join(str(part) for part in loc) or "value"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            # The key is the document's content: say where it is, never what it says.
            field = ".".join(str(part) for part in loc[:-1]) or "target"
            message = "unknown field"
        if err["type"] in ("int_type", "float_type") and isinstance(err.get("input"), bool):
            # YAML reads yes/no/on/off/true/false as booleans.
            message = "must be a number, not a boolean (YAML yes/no/true/false)"
        elif err["type"] == "bool_type":
            message = "must be true or false"
        line = locate((*where, *loc)) if locate else None
        parts.append(f"{field}{at_line(line)}: {message}")
    if len(errors) > 5:
        parts.append(f"and {len(errors) - 5} more")
    return " ".join("; ".join(parts).split())


def parse_fleet(
    data: Any, *, base_dir: str | Path | None = None, locate: Locator | None = None
) -> list[RotationTarget]:
    """Validate a fleet document: a list of targets, or ``{defaults, targets}``.

    Args:
        data: The parsed YAML/JSON document.
        base_dir: Folder that relative file-sink paths start from; ``None`` keeps them
            relative to the working directory.
        locate: Gives the line of a value in the source file, for error messages.

    Returns:
        The targets, in document order.

    Raises:
        ConfigurationError: One line naming the target and the field at fault (with
            their lines when ``locate`` knows them), a duplicate name, or two targets
            writing one destination (:mod:`~usegrant_flows.rotation.destinations`).

    Example:
        >>> parse_fleet({"targets": []})
        []
    """
    defaults: Mapping[str, Any] = {}
    prefix: Location = ()
    if isinstance(data, Mapping):
        unknown = [key for key in data if key not in ("defaults", "targets")]
        if unknown:
            # Never quote the keys: a file that is no fleet (a password file, say) must
            # not have its lines copied into a run's state, logs or artifact.
            line = locate((unknown[0],)) if locate else None
            raise ConfigurationError(
                f"fleet: {len(unknown)} unknown top-level key(s){at_line(line)}: "
                "only `defaults` and `targets` are allowed"
            )
        defaults = data.get("defaults") or {}
        items = data.get("targets")
        prefix = ("targets",)
    else:
        items = data
    if not isinstance(items, list) or not isinstance(defaults, Mapping):
        raise ConfigurationError("fleet: expected a list of targets, or {defaults, targets}")
    context = {"base_dir": str(base_dir)} if base_dir is not None else None
    targets: list[RotationTarget] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        where = (*prefix, index)
        line = locate(where) if locate else None
        if not isinstance(item, Mapping):
            raise ConfigurationError(f"fleet: target #{index + 1}{at_line(line)} is not a mapping")
        try:
            target = RotationTarget.model_validate({**defaults, **item}, context=context)
        except ValidationError as exc:
            label = item.get("name", f"#{index + 1}")
            label = label if isinstance(label, str) else f"#{index + 1}"
            raise ConfigurationError(
                f"fleet: target {label}{at_line(line)}: {_field_errors(exc, where, locate)}"
            ) from None
        except ConfigurationError as exc:  # an inline sink the block refused
            raise ConfigurationError(f"fleet: target #{index + 1}{at_line(line)}: {exc}") from None
        if target.name in seen:
            raise ConfigurationError(
                f"fleet: target name {target.name!r}{at_line(line)} is used twice"
            )
        seen.add(target.name)
        targets.append(target)
    check_destinations((t.name, t.sinks) for t in targets)
    return targets
