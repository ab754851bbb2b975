"""rotate_targets delivers one mint to a file and to saved Vault, Secrets Manager and SSM sinks.

The fleet names the three remote sinks as saved blocks ("<block type slug>/<name>"),
which fleets support today; each store is then read back with its own client (hvac,
boto3) and must hold exactly the token in the file.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from pydantic import SecretStr

from tests.integration.remote_servers import (  # noqa: F401
    MotoServer,
    OpenBao,
    aws_env,
    moto_server,
    openbao,
)
from tests.leaks import scan_tree
from usegrant_flows.api.verify import verify_token
from usegrant_flows.credentials import UseGrantCredentials
from usegrant_flows.emulator import RunningEmulator
from usegrant_flows.rotation.fleet import RotationTarget, parse_fleet
from usegrant_flows.rotation.rotate_flow import rotate_targets
from usegrant_flows.sinks import (
    AwsSecretsManagerTokenSink,
    AwsSsmParameterTokenSink,
    FileTokenSink,
    VaultKvTokenSink,
)

pytestmark = pytest.mark.usefixtures("prefect_harness")


@dataclass
class Fleet:
    targets: list[RotationTarget]
    vault_path: str
    secret_name: str
    parameter: str


@pytest.fixture
async def fleet(
    emu: RunningEmulator,
    openbao: OpenBao,  # noqa: F811
    aws_env: MotoServer,  # noqa: F811
    tmp_path: Path,
) -> Fleet:
    suffix = uuid.uuid4().hex[:10]
    vault_path = f"usegrant/rotation-{suffix}"
    secret_name = f"usegrant/rotation-{suffix}"
    parameter = f"/usegrant/rotation-{suffix}"
    await UseGrantCredentials(api_key=SecretStr(emu.api_key), base_url=emu.base_url).asave(
        "remote-rotation", overwrite=True
    )
    await VaultKvTokenSink(
        url=openbao.url, path=vault_path, token=SecretStr(openbao.writer_token())
    ).asave("rotation-vault", overwrite=True)
    await AwsSecretsManagerTokenSink(
        secret_name=secret_name, endpoint_url=aws_env.url, region_name="us-east-1"
    ).asave("rotation-secrets-manager", overwrite=True)
    await AwsSsmParameterTokenSink(
        parameter_name=parameter, endpoint_url=aws_env.url, region_name="us-east-1"
    ).asave("rotation-ssm", overwrite=True)
    provider = emu.seed.providers[0]
    aws_client = provider.clients[0]
    targets = parse_fleet(
        {
            "defaults": {"credentials": "remote-rotation", "provider_id": str(provider.id)},
            "targets": [
                {
                    "name": "remote",
                    "client_id": str(aws_client.id),
                    "expires_in": 900,
                    "sinks": [
                        {"type": "file", "path": "tokens/remote.jwt"},
                        "usegrant-vault-kv-token-sink/rotation-vault",
                        "usegrant-aws-secrets-manager-token-sink/rotation-secrets-manager",
                        "usegrant-aws-ssm-parameter-token-sink/rotation-ssm",
                    ],
                }
            ],
        },
        base_dir=tmp_path,
    )
    return Fleet(targets, vault_path, secret_name, parameter)


async def test_one_mint_reaches_the_file_vault_secrets_manager_and_ssm(
    fleet: Fleet,
    emu: RunningEmulator,
    openbao: OpenBao,  # noqa: F811
    aws_env: MotoServer,  # noqa: F811
    tmp_path: Path,
    prefect_home: str,
) -> None:
    state = await rotate_targets(targets=fleet.targets, return_state=True)

    assert state.is_completed(), state.message
    [result] = await state.result()
    assert result.action.value == "minted"
    token = FileTokenSink(path=tmp_path / "tokens" / "remote.jwt").read()
    assert token is not None
    jwt = token.access_token.get_secret_value()
    verify_token(token, emu.jwks_url, audience=emu.seed.providers[0].clients[0].audience)
    assert openbao.kv(fleet.vault_path)["data"]["token"] == jwt
    secrets_manager = boto3.client(
        "secretsmanager", endpoint_url=aws_env.url, region_name="us-east-1"
    )
    assert secrets_manager.get_secret_value(SecretId=fleet.secret_name)["SecretString"] == jwt
    ssm = boto3.client("ssm", endpoint_url=aws_env.url, region_name="us-east-1")
    stored = ssm.get_parameter(Name=fleet.parameter, WithDecryption=True)["Parameter"]
    assert (stored["Type"], stored["Value"]) == ("SecureString", jwt)
    assert scan_tree(Path(prefect_home), jwt) == {}  # nor in results, logs, artifacts


async def test_a_second_run_reads_every_remote_sink_back_and_mints_nothing(
    fleet: Fleet, emu: RunningEmulator
) -> None:
    await rotate_targets(targets=fleet.targets, return_state=True)
    emu.reset_stats()
    state = await rotate_targets(targets=fleet.targets, return_state=True)
    [result] = await state.result()
    assert result.action.value == "fresh"
    assert emu.stats()["token_calls"]["total"] == 0


@pytest.mark.parametrize(
    ("example", "sink_class"),
    [
        ("fleet.vault.example.yaml", VaultKvTokenSink),
        ("fleet.aws.example.yaml", AwsSecretsManagerTokenSink),
        ("fleet.aws.example.yaml", AwsSsmParameterTokenSink),
    ],
)
def test_the_example_fleets_parse_and_name_our_block_slugs(example: str, sink_class: type) -> None:
    from usegrant_flows.rotation.fleet import BlockSinkSpec
    from usegrant_flows.rotation.fleet_file import load_fleet_file

    path = Path(__file__).resolve().parents[2] / "flows" / example
    blocks = [
        spec.block
        for target in load_fleet_file(path)
        for spec in target.sinks
        if isinstance(spec, BlockSinkSpec)
    ]
    assert any(b.startswith(f"{sink_class.get_block_type_slug()}/") for b in blocks)
