"""``python -m usegrant_flows.emulator``: the emulator's command line."""

from __future__ import annotations

import cyclopts

from usegrant_flows.emulator.cli import serve


def main() -> None:
    """Run :func:`~usegrant_flows.emulator.cli.serve` from the command line."""
    cyclopts.run(serve)


if __name__ == "__main__":
    main()
