"""Delivered means read back, against moto's real Secrets Manager server.

Secrets Manager (moto, as AWS) takes a ``PutSecretValue`` on a secret that is scheduled
for deletion, while every consumer's ``GetSecretValue`` of it fails: the rotation must
not call that target delivered.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import pytest
from pydantic import SecretStr

from tests.integration.remote_servers import (  # noqa: F401
    MotoServer,
    aws_env,
    moto_server,
)
from usegrant_flows.credentials import UseGrantCredentials
from usegrant_flows.emulator import RunningEmulator
from usegrant_flows.rotation.fleet import parse_fleet
from usegrant_flows.rotation.rotate_flow import rotate_targets
from usegrant_flows.sinks import AwsSecretsManagerTokenSink

pytestmark = pytest.mark.usefixtures("prefect_harness")


async def test_a_secret_scheduled_for_deletion_fails_the_target(
    emu: RunningEmulator,
    aws_env: MotoServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    name = f"usegrant/readback-{uuid.uuid4().hex[:10]}"
    await UseGrantCredentials(api_key=SecretStr(emu.api_key), base_url=emu.base_url).asave(
        "readback", overwrite=True
    )
    await AwsSecretsManagerTokenSink(
        secret_name=name, endpoint_url=aws_env.url, region_name="us-east-1"
    ).asave("readback-sm", overwrite=True)
    provider = emu.seed.providers[0]
    targets = parse_fleet(
        {
            "defaults": {"credentials": "readback", "provider_id": str(provider.id)},
            "targets": [
                {
                    "name": "readback",
                    "client_id": str(provider.clients[0].id),
                    "sinks": ["usegrant-aws-secrets-manager-token-sink/readback-sm"],
                }
            ],
        },
        base_dir=tmp_path,
    )
    first = await rotate_targets(targets=targets, return_state=True)
    [delivered] = await first.result()
    assert delivered.action.value == "minted"

    client = boto3.client("secretsmanager", endpoint_url=aws_env.url, region_name="us-east-1")
    client.delete_secret(SecretId=name, RecoveryWindowInDays=7)
    emu.reset_stats()
    state = await rotate_targets(targets=targets, force=True, return_state=True)
    # Failed, not minted: nothing a consumer can read holds a token.
    assert state.is_failed()
    assert state.message is not None
    assert state.message.startswith("1 of 1 targets failed: readback (aws-secrets-manager")
    assert name in state.message and "reading it back failed" in state.message
    print(f"\nread-back: {state.message} (mints {emu.stats()['tokens_issued']})")
