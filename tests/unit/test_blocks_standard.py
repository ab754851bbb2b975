"""Prefect's standard block checks over every block we ship, and their registration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL
from prefect.testing.standard_test_suites import BlockStandardTestSuite

from usegrant_flows.credentials import UseGrantCredentials
from usegrant_flows.sinks import (
    FileTokenSink,
    KeyringTokenSink,
    SecretBlockSink,
    TokenSink,
    WebhookTokenSink,
)

BLOCKS: list[type[Block]] = [
    UseGrantCredentials,
    FileTokenSink,
    SecretBlockSink,
    WebhookTokenSink,
    KeyringTokenSink,
]
ROOT = Path(__file__).resolve().parents[2]


class TestStandardBlockSuite(BlockStandardTestSuite):
    @pytest.fixture(params=BLOCKS, ids=lambda block: block.__name__)
    def block(self, request: pytest.FixtureRequest) -> type[Block]:
        return request.param  # type: ignore[no-any-return]

    @pytest.mark.skip(reason="downloads the logo: tests never send traffic beyond loopback")
    def test_has_a_valid_image(self, block: type[Block]) -> None:
        raise AssertionError("not run")


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.__name__)
def test_logo_url_is_an_https_url(block: type[Block]) -> None:
    assert str(block._logo_url).startswith("https://")


def test_token_sink_base_is_an_interface_not_a_registrable_block() -> None:
    from prefect.blocks.core import InvalidBlockRegistration

    with pytest.raises(InvalidBlockRegistration):
        TokenSink.register_type_and_schema(_sync=True)  # type: ignore[call-arg]


@pytest.mark.usefixtures("prefect_harness")
def test_prefect_block_register_registers_every_block() -> None:
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    prefect_cli = Path(sys.executable).with_name("prefect")
    result = subprocess.run(
        [str(prefect_cli), "block", "register", "-m", "usegrant_flows"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Successfully registered 5 blocks" in result.stdout
    with get_client(sync_client=True) as client:
        slugs = {block_type.slug for block_type in client.read_block_types()}
    assert {block.get_block_type_slug() for block in BLOCKS} <= slugs
