"""Prefect's standard block checks over the three remote sinks, and their registry keys."""

from __future__ import annotations

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite

from usegrant_flows.sinks import (
    AwsSecretsManagerTokenSink,
    AwsSsmParameterTokenSink,
    TokenSink,
    VaultKvTokenSink,
)

EXPECTED = {
    VaultKvTokenSink: ("usegrant-vault-kv-token-sink", "vault-kv"),
    AwsSecretsManagerTokenSink: ("usegrant-aws-secrets-manager-token-sink", "aws-secrets-manager"),
    AwsSsmParameterTokenSink: ("usegrant-aws-ssm-parameter-token-sink", "aws-ssm-parameter"),
}


class TestStandardBlockSuite(BlockStandardTestSuite):
    @pytest.fixture(params=list(EXPECTED), ids=lambda block: block.__name__)
    def block(self, request: pytest.FixtureRequest) -> type[Block]:
        return request.param  # type: ignore[no-any-return]

    @pytest.mark.skip(reason="downloads the logo: tests never send traffic beyond loopback")
    def test_has_a_valid_image(self, block: type[Block]) -> None:
        raise AssertionError("not run")


@pytest.mark.parametrize("block", list(EXPECTED), ids=lambda block: block.__name__)
def test_slug_fleet_type_and_kind_are_pinned(block: type[TokenSink]) -> None:
    slug, fleet_type = EXPECTED[block]
    assert block.get_block_type_slug() == slug
    assert block.fleet_type == fleet_type  # type: ignore[attr-defined]
    assert block.kind == fleet_type
    assert block.readable is True
    assert str(block._logo_url).startswith("https://")
