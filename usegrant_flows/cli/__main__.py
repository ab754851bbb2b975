"""``python -m usegrant_flows.cli``: the ``usegrant-flows`` command."""

import sys

from usegrant_flows.cli.commands import main

sys.exit(main())
