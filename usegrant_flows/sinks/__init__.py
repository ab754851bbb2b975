"""Where minted tokens go: one Prefect block per kind of consumer.

* :class:`FileTokenSink`: a local file (raw JWT, JSON or dotenv), atomic, mode 0600.
* :class:`SecretBlockSink`: a Prefect ``Secret`` block holding the JWT.
* :class:`WebhookTokenSink`: an HTTPS POST, optionally HMAC-signed (write-only).
* :class:`KeyringTokenSink`: the operating system's keyring.

All share :class:`TokenSink`: ``write(token, metadata=None)``, ``read()``, their async
twins ``awrite``/``aread``, ``readable`` and ``describe()``.

Sinks that write to remote secret stores; their SDKs are optional extras that are
imported only inside their methods, so importing this package never imports ``hvac``,
``boto3``, ``botocore`` or ``prefect_aws`` (the classes themselves are imported here so
that Prefect finds them when it loads a saved block by its type slug):

* :class:`VaultKvTokenSink`: a Vault / OpenBao KV v2 secret (``usegrant-flows[vault]``).
* :class:`AwsSecretsManagerTokenSink`: an AWS Secrets Manager secret (``[aws]``).
* :class:`AwsSsmParameterTokenSink`: an AWS SSM SecureString parameter (``[aws]``).
"""

from __future__ import annotations

from usegrant_flows.sinks.aws_secrets_manager import AwsSecretsManagerTokenSink
from usegrant_flows.sinks.aws_ssm import AwsSsmParameterTokenSink
from usegrant_flows.sinks.base import SinkError, TokenMetadata, TokenSink
from usegrant_flows.sinks.file import FileTokenSink
from usegrant_flows.sinks.keyring import KeyringTokenSink
from usegrant_flows.sinks.secret_block import SecretBlockSink
from usegrant_flows.sinks.vault import VaultKvTokenSink
from usegrant_flows.sinks.webhook import WebhookDeliveryError, WebhookTokenSink

__all__ = [
    "AwsSecretsManagerTokenSink",
    "AwsSsmParameterTokenSink",
    "FileTokenSink",
    "KeyringTokenSink",
    "SecretBlockSink",
    "SinkError",
    "TokenMetadata",
    "TokenSink",
    "VaultKvTokenSink",
    "WebhookDeliveryError",
    "WebhookTokenSink",
]
