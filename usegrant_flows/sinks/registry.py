"""The sink kinds a fleet can name, and the fleet spec of each, derived from its block.

A fleet target lists its sinks inline (``{type: file, path: ...}``) or as saved blocks
(``"<block-type-slug>/<block-name>"``). Every inline kind is one entry of
:data:`SINK_KINDS`: its fleet ``type`` (the block's ``kind``) and its block class. The
spec a fleet file may give is **the block's own fields**, less its secret ones: secrets
never live in a fleet (a sink that needs one is saved as a block and named). A spec is
checked by building the block, so a bad value is refused when the fleet is read, with
the block's own message, not when the token is written.

Adding a sink kind: write its module (a :class:`TokenSink` with a ``kind``) and add the
class to :data:`SINK_KINDS`.

Example:
    >>> spec = sink_spec("file", path="/run/aws.jwt")
    >>> spec.type, spec.build().describe()
    ('file', 'file /run/aws.jwt (raw)')
    >>> sink_spec("file", path="/run/x", mode=0o644)
    Traceback (most recent call last):
    ...
    usegrant_flows.api.errors.ConfigurationError: file sink: mode: ...
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretBytes,
    SecretStr,
    ValidationError,
    ValidationInfo,
    create_model,
    model_validator,
)

from usegrant_flows.api.checks import short_errors
from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.sinks.aws_secrets_manager import AwsSecretsManagerTokenSink
from usegrant_flows.sinks.aws_ssm import AwsSsmParameterTokenSink
from usegrant_flows.sinks.base import TokenSink
from usegrant_flows.sinks.file import FileTokenSink
from usegrant_flows.sinks.keyring import KeyringTokenSink
from usegrant_flows.sinks.secret_block import SecretBlockSink
from usegrant_flows.sinks.vault import VaultKvTokenSink
from usegrant_flows.sinks.webhook import WebhookTokenSink

__all__ = [
    "SINK_KINDS",
    "BlockSinkSpec",
    "InlineSinkSpec",
    "SinkSpec",
    "inline_kinds",
    "sink_spec",
]

#: Every sink kind, by its fleet ``type``. Kinds with a required secret field (the
#: webhook's URL) can only be named as saved blocks.
SINK_KINDS: dict[str, type[TokenSink]] = {
    cls.kind: cls
    for cls in (
        FileTokenSink,
        SecretBlockSink,
        KeyringTokenSink,
        WebhookTokenSink,
        VaultKvTokenSink,
        AwsSecretsManagerTokenSink,
        AwsSsmParameterTokenSink,
    )
}


def _is_secret(annotation: Any) -> bool:
    if annotation in (SecretStr, SecretBytes):
        return True
    if getattr(annotation, "__name__", "") == "SecretDict":
        return True
    return any(_is_secret(arg) for arg in get_args(annotation))


class InlineSinkSpec(BaseModel):
    """A sink given in the fleet itself: the fields of its block, less the secret ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The block class this spec builds (set on each derived spec class).
    sink_class: ClassVar[type[TokenSink]]

    type: str

    @model_validator(mode="after")
    def _buildable(self, info: ValidationInfo) -> InlineSinkSpec:
        base = (info.context or {}).get("base_dir")
        for name in self.sink_class.fleet_paths:
            value = getattr(self, name, None)
            if value is not None and base is not None and not Path(value).is_absolute():
                resolved = Path(os.path.normpath(Path(base) / Path(value).expanduser()))
                object.__setattr__(self, name, type(value)(resolved))
        self.build()  # the block's own validators decide now, not at write time
        return self

    def build(self) -> TokenSink:
        """Return the sink block these settings describe.

        Raises:
            ConfigurationError: When the block refuses the settings.
        """
        try:
            return self.sink_class(**self.model_dump(exclude={"type"}, exclude_unset=True))
        except ValidationError as exc:
            raise ConfigurationError(f"{self.type} sink: {short_errors(exc)}") from None


class BlockSinkSpec(BaseModel):
    """A saved sink block (a webhook, or any ``TokenSink``), by ``slug/name``."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Saved sink block")

    type: Literal["block"] = "block"
    block: str = Field(
        pattern=r"^[a-z0-9-]+/[^/]+$",
        title="Sink block",
        description="'<block-type-slug>/<block-name>', e.g. 'usegrant-webhook-token-sink/ops'.",
    )


def _spec_class(kind: type[TokenSink]) -> type[InlineSinkSpec] | None:
    fields: dict[str, Any] = {}
    for name, info in kind.model_fields.items():
        if _is_secret(info.annotation):
            if info.is_required():
                return None
            continue
        fields[name] = (info.annotation, info)
    spec = create_model(
        f"{kind.__name__}Spec",
        __base__=InlineSinkSpec,
        __doc__=f"{kind._block_type_name} (the fields of ``{kind.__name__}``).",
        type=(Literal[kind.kind], Field(default=kind.kind)),  # type: ignore[arg-type]
        **fields,
    )
    spec.sink_class = kind
    spec.model_config["title"] = kind._block_type_name or kind.__name__
    spec.model_rebuild(force=True)
    return spec


_SPECS: dict[str, type[InlineSinkSpec]] = {
    kind: spec for kind, cls in SINK_KINDS.items() if (spec := _spec_class(cls)) is not None
}


def inline_kinds() -> list[str]:
    """Return the fleet ``type`` values a sink may be given inline with."""
    return sorted(_SPECS)


def sink_spec(kind: str, **fields: Any) -> InlineSinkSpec:
    """Return the validated inline spec of a sink of ``kind`` (for flows building targets).

    Raises:
        ConfigurationError: When the kind is unknown or the block refuses the fields.
    """
    spec = _SPECS.get(kind)
    if spec is None:
        raise ConfigurationError(
            f"unknown sink type {kind!r}; inline types: {', '.join(inline_kinds())}"
        )
    try:
        return spec(type=kind, **fields)
    except ValidationError as exc:
        raise ConfigurationError(f"{kind} sink: {short_errors(exc)}") from None


if TYPE_CHECKING:
    SinkSpec = InlineSinkSpec | BlockSinkSpec
else:
    #: One sink of a target: inline settings of a registered kind, or a saved block.
    SinkSpec = Annotated[
        Union[tuple([*_SPECS.values(), BlockSinkSpec])],  # noqa: UP007
        Field(discriminator="type"),
    ]
