"""Seeds: custom providers, clients and keys; per-key rate limits; bad seeds refused."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.emulator import (
    AWS_CLIENT_ID,
    AZURE_CLIENT_ID,
    DEFAULT_PROVIDER_ID,
    GCP_CLIENT_ID,
    default_seed,
    load_seed,
    run_emulator,
)

PROVIDER_A = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000001")
PROVIDER_B = uuid.UUID("bbbbbbbb-0000-4000-8000-000000000001")
CLIENT_A = uuid.UUID("aaaaaaaa-0000-4000-8000-0000000000c1")
CLIENT_B = uuid.UUID("bbbbbbbb-0000-4000-8000-0000000000c1")


def two_provider_seed() -> dict[str, Any]:
    return {
        "api_keys": ["usegrant_key_one", "uga_key_two"],
        "providers": [
            {
                "id": str(PROVIDER_A),
                "name": "a",
                "default_domain": "a.auth.usegrant.dev",
                "custom_domain": None,
                "clients": [
                    {"id": str(CLIENT_A), "name": "ca", "audience": "aud-a", "subject": "sub-a"}
                ],
            },
            {
                "id": str(PROVIDER_B),
                "name": "b",
                "default_domain": "b.auth.usegrant.dev",
                "custom_domain": "login.b.test",
                "clients": [
                    {"id": str(CLIENT_B), "name": "cb", "audience": "aud-b", "subject": "sub-b"}
                ],
            },
        ],
    }


def post(base_url: str, key: str, provider: uuid.UUID, client: uuid.UUID) -> httpx.Response:
    return httpx.post(
        f"{base_url}/v1/providers/{provider}/clients/{client}/tokens",
        headers={"Authorization": f"Bearer {key}"},
    )


def test_default_seed_has_well_known_ids_and_three_cloud_audiences() -> None:
    seed = default_seed()
    provider = seed.providers[0]
    assert provider.id == DEFAULT_PROVIDER_ID
    assert provider.custom_domain
    audiences = {client.id: client.audience for client in provider.clients}
    assert audiences[AWS_CLIENT_ID] == "sts.amazonaws.com"
    assert audiences[GCP_CLIENT_ID].startswith("//iam.googleapis.com/projects/")
    assert audiences[AZURE_CLIENT_ID] == "api://AzureADTokenExchange"


def test_default_seed_key_is_random_per_start_with_emulator_prefix() -> None:
    first = default_seed().api_keys[0].get_secret_value()
    second = default_seed().api_keys[0].get_secret_value()
    assert first.startswith("usegrant_emu_")
    assert first != second


def test_seed_repr_does_not_show_api_keys() -> None:
    seed = default_seed()
    assert seed.api_keys[0].get_secret_value() not in repr(seed)


def test_seed_file_is_served(tmp_path: Path) -> None:
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps(two_provider_seed()))
    with run_emulator(seed_file) as emu:
        response = post(emu.base_url, "uga_key_two", PROVIDER_B, CLIENT_B)
        assert response.status_code == 201
        claims = jwt.decode(response.json()["accessToken"], options={"verify_signature": False})
    assert claims["iss"] == "https://login.b.test"
    assert (claims["aud"], claims["sub"]) == ("aud-b", "sub-b")


def test_provider_without_custom_domain_issues_from_its_default_domain() -> None:
    with run_emulator(two_provider_seed()) as emu:
        token = post(emu.base_url, emu.api_key, PROVIDER_A, CLIENT_A).json()["accessToken"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == "https://a.auth.usegrant.dev"


def test_each_provider_signs_with_its_own_key() -> None:
    with run_emulator(two_provider_seed()) as emu:
        token_a = post(emu.base_url, emu.api_key, PROVIDER_A, CLIENT_A).json()["accessToken"]
        token_b = post(emu.base_url, emu.api_key, PROVIDER_B, CLIENT_B).json()["accessToken"]
        kids = {key["kid"] for key in httpx.get(emu.jwks_url).json()["keys"]}
    kid_a = jwt.get_unverified_header(token_a)["kid"]
    kid_b = jwt.get_unverified_header(token_b)["kid"]
    assert kid_a != kid_b
    assert {kid_a, kid_b} == kids


def test_client_of_another_provider_is_not_found() -> None:
    with run_emulator(two_provider_seed()) as emu:
        assert post(emu.base_url, emu.api_key, PROVIDER_A, CLIENT_B).status_code == 404


def test_discovery_picks_the_provider_by_query_or_host() -> None:
    with run_emulator(two_provider_seed()) as emu:
        url = f"{emu.base_url}/.well-known/openid-configuration"
        by_query = httpx.get(url, params={"provider": str(PROVIDER_B)}).json()
        by_host = httpx.get(url, headers={"Host": "a.auth.usegrant.dev"}).json()
    assert by_query["issuer"] == "https://login.b.test"
    assert by_host["issuer"] == "https://a.auth.usegrant.dev"


def test_rate_limit_is_per_api_key() -> None:
    with run_emulator(two_provider_seed(), rate_limit=1) as emu:
        assert post(emu.base_url, "usegrant_key_one", PROVIDER_A, CLIENT_A).status_code == 201
        assert post(emu.base_url, "usegrant_key_one", PROVIDER_A, CLIENT_A).status_code == 429
        assert post(emu.base_url, "uga_key_two", PROVIDER_A, CLIENT_A).status_code == 201


@pytest.mark.parametrize(
    "change",
    [
        {"api_keys": []},
        {"providers": [{"id": "not-a-uuid", "name": "x", "default_domain": "x"}]},
        {"unexpected": True},
    ],
)
def test_invalid_seed_raises_configuration_error(change: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="seed"):
        load_seed({**two_provider_seed(), **change})


def test_duplicate_provider_ids_are_refused() -> None:
    seed = two_provider_seed()
    seed["providers"][1]["id"] = str(PROVIDER_A)
    with pytest.raises(ConfigurationError, match="unique"):
        load_seed(seed)


def test_missing_seed_file_raises_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read seed file"):
        load_seed(tmp_path / "missing.json")


def test_bad_fault_setting_refuses_to_start() -> None:
    with pytest.raises(ConfigurationError, match="drop_rate"), run_emulator(drop_rate=1.5):
        pass
