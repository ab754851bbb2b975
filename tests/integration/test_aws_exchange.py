"""exchange_aws_credentials: a minted token traded at STS (moto's HTTP server) for keys."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from uuid import UUID

import boto3
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogWorker
from prefect_aws import AwsCredentials
from pydantic import SecretStr

from tests.integration.remote_servers import (  # noqa: F401
    MotoServer,
    Recording,
    aws_env,
    moto_recorder,
    moto_server,
)
from tests.leaks import find_secret, scan_tree
from usegrant_flows.api.client import AsyncUseGrantClient, UseGrantClient
from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.api.models import AccessToken
from usegrant_flows.api.verify import verify_token
from usegrant_flows.aws_exchange import (
    AwsExchangeError,
    aexchange_aws_credentials,
    exchange_aws_credentials,
)
from usegrant_flows.credentials import UseGrantCredentials
from usegrant_flows.emulator import RunningEmulator

pytestmark = pytest.mark.usefixtures("prefect_harness")

ROLE_ARN = "arn:aws:iam::123456789012:role/usegrant-reader"
BLOCK = "aws-exchange-emulator"


@pytest.fixture
def minted(monkeypatch: pytest.MonkeyPatch) -> list[AccessToken]:
    """Every token our own client returns during the test (a spy, not a stand-in)."""
    tokens: list[AccessToken] = []
    sync_create = UseGrantClient.create_token
    async_create = AsyncUseGrantClient.create_token

    def spy(self: UseGrantClient, *args: Any, **kwargs: Any) -> AccessToken:
        token = sync_create(self, *args, **kwargs)
        tokens.append(token)
        return token

    async def aspy(self: AsyncUseGrantClient, *args: Any, **kwargs: Any) -> AccessToken:
        token = await async_create(self, *args, **kwargs)
        tokens.append(token)
        return token

    monkeypatch.setattr(UseGrantClient, "create_token", spy)
    monkeypatch.setattr(AsyncUseGrantClient, "create_token", aspy)
    return tokens


@pytest.fixture
def credentials(emu: RunningEmulator) -> str:
    UseGrantCredentials(api_key=SecretStr(emu.api_key), base_url=emu.base_url).save(
        BLOCK, overwrite=True
    )
    return BLOCK


def ids(emu: RunningEmulator) -> dict[str, str]:
    provider = emu.seed.providers[0]
    return {"provider_id": str(provider.id), "client_id": str(provider.clients[0].id)}


def exchange(emu: RunningEmulator, server: MotoServer, **overrides: Any) -> Any:
    arguments = {"role_arn": ROLE_ARN, "sts_endpoint_url": server.url, **overrides}

    @flow
    def run() -> Any:
        return exchange_aws_credentials(UseGrantCredentials.load(BLOCK), **ids(emu), **arguments)

    return run()


def test_sts_receives_exactly_the_minted_token_unsigned(
    emu: RunningEmulator,
    credentials: str,
    moto_recorder: Recording,  # noqa: F811
    minted: list[AccessToken],
) -> None:
    exchange(emu, moto_recorder.server)
    [call] = moto_recorder.query_bodies("AssumeRoleWithWebIdentity")
    [token] = minted
    assert call["WebIdentityToken"] == token.access_token.get_secret_value()
    assert (call["RoleArn"], call["RoleSessionName"], call["DurationSeconds"]) == (
        ROLE_ARN,
        "usegrant-flows",
        "3600",
    )
    [entry] = moto_recorder.entries()
    assert "Authorization" not in entry["headers"]


def test_the_token_sent_verifies_against_the_issuers_jwks_for_sts(
    emu: RunningEmulator,
    credentials: str,
    moto_recorder: Recording,  # noqa: F811
) -> None:
    exchange(emu, moto_recorder.server, expires_in=600)
    [call] = moto_recorder.query_bodies("AssumeRoleWithWebIdentity")
    claims = verify_token(call["WebIdentityToken"], emu.jwks_url, audience="sts.amazonaws.com")
    assert claims["exp"] - claims["iat"] == 600


def test_the_returned_credentials_hold_secret_keys_that_work(
    emu: RunningEmulator,
    credentials: str,
    aws_env: MotoServer,  # noqa: F811
) -> None:
    result = exchange(emu, aws_env, session_name="nightly-report", region_name="eu-west-1")
    assert isinstance(result, AwsCredentials)
    assert result.region_name == "eu-west-1"
    sts = result.get_boto3_session().client("sts", endpoint_url=aws_env.url)
    arn = sts.get_caller_identity()["Arn"]
    assert arn == "arn:aws:sts::123456789012:assumed-role/usegrant-reader/nightly-report"


def test_the_secret_key_and_session_token_are_secret_str_absent_from_repr(
    emu: RunningEmulator,
    credentials: str,
    aws_env: MotoServer,  # noqa: F811
) -> None:
    result = exchange(emu, aws_env)
    assert isinstance(result.aws_secret_access_key, SecretStr)
    assert isinstance(result.aws_session_token, SecretStr)
    for secret in (result.aws_secret_access_key, result.aws_session_token):
        assert secret.get_secret_value() not in repr(result)
        assert secret.get_secret_value() not in str(result)


def test_prefect_aws_get_client_uses_the_temporary_keys(
    emu: RunningEmulator,
    credentials: str,
    aws_env: MotoServer,  # noqa: F811
) -> None:
    result = exchange(emu, aws_env, region_name="us-east-1")
    result.aws_client_parameters.endpoint_url = aws_env.url
    arn = result.get_client("sts").get_caller_identity()["Arn"]
    assert arn.startswith("arn:aws:sts::123456789012:assumed-role/usegrant-reader/")


async def test_the_async_twin_returns_working_credentials(
    emu: RunningEmulator,
    credentials: str,
    moto_recorder: Recording,  # noqa: F811
    minted: list[AccessToken],
) -> None:
    @flow
    async def run() -> Any:
        block = await UseGrantCredentials.aload(BLOCK)
        return await aexchange_aws_credentials(
            block, **ids(emu), role_arn=ROLE_ARN, sts_endpoint_url=moto_recorder.server.url
        )

    result = await run()
    [call] = moto_recorder.query_bodies("AssumeRoleWithWebIdentity")
    assert call["WebIdentityToken"] == minted[0].access_token.get_secret_value()
    assert isinstance(result.aws_secret_access_key, SecretStr)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"role_arn": "arn:aws:iam::12345:role/x"}, "role_arn must be an IAM role ARN"),
        ({"role_arn": "arn:aws:iam::123456789012:user/x"}, "role_arn must be an IAM role ARN"),
        ({"duration_seconds": 899}, "duration_seconds must be an integer from 900 to 43200"),
        ({"duration_seconds": 43201}, "duration_seconds must be an integer from 900 to 43200"),
        ({"session_name": "x"}, "session_name must be 2..64"),
        ({"sts_endpoint_url": "http://sts.example.com"}, "sts_endpoint_url must be"),
    ],
)
def test_bad_arguments_fail_before_any_request(
    emu: RunningEmulator,
    credentials: str,
    moto_recorder: Recording,  # noqa: F811
    overrides: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        exchange(emu, moto_recorder.server, **overrides)
    assert emu.stats()["token_calls"]["total"] == 0
    assert moto_recorder.entries() == []


def test_an_unreachable_sts_is_a_one_line_error_naming_the_role_not_the_token(
    emu: RunningEmulator,
    credentials: str,
    minted: list[AccessToken],
) -> None:
    from tests.integration.remote_servers import free_port

    with pytest.raises(AwsExchangeError) as caught:
        exchange(emu, MotoServer(f"http://127.0.0.1:{free_port()}"))
    message = str(caught.value)
    assert message.startswith(f"STS AssumeRoleWithWebIdentity for {ROLE_ARN} with token ")
    assert minted[0].fingerprint in message
    assert find_secret(message, minted[0].access_token.get_secret_value()) == []
    assert "\n" not in message


def _run_records(flow_run_id: UUID) -> dict[str, str]:
    APILogWorker.drain_all()
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    assert logs, "the run's logs should have reached the API"
    return {
        "flow run": flow_run.model_dump_json(),
        "task runs": json.dumps([t.model_dump(mode="json") for t in task_runs]),
        "logs": json.dumps([log.model_dump(mode="json") for log in logs]),
    }


def test_neither_the_token_nor_the_keys_leak(
    emu: RunningEmulator,
    credentials: str,
    aws_env: MotoServer,  # noqa: F811
    minted: list[AccessToken],
    prefect_home: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(logging.getLogger("prefect"), "propagate", True)
    received: dict[str, str] = {}

    @flow
    def uses_keys() -> str:
        result = exchange_aws_credentials(
            UseGrantCredentials.load(BLOCK),
            **ids(emu),
            role_arn=ROLE_ARN,
            sts_endpoint_url=aws_env.url,
        )
        received["secret"] = result.aws_secret_access_key.get_secret_value()
        received["session"] = result.aws_session_token.get_secret_value()
        sts = result.get_boto3_session().client("sts", endpoint_url=aws_env.url)
        return str(sts.get_caller_identity()["Arn"])

    state = uses_keys(return_state=True)
    assert state.is_completed()
    haystacks = {
        **_run_records(state.state_details.flow_run_id),
        "captured logs": caplog.text,
        "captured output": "".join(capsys.readouterr()),
    }
    assert "fingerprint=" + minted[0].fingerprint in caplog.text  # the log names the token
    secrets = {
        "token": minted[0].access_token.get_secret_value(),
        "secret access key": received["secret"],
        "session token": received["session"],
    }
    for name, secret in secrets.items():
        for where, text in haystacks.items():
            assert find_secret(text, secret) == [], f"{name} found in {where}"
        assert scan_tree(Path(prefect_home), secret) == {}, f"{name} found in PREFECT_HOME"


def test_the_module_does_not_import_boto3_until_called() -> None:
    import subprocess
    import sys

    code = (
        "import sys, usegrant_flows.aws_exchange; "
        "sys.exit(1 if {'boto3', 'botocore'} & set(sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_boto3_is_importable_for_the_extra() -> None:
    assert boto3.__version__


def test_the_blocks_client_parameters_reach_sts_and_the_returned_credentials(
    emu: RunningEmulator,
    credentials: str,
    moto_recorder: Recording,  # noqa: F811
    minted: list[AccessToken],
) -> None:
    from prefect_aws import AwsClientParameters

    block = AwsCredentials(
        aws_client_parameters=AwsClientParameters(endpoint_url=moto_recorder.server.url)
    )

    @flow
    def run() -> Any:
        return exchange_aws_credentials(
            UseGrantCredentials.load(BLOCK),
            **ids(emu),
            role_arn=ROLE_ARN,
            region_name="us-east-1",
            aws_credentials=block,
        )

    result = run()
    [call] = moto_recorder.query_bodies("AssumeRoleWithWebIdentity")
    assert call["WebIdentityToken"] == minted[0].access_token.get_secret_value()
    # No endpoint given anywhere but the block: get_client reaches moto too.
    arn = result.get_client("sts").get_caller_identity()["Arn"]
    assert arn.startswith("arn:aws:sts::123456789012:assumed-role/usegrant-reader/")
