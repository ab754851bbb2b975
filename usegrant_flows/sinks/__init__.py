"""Where minted tokens go: one Prefect block per kind of consumer.

* :class:`FileTokenSink`: a local file (raw JWT, JSON or dotenv), atomic, mode 0600.
* :class:`SecretBlockSink`: a Prefect ``Secret`` block holding the JWT.
* :class:`WebhookTokenSink`: an HTTPS POST, optionally HMAC-signed (write-only).
* :class:`KeyringTokenSink`: the operating system's keyring.

All share :class:`TokenSink`: ``write(token, metadata=None)``, ``read()``, their async
twins ``awrite``/``aread``, ``readable`` and ``describe()``.
"""

from __future__ import annotations

from usegrant_flows.sinks.base import SinkError, TokenMetadata, TokenSink
from usegrant_flows.sinks.file import FileTokenSink
from usegrant_flows.sinks.keyring import KeyringTokenSink
from usegrant_flows.sinks.secret_block import SecretBlockSink
from usegrant_flows.sinks.webhook import WebhookDeliveryError, WebhookTokenSink

__all__ = [
    "FileTokenSink",
    "KeyringTokenSink",
    "SecretBlockSink",
    "SinkError",
    "TokenMetadata",
    "TokenSink",
    "WebhookDeliveryError",
    "WebhookTokenSink",
]
