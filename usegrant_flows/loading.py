"""Loading saved blocks by name: one rule for every caller.

A block that is missing, or of the wrong kind, is a :class:`ConfigurationError` whose
one line names what was looked for, never a silent default. The rotation runner, the
quota commands, the fleet plan and the tasks all load through here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TypeVar, cast

from prefect.blocks.core import Block

from usegrant_flows.api.errors import ConfigurationError

__all__ = ["aload_block", "load_block"]

B = TypeVar("B", bound=Block)


@contextlib.contextmanager
def _not_found_is_configuration(name: str, what: str, hint: str | None) -> Iterator[None]:
    try:
        yield
    except (ValueError, KeyError):
        # Prefect raises ValueError for a missing document and KeyError (or its
        # UnknownBlockType subclass) for an unknown "slug/" part.
        message = f"{what} '{name}' not found"
        raise ConfigurationError(f"{message}: {hint}" if hint else message) from None


def _loader(kind: type[Block], name: str) -> type[Block]:
    # Only Block itself reads "slug/name"; a subclass takes the whole string as a name.
    return Block if "/" in name else kind


def _checked(block: Block, kind: type[B], name: str, what: str) -> B:
    if not isinstance(block, kind):
        raise ConfigurationError(f"block '{name}' is not a {what.removesuffix(' block')}")
    return block


async def aload_block(kind: type[B], name: str, *, what: str, hint: str | None = None) -> B:
    """Load a saved block of ``kind`` by name.

    Args:
        kind: The block class (an abstract base such as ``TokenSink`` is fine).
        name: The block's name, or a ``"<block-type-slug>/<block-name>"`` reference
            (Prefect resolves the slug; the block must still be a ``kind``).
        what: What the block is, in the user's words (``"credentials block"``).
        hint: What to do when it is missing, appended to the error.

    Raises:
        ConfigurationError: When no such block exists or it is not a ``kind``.
    """
    with _not_found_is_configuration(name, what, hint):
        block = await _loader(kind, name).aload(name)
    return _checked(cast(Block, block), kind, name, what)


def load_block(kind: type[B], name: str, *, what: str, hint: str | None = None) -> B:
    """Sync form of :func:`aload_block` (for CLIs and sync flows)."""
    with _not_found_is_configuration(name, what, hint):
        block = _loader(kind, name).load(name, _sync=True)  # type: ignore[call-arg]
    return _checked(cast(Block, block), kind, name, what)
