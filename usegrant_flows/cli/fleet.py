"""``usegrant-flows fleet``: keep a fleet in the Prefect server, where every worker finds it.

* ``fleet push FILE --name NAME [--overwrite]`` reads a YAML or JSON fleet file with the
  same strict rules as a rotation (one-line errors, exit 2 on bad input), makes its
  relative file-sink paths absolute (against the file's folder) and saves it as a
  ``UseGrant Fleet`` block. An existing block is replaced only with ``--overwrite``.
* ``fleet show NAME`` prints a saved fleet as YAML (a fleet file that can be pushed
  again).

Both talk to the Prefect API of the current profile (``PREFECT_API_URL``).
"""

from __future__ import annotations

import sys

from cyclopts import App

from usegrant_flows.api.errors import ConfigurationError

__all__ = ["app"]

app = App(name="fleet", help="Save fleets of rotation targets in Prefect, and show them.")


@app.command
def push(file: str, /, *, name: str, overwrite: bool = False) -> int:
    """Validate a fleet file and save it as a UseGrant Fleet block.

    Args:
        file: The fleet file (YAML, or JSON when it ends in .json).
        name: Name of the block (what the rotate-tokens deployment's ``fleet`` picks).
        overwrite: Replace an existing fleet block of that name.
    """
    from usegrant_flows.rotation.fleet_block import UseGrantFleet
    from usegrant_flows.rotation.fleet_file import load_fleet_file

    targets = load_fleet_file(file)  # paths already absolute: resolved at the file's folder
    if not targets:
        raise ConfigurationError(f"fleet file {file}: no targets")
    block = UseGrantFleet(targets=targets)
    try:
        block.save(name, overwrite=overwrite)
    except ValueError as exc:
        if "already in use" in str(exc):  # Prefect's words for an existing name
            raise ConfigurationError(
                f"fleet block '{name}' already exists; pass --overwrite to replace it"
            ) from None
        raise ConfigurationError(f"fleet block '{name}': {exc}") from None
    queues = sorted({t.work_queue for t in targets if t.work_queue is not None})
    where = f" (work queues: {', '.join(queues)})" if queues else ""
    print(f"Saved fleet block '{name}': {len(targets)} targets{where}.", file=sys.stderr)
    return 0


@app.command
def show(name: str, /) -> int:
    """Print a saved fleet as YAML.

    Args:
        name: The fleet block's name.
    """
    import yaml

    from usegrant_flows.rotation.fleet_block import load_fleet

    document = load_fleet(name).document()
    print(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), end="")
    return 0
