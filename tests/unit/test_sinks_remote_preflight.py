"""Remote sinks are checked before a mint, sending nothing to the store."""

from __future__ import annotations

import sys

import pytest

from usegrant_flows.errors import ConfigurationError
from usegrant_flows.sinks import (
    AwsSecretsManagerTokenSink,
    AwsSsmParameterTokenSink,
    SinkError,
    VaultKvTokenSink,
)


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize(
    "sink",
    [
        AwsSecretsManagerTokenSink(
            secret_name="usegrant/t", aws_credentials="no-such-block", region_name="eu-west-1"
        ),
        AwsSsmParameterTokenSink(
            parameter_name="/usegrant/t", aws_credentials="no-such-block", region_name="eu-west-1"
        ),
    ],
    ids=["secrets-manager", "ssm"],
)
def test_an_aws_sink_naming_a_missing_credentials_block_fails_its_preflight(sink: object) -> None:
    with pytest.raises(ConfigurationError, match="AwsCredentials block 'no-such-block' not found"):
        sink.preflight()  # type: ignore[attr-defined]


def test_an_aws_sink_without_a_region_fails_its_preflight(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    sink = AwsSecretsManagerTokenSink(secret_name="usegrant/t")
    with pytest.raises(ConfigurationError, match="no AWS region for secretsmanager"):
        sink.preflight()


def test_an_aws_sink_preflight_reads_ownership_and_fails_in_one_line_when_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The preflight's one read-only call (the parameter's tags) cannot connect here.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    sink = AwsSsmParameterTokenSink(
        parameter_name="/usegrant/t",
        region_name="eu-west-1",
        endpoint_url="http://127.0.0.1:9",
        max_attempts=1,
    )
    with pytest.raises(SinkError, match="preflight failed: EndpointConnectionError") as caught:
        sink.preflight()
    assert "\n" not in str(caught.value)


def test_a_vault_sink_without_hvac_fails_its_preflight_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "hvac", None)  # import fails
    sink = VaultKvTokenSink(url="https://vault.example", path="usegrant/t", jwt_role="r")
    with pytest.raises(SinkError, match=r"pip install 'usegrant-flows\[vault\]'"):
        sink.preflight()


def test_a_vault_sink_with_hvac_passes_its_preflight() -> None:
    VaultKvTokenSink(url="https://vault.example", path="usegrant/t", jwt_role="r").preflight()
