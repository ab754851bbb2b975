"""``usegrant-flows alerts``: make a fleet's failures and silences heard.

* ``alerts apply --fleet NAME --notify BLOCK [--window SECONDS]`` creates, or updates by
  name (running it again changes nothing), the Prefect automations of a saved fleet
  (:mod:`usegrant_flows.rotation.alerts`): one reactive automation on
  ``usegrant.token.failed`` for the fleet's targets, and one proactive automation per
  target that fires when the target is not heard (no ``minted``/``fresh``/``repaired``
  event) within its window, and resolves when it is heard again. They notify through the
  notification block ``BLOCK`` (``<block-type-slug>/<block-name>``, e.g.
  ``slack-webhook/ops``), which the operator saved.

It talks to the Prefect API of the current profile (``PREFECT_API_URL``); the server's
triggers and actions services (on by default in ``prefect server start``) evaluate the
automations.
"""

from __future__ import annotations

import sys
from uuid import UUID

from cyclopts import App

from usegrant_flows.api.errors import ConfigurationError

__all__ = ["app"]

app = App(name="alerts", help="Alert on failed and unrotated tokens (Prefect automations).")


def _block_name(block: str) -> tuple[str, str]:
    slug, _, name = block.partition("/")
    if not slug or not name or "/" in name:
        raise ConfigurationError(
            f"--notify must be '<block-type-slug>/<block-name>' (e.g. slack-webhook/ops), "
            f"got {block!r}"
        )
    return slug, name


def _block_document_id(block: str) -> UUID:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    slug, name = _block_name(block)
    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(
                name=name, block_type_slug=slug, include_secrets=False
            )
        except ObjectNotFound:
            raise ConfigurationError(
                f"no notification block {block!r}: save one first (Blocks page of the UI)"
            ) from None
    return document.id


@app.command
def apply(*, fleet: str, notify: str, window: float | None = None) -> int:
    """Create or update the fleet's alert automations (idempotent by name).

    Args:
        fleet: Name of the saved UseGrant Fleet block (``fleet push``).
        notify: The notification block, ``<block-type-slug>/<block-name>``.
        window: Seconds any target may go unheard before its alert fires (>= 10);
            default each target's window from its refresh policy.
    """
    import asyncio

    from usegrant_flows.rotation.alerts import aapply_automations, fleet_automations
    from usegrant_flows.rotation.fleet_block import load_fleet

    _block_name(notify)  # bad input fails before any call
    if window is not None and not window >= 10:
        raise ConfigurationError(f"--window must be >= 10 seconds, got {window:g}")
    targets = load_fleet(fleet).targets
    block_id = _block_document_id(notify)
    automations = fleet_automations(
        fleet,
        targets,
        notify_block_id=block_id,
        window=window,
    )
    applied = asyncio.run(aapply_automations(automations))
    created = sum(1 for a in applied if a.created)
    print(
        f"fleet {fleet}: {len(applied)} automations ({created} created, "
        f"{len(applied) - created} updated), notifying {notify}",
        file=sys.stderr,
    )
    return 0
