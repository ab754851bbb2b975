"""The ``usegrant-flows`` command: ``main`` is the console-script entry point."""

from __future__ import annotations

from usegrant_flows.cli.commands import app, main

__all__ = ["app", "main"]
