"""The three remote sinks' registry keys: the slug saved documents store, the fleet type.

Prefect's standard block suite runs over them with every other block in
``tests/unit/test_blocks_standard.py`` (found through Prefect's registry).
"""

from __future__ import annotations

import pytest

from usegrant_flows.sinks import (
    AwsSecretsManagerTokenSink,
    AwsSsmParameterTokenSink,
    TokenSink,
    VaultKvTokenSink,
)
from usegrant_flows.sinks.registry import SINK_KINDS

EXPECTED = {
    VaultKvTokenSink: ("usegrant-vault-kv-token-sink", "vault-kv"),
    AwsSecretsManagerTokenSink: ("usegrant-aws-secrets-manager-token-sink", "aws-secrets-manager"),
    AwsSsmParameterTokenSink: ("usegrant-aws-ssm-parameter-token-sink", "aws-ssm-parameter"),
}


@pytest.mark.parametrize("block", list(EXPECTED), ids=lambda block: block.__name__)
def test_slug_and_fleet_type_are_pinned_and_registered(block: type[TokenSink]) -> None:
    slug, kind = EXPECTED[block]
    assert block.get_block_type_slug() == slug
    assert block.kind == kind
    assert SINK_KINDS[kind] is block
    assert block.readable is True
