"""``usegrant-flows quota``: set up and inspect the request budget of API keys.

* ``quota apply BLOCK...`` (or ``--all``) creates or updates the Prefect global
  concurrency limit ``usegrant-quota-<block>`` from each UseGrant Credentials block's
  ``max_requests_per_hour``; running it again changes nothing.
* ``quota show BLOCK...`` (or ``--all``) prints each block's budget and its limit as the
  Prefect server holds it.
* ``quota plan FLEET_FILE`` prints what a fleet needs per key against the budgets, and
  exits 3 when it does not fit (the same check a rotation makes before any request);
  2 means the input is wrong (a missing block, a bad fleet file), as everywhere.

Every command talks to the Prefect API of the current profile (``PREFECT_API_URL``).
"""

from __future__ import annotations

import sys

from cyclopts import App

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.quota.budget import Budget

__all__ = ["EXIT_DOES_NOT_FIT", "app"]

#: Exit status of ``quota plan`` for a fleet that needs more than its budgets: distinct
#: from 2 (bad input) so that a script can tell "fix the file" from "fix the budget".
EXIT_DOES_NOT_FIT = 3

app = App(name="quota", help="Set up and inspect the API keys' request budgets.")


def _load(name: str) -> Budget:
    from usegrant_flows.credentials import load_credentials

    return load_credentials(name).budget()


def _all_block_names() -> list[str]:
    from prefect.client.orchestration import get_client

    from usegrant_flows.credentials import UseGrantCredentials

    slug = UseGrantCredentials.get_block_type_slug()
    with get_client(sync_client=True) as client:
        documents = client.read_block_documents_by_type(slug, include_secrets=False)
    return sorted(d.name for d in documents if d.name and not d.is_anonymous)


def _names(blocks: tuple[str, ...], all_blocks: bool) -> list[str]:
    if all_blocks:
        return _all_block_names()
    if not blocks:
        raise ConfigurationError("name one or more credentials blocks, or use --all")
    return list(blocks)


@app.command
def apply(*blocks: str, all_blocks: bool = False) -> int:
    """Create or update the global rate limit of each credentials block (idempotent).

    Args:
        blocks: UseGrant Credentials block names.
        all_blocks: Every saved UseGrant Credentials block.
    """
    from usegrant_flows.quota.limiter import apply_quota, limit_name

    for name in _names(blocks, all_blocks):
        budget = _load(name)
        spec = apply_quota(name, budget)
        print(
            f"{limit_name(name)}: {budget.describe()} -> limit {spec.limit} slots, "
            f"decay {spec.slot_decay_per_second:.3f} slots/s, "
            f"{spec.slots_per_request} slots per request"
        )
    return 0


@app.command
def show(*blocks: str, all_blocks: bool = False) -> int:
    """Print each credentials block's budget and its limit on the Prefect server.

    Args:
        blocks: UseGrant Credentials block names.
        all_blocks: Every saved UseGrant Credentials block.
    """
    from usegrant_flows.quota.limiter import QuotaSpec, limit_name, read_quota

    for name in _names(blocks, all_blocks):
        budget = _load(name)
        status = read_quota(name)
        if status is None:
            print(
                f"{limit_name(name)}: {budget.describe()}; no limit on the server yet "
                f"(run `usegrant-flows quota apply {name}`)"
            )
            continue
        spec = QuotaSpec.for_budget(budget)
        stale = (
            ""
            if (status.limit, status.slot_decay_per_second)
            == (spec.limit, spec.slot_decay_per_second)
            else f" (out of date: run `usegrant-flows quota apply {name}`)"
        )
        print(f"{status.describe(spec.slots_per_request)}; budget {budget.describe()}{stale}")
    return 0


@app.command
def plan(fleet_file: str) -> int:
    """Print what a fleet file needs per API key; exit 3 when it exceeds a budget.

    Exits 2 when the input is wrong: a missing or invalid fleet file, a credentials
    block that does not exist.

    Args:
        fleet_file: A YAML or JSON fleet file (see ``usegrant_flows.rotation.fleet``).
    """
    from usegrant_flows.rotation.fleet_file import load_fleet_file
    from usegrant_flows.rotation.plan import plan_fleet

    targets = load_fleet_file(fleet_file)
    names = {t.credentials for t in targets}
    budgets: dict[str | None, Budget] = {name: _load(name) for name in names if name}
    result = plan_fleet(targets, budgets)
    for key in result.keys:
        print(key.summary() if key.fits else key.refusal())
    if not result.fits:
        print("usegrant-flows: the fleet does not fit its request budget", file=sys.stderr)
        return EXIT_DOES_NOT_FIT
    return 0
