"""The ``UseGrant Fleet`` block: a fleet of rotation targets kept in the Prefect server.

A fleet file lives on one machine; a fleet block lives in the Prefect server, where every
worker on every host reads the same one, and where it can be edited in the UI. Its data
is the fleet file's: ``targets`` (each a
:class:`~usegrant_flows.rotation.fleet.RotationTarget`) and optional ``defaults`` merged
into every target as fleet files do (a target's own keys win), validated by the same
:func:`~usegrant_flows.rotation.fleet.parse_fleet`.

``usegrant-flows fleet push FILE --name NAME`` reads a fleet file (relative file-sink
paths become absolute, resolved against the file's folder) and saves it as a block;
the ``rotate-tokens`` flow takes its name as ``fleet_block``. A fleet holds no secret:
API keys are in credentials blocks, webhook secrets in saved sink blocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, model_validator

from usegrant_flows._links import DOCUMENTATION_URL, LOGO_URL
from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.loading import aload_block, load_block
from usegrant_flows.rotation.destinations import check_destinations
from usegrant_flows.rotation.fleet import BlockSinkSpec, RotationTarget, parse_fleet

__all__ = ["FLEET_BLOCK_HINT", "UseGrantFleet", "aload_fleet", "load_fleet"]

#: What to do when a fleet block is missing.
FLEET_BLOCK_HINT = "save one with `usegrant-flows fleet push FILE --name NAME`"


class UseGrantFleet(Block):
    """A fleet of UseGrant rotation targets, shared by every worker through Prefect.

    Attributes:
        defaults: Keys merged into every target (a target's own keys win), as in a
            fleet file: e.g. ``credentials``, ``provider_id``, ``expires_in``,
            ``work_queue``.
        targets: The targets: client ids, token options, refresh policy, sinks and the
            optional work queue of the host that must rotate them. Names are unique.

    Example:
        Load a saved fleet by name (needs a Prefect API holding the block, hence the
        skip):

        >>> from usegrant_flows.rotation.fleet_block import UseGrantFleet
        >>> fleet = UseGrantFleet.load("BLOCK_NAME")  # doctest: +SKIP

        Or build one in code (``save`` needs a Prefect API too):

        >>> fleet = UseGrantFleet.model_validate({
        ...     "defaults": {"provider_id": "00000000-0000-4000-8000-000000000001"},
        ...     "targets": [{
        ...         "name": "aws",
        ...         "client_id": "00000000-0000-4000-8000-000000000002",
        ...         "sinks": [{"type": "file", "path": "/run/usegrant/aws.jwt"}],
        ...     }],
        ... })
        >>> [str(t.provider_id)[-1] for t in fleet.targets]
        ['1']
        >>> fleet.save("prod-fleet")  # doctest: +SKIP
    """

    _block_type_name = "UseGrant Fleet"
    _block_type_slug = "usegrant-fleet"
    _logo_url = LOGO_URL
    _documentation_url = DOCUMENTATION_URL
    _description = (
        "Rotation targets of the rotate-tokens flow (what to mint, where to write it, "
        "on which work queue), shared by every worker."
    )

    defaults: dict[str, Any] = Field(
        default_factory=dict,
        title="Defaults",
        description=(
            "Keys merged into every target, as in a fleet file's `defaults` (a target's "
            "own keys win)."
        ),
    )
    # Required: a deployment parameter naming a saved fleet is {"$ref": ...}; Prefect's
    # server accepts it only when it cannot also pass for an inline fleet (oneOf).
    targets: list[RotationTarget] = Field(
        title="Targets",
        description="The targets; names must be unique.",
    )

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        """Validate raw targets with the fleet files' rules: defaults merged, names unique."""
        if not isinstance(data, Mapping):
            return data
        targets = data.get("targets")
        if not isinstance(targets, list) or not all(isinstance(t, Mapping) for t in targets):
            return data  # built from RotationTarget objects: already whole
        defaults = data.get("defaults") or {}
        try:
            parsed = parse_fleet({"defaults": defaults, "targets": targets})
        except ConfigurationError as exc:
            # A ValueError becomes a pydantic error: one line naming target and field.
            raise ValueError(str(exc)) from None
        return {**data, "targets": parsed}

    @model_validator(mode="after")
    def _unique_names(self) -> UseGrantFleet:
        names = [target.name for target in self.targets]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"target names must be unique; repeated: {', '.join(repeated)}")
        try:
            check_destinations((t.name, t.sinks) for t in self.targets)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None
        return self

    def document(self) -> dict[str, Any]:
        """Return the fleet as a fleet-file document (``{defaults, targets}``), JSON-safe.

        Default-valued target fields are left out and saved sink blocks are written as
        ``slug/name``, so the document reads like the file it came from and can be
        pushed again.
        """
        targets = []
        for target in self.targets:
            item = target.model_dump(mode="json", exclude_defaults=True)
            item["sinks"] = [
                spec.block
                if isinstance(spec, BlockSinkSpec)
                else {"type": spec.type, **spec.model_dump(mode="json", exclude_defaults=True)}
                for spec in target.sinks
            ]
            targets.append(item)
        document: dict[str, Any] = {"targets": targets}
        if self.defaults:
            document = {"defaults": dict(self.defaults), **document}
        return document


async def aload_fleet(name: str) -> list[RotationTarget]:
    """Load a saved fleet block's targets by name.

    Raises:
        ConfigurationError: When no such block exists, or it is not a fleet.
    """
    block = await aload_block(UseGrantFleet, name, what="fleet block", hint=FLEET_BLOCK_HINT)
    return list(block.targets)


def load_fleet(name: str) -> UseGrantFleet:
    """Sync: load a saved fleet block by name (for the CLI).

    Raises:
        ConfigurationError: When no such block exists, or it is not a fleet.
    """
    return load_block(UseGrantFleet, name, what="fleet block", hint=FLEET_BLOCK_HINT)
