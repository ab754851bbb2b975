"""The demo's first-run table keeps every id whole in an 80-column terminal."""

from __future__ import annotations

import io

from rich.console import Console

from usegrant_flows.cli.demo_report import print_first_run
from usegrant_flows.emulator.seed import default_seed


def test_fingerprints_targets_and_audiences_are_whole_at_80_columns() -> None:
    clients = default_seed("usegrant_emu_x").providers[0].clients
    rows = [
        (f"demo-{c.name}", "minted", f"{i:012x}", "12:34:56", "ok / ok", c.audience)
        for i, c in enumerate(clients)
    ]
    out = io.StringIO()
    print_first_run(Console(width=80, file=out, color_system=None), rows)
    text = out.getvalue()
    for target, _, fingerprint, _, _, audience in rows:
        assert target in text and fingerprint in text
        assert audience in text  # printed on one logical line, never cut with an ellipsis
    assert "…" not in text
    table_lines = text.split("Audiences:")[0].splitlines()
    assert max(len(line) for line in table_lines) <= 80
