"""usegrant-flows: mint UseGrant access tokens from Prefect, and push them downstream.

The core (client, models, settings, errors) never imports Prefect, so
``import usegrant_flows.api.client`` stays cheap. The Prefect-layer names below
(``UseGrantCredentials``, ``create_access_token``, ``acreate_access_token``) are loaded
on first use (PEP 562), and listed by :func:`dir` so that
``prefect block register -m usegrant_flows`` finds the blocks. The package map is in
``docs/architecture.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from usegrant_flows._version import __version__

if TYPE_CHECKING:
    from usegrant_flows.api.client import AsyncUseGrantClient, UseGrantClient
    from usegrant_flows.api.models import AccessToken
    from usegrant_flows.api.settings import UseGrantSettings
    from usegrant_flows.aws_exchange import aexchange_aws_credentials, exchange_aws_credentials
    from usegrant_flows.credentials import UseGrantCredentials
    from usegrant_flows.rotation.fleet_block import UseGrantFleet
    from usegrant_flows.sinks import (
        AwsSecretsManagerTokenSink,
        AwsSsmParameterTokenSink,
        FileTokenSink,
        KeyringTokenSink,
        SecretBlockSink,
        VaultKvTokenSink,
        WebhookTokenSink,
    )
    from usegrant_flows.tasks import acreate_access_token, create_access_token

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "UseGrantClient": "usegrant_flows.api.client",
    "AsyncUseGrantClient": "usegrant_flows.api.client",
    "AccessToken": "usegrant_flows.api.models",
    "UseGrantSettings": "usegrant_flows.api.settings",
    "UseGrantCredentials": "usegrant_flows.credentials",
    "UseGrantFleet": "usegrant_flows.rotation.fleet_block",
    "create_access_token": "usegrant_flows.tasks",
    "acreate_access_token": "usegrant_flows.tasks",
    # Listed here so that `prefect block register -m usegrant_flows` registers them.
    "FileTokenSink": "usegrant_flows.sinks",
    "SecretBlockSink": "usegrant_flows.sinks",
    "WebhookTokenSink": "usegrant_flows.sinks",
    "KeyringTokenSink": "usegrant_flows.sinks",
    "VaultKvTokenSink": "usegrant_flows.sinks",
    "AwsSecretsManagerTokenSink": "usegrant_flows.sinks",
    "AwsSsmParameterTokenSink": "usegrant_flows.sinks",
    "exchange_aws_credentials": "usegrant_flows.aws_exchange",
    "aexchange_aws_credentials": "usegrant_flows.aws_exchange",
}

__all__ = [
    "AccessToken",
    "AsyncUseGrantClient",
    "AwsSecretsManagerTokenSink",
    "AwsSsmParameterTokenSink",
    "FileTokenSink",
    "KeyringTokenSink",
    "SecretBlockSink",
    "UseGrantClient",
    "UseGrantCredentials",
    "UseGrantFleet",
    "UseGrantSettings",
    "VaultKvTokenSink",
    "WebhookTokenSink",
    "__version__",
    "acreate_access_token",
    "aexchange_aws_credentials",
    "create_access_token",
    "exchange_aws_credentials",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
