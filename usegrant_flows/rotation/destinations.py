"""One destination, one target: where a sink writes, and fleets that name it twice.

Two targets writing one destination fight over it: each run one of them overwrites the
other's token, and a freshness check that looks only at the destination would report
both fresh while consumers hold the other client's token. So a fleet is refused when two
of its targets name the same destination, at parse time (:func:`parse_fleet`) and when a
fleet block is saved, with one line naming both targets.

A destination is a tuple naming what a sink overwrites, after normalisation:

* file: the absolute path, with ``.``/``..`` and symlinks of existing folders resolved;
* Secret block: its name; keyring: service and username;
* Vault KV: server URL, namespace, mount and path (slashes trimmed);
* AWS Secrets Manager secret or SSM parameter: its name (leading ``/`` of a parameter
  kept as AWS does), region and endpoint;
* a saved sink block (a webhook, or any kind): its ``slug/name``.

Example:
    >>> from usegrant_flows.sinks.registry import sink_spec
    >>> destination(sink_spec("file", path="/run/tokens/../tokens/aws.jwt"))
    ('file', '/run/tokens/aws.jwt')
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.sinks.registry import BlockSinkSpec, InlineSinkSpec

__all__ = ["Destination", "check_destinations", "destination"]

#: A hashable name of what a sink overwrites.
Destination = tuple[str, ...]


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def destination(spec: InlineSinkSpec | BlockSinkSpec) -> Destination:
    """Return the normalised destination a sink spec writes (see the module docstring)."""
    if isinstance(spec, BlockSinkSpec):
        return ("block", spec.block)
    kind = spec.type
    field = spec.__dict__.get
    if kind == "file":
        return (kind, os.path.realpath(os.path.abspath(os.path.expanduser(str(field("path"))))))
    if kind == "secret-block":
        return (kind, _text(field("secret_block_name")))
    if kind == "keyring":
        return (kind, _text(field("service")), _text(field("username")))
    if kind == "vault-kv":
        return (
            kind,
            _text(field("url")).rstrip("/"),
            _text(field("namespace")).strip("/"),
            _text(field("mount_point")).strip("/"),
            _text(field("path")).strip("/"),
        )
    if kind == "aws-secrets-manager":
        return (kind, _text(field("secret_name")), *_aws_place(field))
    if kind == "aws-ssm-parameter":
        return (kind, _text(field("parameter_name")), *_aws_place(field))
    # A kind added later: its whole spec names it (never two targets on equal specs).
    return (kind, repr(sorted(spec.model_dump(exclude={"type"}).items())))


def _aws_place(field: Any) -> tuple[str, str]:
    return _text(field("region_name")), _text(field("endpoint_url")).rstrip("/")


def _shown(place: Destination) -> str:
    kind, *rest = place
    return f"{kind} {' '.join(part for part in rest if part)}".strip()


def check_destinations(
    targets: Iterable[tuple[str, Iterable[InlineSinkSpec | BlockSinkSpec]]], *, where: str = "fleet"
) -> None:
    """Refuse a fleet in which two targets (or one target twice) name one destination.

    Args:
        targets: ``(target name, its sink specs)`` for every target, in order.
        where: What the message starts with (``fleet``, the block's name).

    Raises:
        ConfigurationError: One line naming both targets and the destination.

    Example:
        >>> from usegrant_flows.sinks.registry import sink_spec
        >>> a = ("aws", [sink_spec("file", path="/run/t.jwt")])
        >>> b = ("gcp", [sink_spec("file", path="/run/./t.jwt")])
        >>> check_destinations([a, b])
        Traceback (most recent call last):
        ...
        usegrant_flows.api.errors.ConfigurationError: fleet: targets 'aws' and 'gcp' both write file /run/t.jwt: one destination, one target
    """  # noqa: E501
    owner: dict[Destination, str] = {}
    for name, specs in targets:
        mine: set[Destination] = set()
        for spec in specs:
            place = destination(spec)
            if place in mine:
                raise ConfigurationError(f"{where}: target {name!r} names {_shown(place)} twice")
            mine.add(place)
            first = owner.get(place)
            if first is not None:
                raise ConfigurationError(
                    f"{where}: targets {first!r} and {name!r} both write {_shown(place)}: "
                    "one destination, one target"
                )
            owner[place] = name
