"""The deployments' parameters as the Prefect UI's "Custom run" form sees them.

A run may only name what an operator saved: no parameter of a deployed flow is a path, a
URL, an endpoint, an inline target or sink, a file or a credentials block.
"""

from __future__ import annotations

from typing import Any

import pytest
from prefect.utilities.callables import parameter_schema

from usegrant_flows.rotation.mint_flow import mint_token
from usegrant_flows.rotation.rotate_flow import rotate_tokens, rotate_tokens_on_host

DEPLOYED = {"rotate-tokens": rotate_tokens, "on-host": rotate_tokens_on_host, "mint": mint_token}
FORBIDDEN = {
    "targets",
    "targets_file",
    "fleet_block",
    "file_path",
    "file_format",
    "secret_block_name",
    "webhook_block_name",
    "credentials_block",
    "url",
    "endpoint_url",
    "path",
}


@pytest.fixture(scope="module")
def schemas() -> dict[str, dict[str, Any]]:
    return {name: parameter_schema(f).model_dump_for_openapi() for name, f in DEPLOYED.items()}


def test_the_fleet_is_a_block_picker_of_usegrant_fleet_blocks(
    schemas: dict[str, dict[str, Any]],
) -> None:
    for schema in schemas.values():
        assert schema["properties"]["fleet"]["$ref"] == "#/definitions/UseGrantFleet"
        assert schema["definitions"]["UseGrantFleet"]["block_type_slug"] == "usegrant-fleet"
        assert "fleet" in schema["required"]


def test_rotate_tokens_takes_only_names_and_choices(schemas: dict[str, dict[str, Any]]) -> None:
    props = schemas["rotate-tokens"]["properties"]
    assert set(props) == {
        "fleet",
        "target_names",
        "force",
        "concurrency",
        "batch_size",
        "spread_seconds",
        "queue_timeout_seconds",
    }
    assert props["target_names"] == {**props["target_names"], "type": "array", "default": []}
    assert props["target_names"]["items"] == {"type": "string"}


def test_mint_token_takes_a_fleet_a_target_name_and_a_shorter_lifetime(
    schemas: dict[str, dict[str, Any]],
) -> None:
    schema = schemas["mint"]
    assert set(schema["properties"]) == {"fleet", "target", "expires_in"}
    assert schema["required"] == ["fleet", "target"]
    expires_in = schema["properties"]["expires_in"]
    assert (expires_in["type"], expires_in["minimum"], expires_in["maximum"]) == (
        "integer",
        0,
        172800,
    )
    assert expires_in["default"] == 0 and "seconds" in expires_in["description"]


def test_the_child_deployment_takes_the_fleet_names_and_its_queue(
    schemas: dict[str, dict[str, Any]],
) -> None:
    schema = schemas["on-host"]
    assert {"fleet", "target_names", "queue"} <= set(schema["properties"])
    assert schema["required"] == ["fleet", "queue"]


def test_no_deployed_parameter_is_a_path_url_inline_target_or_credentials(
    schemas: dict[str, dict[str, Any]],
) -> None:
    for schema in schemas.values():
        assert not set(schema["properties"]) & FORBIDDEN


def test_every_parameter_has_a_readable_title_and_a_description(
    schemas: dict[str, dict[str, Any]],
) -> None:
    for schema in schemas.values():
        for name, prop in schema["properties"].items():
            assert prop["title"] != name and prop["title"][0].isupper(), name
            assert prop.get("description"), name


def test_no_parameter_is_optional_so_the_form_shows_no_type_none_switch(
    schemas: dict[str, dict[str, Any]],
) -> None:
    for schema in schemas.values():
        for prop in schema["properties"].values():
            assert "anyOf" not in prop and prop.get("type") != "null"


def test_concurrency_and_batch_size_are_bounded(schemas: dict[str, dict[str, Any]]) -> None:
    props = schemas["rotate-tokens"]["properties"]
    assert (props["concurrency"]["minimum"], props["concurrency"]["maximum"]) == (1, 1000)
    assert (props["batch_size"]["minimum"], props["batch_size"]["maximum"]) == (1, 5000)
