"""Public home of the exception tree: ``from usegrant_flows.errors import UseGrantError``.

The classes live in :mod:`usegrant_flows.api.errors` (the tree is drawn in its
docstring); this module re-exports every public name so the documented import path never
changes.
"""

from __future__ import annotations

from usegrant_flows.api import errors as _errors
from usegrant_flows.api.errors import *  # noqa: F403

__all__ = _errors.__all__
