"""One destination, one target: a fleet naming one destination twice is refused.

Refused when the fleet is parsed (files, parameters) and when a fleet block is built or
saved, with one line naming both targets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.rotation.fleet import parse_fleet
from usegrant_flows.rotation.fleet_block import UseGrantFleet

P = "10000000-0000-4000-8000-000000000001"


def t(name: str, *sinks: Any, client: int = 1) -> dict[str, Any]:
    return {
        "name": name,
        "provider_id": P,
        "client_id": f"20000000-0000-4000-8000-{client:012d}",
        "sinks": list(sinks),
    }


def vault(url: str, path: str) -> dict[str, Any]:
    return {"type": "vault-kv", "url": url, "path": path, "jwt_role": "r"}


def refusal(*targets: dict[str, Any], base_dir: Path | None = None) -> str:
    with pytest.raises(ConfigurationError) as caught:
        parse_fleet({"targets": list(targets)}, base_dir=base_dir)
    return str(caught.value)


def test_two_targets_writing_one_file_after_normalisation_are_refused(tmp_path: Path) -> None:
    (tmp_path / "tokens").mkdir()
    aws = t("aws", {"type": "file", "path": "tokens/aws.jwt"})
    gcp = t("gcp", {"type": "file", "path": "tokens/../tokens/./aws.jwt"}, client=2)
    message = refusal(aws, gcp, base_dir=tmp_path)
    assert message == (
        f"fleet: targets 'aws' and 'gcp' both write file {tmp_path / 'tokens' / 'aws.jwt'}: "
        "one destination, one target"
    )


def test_a_file_reached_through_a_symlinked_folder_is_the_same_destination(
    tmp_path: Path,
) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    aws = t("aws", {"type": "file", "path": str(tmp_path / "real" / "t.jwt")})
    gcp = t("gcp", {"type": "file", "path": str(tmp_path / "link" / "t.jwt")}, client=2)
    assert "targets 'aws' and 'gcp' both write file" in refusal(aws, gcp)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (
            {"type": "secret-block", "secret_block_name": "tok"},
            {"type": "secret-block", "secret_block_name": "tok"},
        ),
        (
            {
                "type": "vault-kv",
                "url": "https://vault.test",
                "path": "usegrant/aws",
                "jwt_role": "r",
            },
            {
                "type": "vault-kv",
                "url": "https://vault.test/",
                "path": "/usegrant/aws/",
                "jwt_role": "r",
            },
        ),
        (
            {"type": "aws-secrets-manager", "secret_name": "tok", "region_name": "eu-west-1"},
            {"type": "aws-secrets-manager", "secret_name": "tok", "region_name": "eu-west-1"},
        ),
        (
            {"type": "aws-ssm-parameter", "parameter_name": "/t", "region_name": "eu-west-1"},
            {"type": "aws-ssm-parameter", "parameter_name": "/t", "region_name": "eu-west-1"},
        ),
        ("usegrant-webhook-token-sink/ops", "usegrant-webhook-token-sink/ops"),
    ],
    ids=["secret-block", "vault", "secrets-manager", "ssm", "webhook-block"],
)
def test_each_kind_of_shared_destination_is_refused(first: Any, second: Any) -> None:
    message = refusal(t("aws", first), t("gcp", second, client=2))
    assert "targets 'aws' and 'gcp' both write" in message and "\n" not in message


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (
            {
                "type": "vault-kv",
                "url": "https://vault.test",
                "path": "usegrant/aws",
                "jwt_role": "r",
            },
            {
                "type": "vault-kv",
                "url": "https://vault.test",
                "path": "usegrant/gcp",
                "jwt_role": "r",
            },
        ),
        (
            {"type": "aws-secrets-manager", "secret_name": "tok", "region_name": "eu-west-1"},
            {"type": "aws-secrets-manager", "secret_name": "tok", "region_name": "us-east-1"},
        ),
    ],
    ids=["vault-other-path", "secrets-manager-other-region"],
)
def test_different_destinations_of_one_kind_are_accepted(first: Any, second: Any) -> None:
    targets = parse_fleet([t("aws", first), t("gcp", second, client=2)])
    assert [x.name for x in targets] == ["aws", "gcp"]


def test_one_target_naming_a_destination_twice_is_refused() -> None:
    hook = "usegrant-webhook-token-sink/ops"
    assert refusal(t("aws", hook, hook)) == (
        "fleet: target 'aws' names block usegrant-webhook-token-sink/ops twice"
    )


def test_a_fleet_block_refuses_two_targets_on_one_destination() -> None:
    aws = t("aws", {"type": "secret-block", "secret_block_name": "tok"})
    gcp = t("gcp", {"type": "secret-block", "secret_block_name": "tok"}, client=2)
    with pytest.raises(
        ValidationError, match="targets 'aws' and 'gcp' both write secret-block tok"
    ):
        UseGrantFleet.model_validate({"targets": [aws, gcp]})
