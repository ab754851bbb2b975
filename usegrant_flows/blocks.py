"""Every block of usegrant-flows, imported eagerly: the ``prefect.collections`` entry point.

Prefect imports this module in every process once usegrant-flows is installed
(``prefect.plugins.load_prefect_collections()``: the server, workers, the CLI, the
embedded API), which registers each block class under its pinned slug, so
``Block.load("usegrant-credentials/prod")`` works in a pipeline that never imported
usegrant-flows itself. It imports Prefect, pydantic and our block classes only (the fleet block
lives in the rotation layer, so this module does too: ``tests/unit/test_layers.py``): sink
kinds that need an optional SDK (hvac, boto3) import it inside their methods.

``prefect block register -m usegrant_flows.blocks`` registers them with a Prefect API.
"""

from __future__ import annotations

from prefect.blocks.core import Block

from usegrant_flows.credentials import UseGrantCredentials
from usegrant_flows.rotation.fleet_block import UseGrantFleet
from usegrant_flows.sinks.aws_secrets_manager import AwsSecretsManagerTokenSink
from usegrant_flows.sinks.aws_ssm import AwsSsmParameterTokenSink
from usegrant_flows.sinks.file import FileTokenSink
from usegrant_flows.sinks.keyring import KeyringTokenSink
from usegrant_flows.sinks.registry import SINK_KINDS
from usegrant_flows.sinks.secret_block import SecretBlockSink
from usegrant_flows.sinks.vault import VaultKvTokenSink
from usegrant_flows.sinks.webhook import WebhookTokenSink

__all__ = [
    "BLOCKS",
    "AwsSecretsManagerTokenSink",
    "AwsSsmParameterTokenSink",
    "FileTokenSink",
    "KeyringTokenSink",
    "SecretBlockSink",
    "UseGrantCredentials",
    "UseGrantFleet",
    "VaultKvTokenSink",
    "WebhookTokenSink",
]

#: Every block class we ship, by its pinned block-type slug: the credentials, the fleet
#: and every sink kind of the registry.
_CLASSES: list[type[Block]] = [UseGrantCredentials, UseGrantFleet, *SINK_KINDS.values()]
BLOCKS: dict[str, type[Block]] = {cls.get_block_type_slug(): cls for cls in _CLASSES}
