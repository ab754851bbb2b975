"""Links shown with our blocks in the Prefect UI (pydantic only: cheap to import)."""

from __future__ import annotations

from pydantic import HttpUrl

__all__ = ["DOCUMENTATION_URL", "LOGO_URL"]

#: Logo shown for our blocks in the Prefect UI.
LOGO_URL = HttpUrl("https://usegrant.dev/favicon.png")
#: Where our blocks' documentation lives.
DOCUMENTATION_URL = HttpUrl("https://docs.usegrant.dev")
