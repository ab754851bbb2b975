"""The only place the emulator imports from the rest of ``usegrant_flows``.

The emulator must stay importable without Prefect or the client, and the package
around it is being restructured: keeping every outside import here means a move of
:mod:`usegrant_flows.models` or :mod:`usegrant_flows.errors` is a one-line change.
"""

from __future__ import annotations

from usegrant_flows.errors import ConfigurationError, UseGrantError
from usegrant_flows.models import MAX_EXPIRES_IN, format_js_datetime

__all__ = ["MAX_EXPIRES_IN", "ConfigurationError", "UseGrantError", "format_js_datetime"]
