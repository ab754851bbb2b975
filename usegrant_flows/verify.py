"""Public home of token verification: ``from usegrant_flows.verify import verify_token``.

The code lives in :mod:`usegrant_flows.api.verify`; this module re-exports every public
name so the documented import path never changes.
"""

from __future__ import annotations

from usegrant_flows.api import verify as _verify
from usegrant_flows.api.verify import *  # noqa: F403

__all__ = _verify.__all__
