"""The flows' parameters as the Prefect UI's "Custom run" form sees them (parameter schema)."""

from __future__ import annotations

from typing import Any

import pytest
from prefect.utilities.callables import parameter_schema

from usegrant_flows.rotation.mint_flow import mint_token
from usegrant_flows.rotation.rotate_flow import rotate_tokens


@pytest.fixture(scope="module")
def mint_schema() -> dict[str, Any]:
    return parameter_schema(mint_token).model_dump_for_openapi()


@pytest.fixture(scope="module")
def rotate_schema() -> dict[str, Any]:
    return parameter_schema(rotate_tokens).model_dump_for_openapi()


def walk(node: Any) -> list[dict[str, Any]]:
    """Every JSON-schema object in ``node``, nested ones included."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found += walk(value)
    elif isinstance(node, list):
        for value in node:
            found += walk(value)
    return found


def test_mint_token_requires_only_the_two_uuids(mint_schema: dict[str, Any]) -> None:
    assert mint_schema["required"] == ["provider_id", "client_id"]
    for name in ("provider_id", "client_id"):
        assert mint_schema["properties"][name]["format"] == "uuid"


def test_mint_token_expiry_is_bounded_in_seconds(mint_schema: dict[str, Any]) -> None:
    expires_in = mint_schema["properties"]["expires_in"]
    assert (expires_in["type"], expires_in["minimum"], expires_in["maximum"]) == (
        "integer",
        1,
        172800,
    )
    assert expires_in["default"] == 3600
    assert "seconds" in expires_in["description"]


def test_mint_token_options_are_boolean_toggles_off_by_default(mint_schema: dict[str, Any]) -> None:
    for name in ("use_jwt_type", "audience_as_array", "force_default_domain"):
        assert (
            mint_schema["properties"][name]["type"],
            mint_schema["properties"][name]["default"],
        ) == (
            "boolean",
            False,
        )


def test_mint_token_sinks_and_credentials_are_chosen_by_name(mint_schema: dict[str, Any]) -> None:
    for name in ("credentials_block", "file_path", "secret_block_name", "webhook_block_name"):
        prop = mint_schema["properties"][name]
        assert {"type": "string"} in prop["anyOf"] and prop["description"]


def test_mint_token_file_format_is_an_enum(mint_schema: dict[str, Any]) -> None:
    assert mint_schema["properties"]["file_format"]["enum"] == ["raw", "json", "dotenv"]


def test_every_parameter_has_a_description(
    mint_schema: dict[str, Any], rotate_schema: dict[str, Any]
) -> None:
    for schema in (mint_schema, rotate_schema):
        assert all(prop.get("description") for prop in schema["properties"].values())


def test_no_parameter_is_a_secret(
    mint_schema: dict[str, Any], rotate_schema: dict[str, Any]
) -> None:
    for schema in (mint_schema, rotate_schema):
        for node in walk(schema):
            assert node.get("format") != "password" and not node.get("writeOnly")
            names = set(node.get("properties", {}))
            assert not names & {"api_key", "token", "access_token", "headers", "signing_key"}


def test_rotate_tokens_targets_are_typed_with_a_sink_union(rotate_schema: dict[str, Any]) -> None:
    target = rotate_schema["definitions"]["RotationTarget"]
    assert target["properties"]["provider_id"]["format"] == "uuid"
    assert target["properties"]["expires_in"]["anyOf"][0]["maximum"] == 172800
    mapping = target["properties"]["sinks"]["items"]["discriminator"]["mapping"]
    assert set(mapping) == {
        "file",
        "secret-block",
        "keyring",
        "vault-kv",
        "aws-secrets-manager",
        "aws-ssm-parameter",
        "block",
    }


def test_rotate_tokens_concurrency_and_batch_size_are_bounded(
    rotate_schema: dict[str, Any],
) -> None:
    props = rotate_schema["properties"]
    assert (props["concurrency"]["minimum"], props["concurrency"]["maximum"]) == (1, 1000)
    assert (props["batch_size"]["minimum"], props["batch_size"]["maximum"]) == (1, 5000)
