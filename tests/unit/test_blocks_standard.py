"""Prefect's standard block checks over every block we ship, and the collection entry point.

The blocks under test are the ones Prefect's own registry holds after it loads the
installed collections, not a list kept by hand: a block that the ``prefect.collections``
entry point forgets is missing here, and the slug test below fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from abc import ABC
from pathlib import Path

import pytest
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.plugins import load_prefect_collections
from prefect.settings import PREFECT_API_URL
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from prefect.utilities.dispatch import get_registry_for_type

from usegrant_flows.credentials import UseGrantCredentials
from usegrant_flows.sinks import TokenSink

#: The slugs saved documents and fleet files store: a contract, written out literally.
PINNED_SLUGS = {
    "usegrant-credentials",
    "usegrant-fleet",
    "usegrant-file-token-sink",
    "usegrant-keyring-token-sink",
    "usegrant-vault-kv-token-sink",
    "usegrant-aws-secrets-manager-token-sink",
    "usegrant-aws-ssm-parameter-token-sink",
    "usegrant-secret-block-token-sink",
    "usegrant-webhook-token-sink",
}


def our_blocks() -> list[type[Block]]:
    load_prefect_collections()
    registry = get_registry_for_type(Block) or {}
    return sorted(
        (
            cls
            for cls in registry.values()
            if cls.__module__.startswith("usegrant_flows.") and ABC not in cls.__bases__
        ),
        key=lambda cls: cls.__name__,
    )


BLOCKS = our_blocks()
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


def test_every_block_pins_its_slug_and_the_registry_holds_them_all() -> None:
    assert {block.__dict__.get("_block_type_slug") for block in BLOCKS} == PINNED_SLUGS
    assert UseGrantCredentials in BLOCKS


def _fresh_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        cwd=Path("/"),  # not the checkout: the installed package only
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_loading_the_collections_resolves_every_slug_in_a_fresh_process() -> None:
    code = (
        "import json, sys\n"
        "from prefect.blocks.core import Block\n"
        "from prefect.plugins import load_prefect_collections\n"
        "before = 'usegrant_flows' in sys.modules\n"
        "load_prefect_collections()\n"
        f"slugs = {sorted(PINNED_SLUGS)!r}\n"
        "classes = {s: Block.get_block_class_from_key(s).__name__ for s in slugs}\n"
        "print(json.dumps([before, classes]))\n"
    )
    result = _fresh_python(code)
    assert result.returncode == 0, result.stderr
    before, classes = json.loads(result.stdout.splitlines()[-1])
    assert before is False
    assert set(classes) == PINNED_SLUGS
    assert classes["usegrant-credentials"] == "UseGrantCredentials"


@pytest.mark.usefixtures("prefect_harness")
def test_a_pipeline_that_never_imported_us_loads_saved_credentials_by_slug() -> None:
    UseGrantCredentials(api_key="usegrant_collection_key", base_url="http://127.0.0.1:9").save(
        "collection-test", overwrite=True
    )
    code = (
        "import sys\n"
        "from prefect.blocks.core import Block\n"
        "block = Block.load('usegrant-credentials/collection-test')\n"
        "print(type(block).__name__, block.base_url)\n"
    )
    result = _fresh_python(code, PREFECT_API_URL=str(PREFECT_API_URL.value()))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["UseGrantCredentials", "http://127.0.0.1:9"]


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
    assert "Successfully registered 9 blocks" in result.stdout
    with get_client(sync_client=True) as client:
        slugs = {block_type.slug for block_type in client.read_block_types()}
    assert {block.get_block_type_slug() for block in BLOCKS} <= slugs
