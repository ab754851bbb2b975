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

import json
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.api.models import MAX_EXPIRES_IN
from usegrant_flows.api.verify import VerifyMode
from usegrant_flows.rotation.policy import RefreshPolicy
from usegrant_flows.sinks.registry import BlockSinkSpec, InlineSinkSpec, SinkSpec

__all__ = [
    "BlockSinkSpec",
    "InlineSinkSpec",
    "RotationTarget",
    "SinkSpec",
    "load_fleet_file",
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


#: Largest fleet file read, in bytes (a fleet of 10,000 targets is about 2 MiB of YAML).
MAX_FLEET_BYTES = 4 * 1024 * 1024
#: Most YAML nodes a fleet file may expand to, an alias counting once per use: anchors
#: and aliases must not turn a small file into an exponential amount of validation.
MAX_FLEET_NODES = 1_000_000

#: Where a value sits in a fleet document: mapping keys and list indexes.
Location = tuple[str | int, ...]
#: Gives the 1-based line of the value at a location, or ``None`` when unknown.
Locator = Callable[[Location], "int | None"]


def _at(line: int | None) -> str:
    return f" (line {line})" if line is not None else ""


def _field_errors(exc: ValidationError, where: Location, locate: Locator | None) -> str:
    """One line: ``field (line N): message; ...``, never an input value."""
    errors = exc.errors(include_url=False, include_context=False)
    parts = []
    for err in errors[:5]:
        loc = tuple(err["loc"])
        field = ".".join(str(part) for part in loc) or "value"
        message = err["msg"]
        if err["type"] in ("int_type", "float_type") and isinstance(err.get("input"), bool):
            # YAML reads yes/no/on/off/true/false as booleans.
            message = "must be a number, not a boolean (YAML yes/no/true/false)"
        elif err["type"] == "bool_type":
            message = "must be true or false"
        line = locate((*where, *loc)) if locate else None
        parts.append(f"{field}{_at(line)}: {message}")
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
            their lines when ``locate`` knows them), or a duplicate name.

    Example:
        >>> parse_fleet({"targets": []})
        []
    """
    defaults: Mapping[str, Any] = {}
    prefix: Location = ()
    if isinstance(data, Mapping):
        unknown = set(data) - {"defaults", "targets"}
        if unknown:
            raise ConfigurationError(f"fleet: unknown top-level keys {sorted(map(str, unknown))}")
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
            raise ConfigurationError(f"fleet: target #{index + 1}{_at(line)} is not a mapping")
        try:
            target = RotationTarget.model_validate({**defaults, **item}, context=context)
        except ValidationError as exc:
            label = item.get("name", f"#{index + 1}")
            label = label if isinstance(label, str) else f"#{index + 1}"
            raise ConfigurationError(
                f"fleet: target {label}{_at(line)}: {_field_errors(exc, where, locate)}"
            ) from None
        except ConfigurationError as exc:  # an inline sink the block refused
            raise ConfigurationError(f"fleet: target #{index + 1}{_at(line)}: {exc}") from None
        if target.name in seen:
            raise ConfigurationError(f"fleet: target name {target.name!r}{_at(line)} is used twice")
        seen.add(target.name)
        targets.append(target)
    return targets


class _FleetFileError(Exception):
    """A problem in a fleet file's text, with the line it is on (1-based) if known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping.

    YAML says keys are unique, but PyYAML keeps the last value silently: a fleet file
    with two ``expires_in`` would run with whichever came last.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` overrides are what merge keys are for
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                earlier = first.get(key)
            except TypeError:
                continue  # unhashable: PyYAML reports it
            if earlier is not None:
                raise _FleetFileError(
                    f"key {str(key)[:60]!r} is given twice (first on line {earlier})", line
                )
            first[key] = line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Count the nodes ``node`` expands to, aliases once per use (memoized: linear time)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    sizes[id(node)] = 1  # a recursive alias counts once instead of looping
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(
            _expanded_size(key, sizes) + _expanded_size(value, sizes) for key, value in node.value
        )
    total = min(total, MAX_FLEET_NODES + 1)
    sizes[id(node)] = total
    return total


def _node_line(root: yaml.Node | None, where: Location) -> int | None:
    """Return the line of the deepest node of ``where`` found under ``root``."""
    node, line = root, None
    for part in where:
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
        elif isinstance(node, yaml.MappingNode):
            match = next(
                (v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part),
                None,
            )
            if match is None:
                continue  # a validator's own step (a union tag): try the next part
            node = match
        else:
            continue
        line = node.start_mark.line + 1
    return line


def _read_fleet_bytes(file: Path) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(file, flags)  # non-blocking: a FIFO must not hang the run
    except OSError as exc:
        raise _FleetFileError(exc.strerror or type(exc).__name__) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _FleetFileError("not a regular file")
        if info.st_size > MAX_FLEET_BYTES:
            raise _FleetFileError(f"larger than {MAX_FLEET_BYTES // (1024 * 1024)} MiB")
        chunks, size = [], 0
        while size <= MAX_FLEET_BYTES:
            chunk = os.read(fd, MAX_FLEET_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_FLEET_BYTES:
            raise _FleetFileError(f"larger than {MAX_FLEET_BYTES // (1024 * 1024)} MiB")
        return b"".join(chunks)
    except OSError as exc:
        raise _FleetFileError(exc.strerror or type(exc).__name__) from None
    finally:
        os.close(fd)


def _unique_json_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _FleetFileError(f"key {key[:60]!r} is given twice in one object")
        result[key] = value
    return result


def _parse_text(text: str, *, is_json: bool) -> tuple[Any, Locator | None]:
    """Parse a fleet file's text; return the document and a locator of its lines."""
    if is_json:
        try:
            return json.loads(text, object_pairs_hook=_unique_json_keys), None
        except json.JSONDecodeError as exc:
            raise _FleetFileError(f"not valid JSON: {exc.msg}", exc.lineno) from None
    loader = _StrictLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        if _expanded_size(root, {}) > MAX_FLEET_NODES:
            raise _FleetFileError(
                f"expands to more than {MAX_FLEET_NODES:,} values (anchors and aliases)"
            )
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(str(exc.problem or exc.context or "unreadable").split())
        raise _FleetFileError(f"not valid YAML: {problem}", line) from None
    except yaml.YAMLError as exc:
        raise _FleetFileError(f"not valid YAML: {type(exc).__name__}") from None
    finally:
        loader.dispose()
    return data, lambda where: _node_line(root, where)


def load_fleet_file(path: str | Path) -> list[RotationTarget]:
    """Read a YAML or JSON fleet file (see the module docstring for the format).

    The file is read strictly: at most :data:`MAX_FLEET_BYTES`, UTF-8, no key given
    twice in one mapping, numbers that are numbers (``expires_in: yes`` is refused), and
    no more than :data:`MAX_FLEET_NODES` values once aliases are expanded.

    Args:
        path: The file; relative file-sink paths in it start at its folder.

    Returns:
        The targets, in file order.

    Raises:
        ConfigurationError: One line naming the file and, when it applies, the target,
            the field and the line: the file is missing, too large, not UTF-8, not
            YAML/JSON, nested too deeply, or a target is invalid.
    """
    file = Path(path).expanduser()
    try:
        raw = _read_fleet_bytes(file)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise _FleetFileError(
                f"not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})", line
            ) from None
        try:
            data, locate = _parse_text(text, is_json=file.suffix == ".json")
        except RecursionError:
            raise _FleetFileError("nested too deeply") from None
    except _FleetFileError as exc:
        raise ConfigurationError(f"fleet file {file}{_at(exc.line)}: {exc}") from None
    try:
        return parse_fleet(data, base_dir=file.resolve().parent, locate=locate)
    except RecursionError:
        raise ConfigurationError(f"fleet file {file}: nested too deeply") from None
    except ConfigurationError as exc:
        raise ConfigurationError(f"fleet file {file}: {str(exc).removeprefix('fleet: ')}") from None
