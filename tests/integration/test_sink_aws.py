"""The AWS sinks against moto's real HTTP server on loopback (never moto.mock_aws)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import datetime, timezone

import boto3
import pytest
from pydantic import SecretStr, ValidationError

from tests.integration.remote_servers import (  # noqa: F401
    MotoServer,
    Recording,
    aws_env,
    moto_recorder,
    moto_server,
)
from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.api.models import AccessToken
from usegrant_flows.sinks import AwsSecretsManagerTokenSink, AwsSsmParameterTokenSink, SinkError
from usegrant_flows.sinks.base import NotOwnedError

MakeToken = Callable[..., AccessToken]

pytestmark = pytest.mark.usefixtures("prefect_harness")


def secretsmanager(server: MotoServer) -> object:
    return boto3.client("secretsmanager", endpoint_url=server.url, region_name="us-east-1")


def ssm(server: MotoServer) -> object:
    return boto3.client("ssm", endpoint_url=server.url, region_name="us-east-1")


def sm_sink(server: MotoServer, name: str, **fields: object) -> AwsSecretsManagerTokenSink:
    return AwsSecretsManagerTokenSink(
        secret_name=name,
        endpoint_url=server.url,
        region_name="us-east-1",
        **fields,  # type: ignore[arg-type]
    )


def ssm_sink(server: MotoServer, name: str, **fields: object) -> AwsSsmParameterTokenSink:
    return AwsSsmParameterTokenSink(
        parameter_name=name,
        endpoint_url=server.url,
        region_name="us-east-1",
        **fields,  # type: ignore[arg-type]
    )


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


# --- Secrets Manager ---------------------------------------------------------------------


def test_first_write_creates_the_secret_then_put_adds_a_version(
    moto_recorder: Recording,  # noqa: F811
    make_token: MakeToken,
) -> None:
    sink = sm_sink(moto_recorder.server, unique("usegrant/"))
    sink.write(make_token())
    sink.write(make_token())
    # Each write first reads the tags (ownership), then creates or adds a version.
    assert moto_recorder.targets() == [
        "DescribeSecret",
        "CreateSecret",
        "DescribeSecret",
        "PutSecretValue",
    ]


def test_awscurrent_read_by_boto3_is_the_bare_jwt_as_secret_string(
    aws_env: MotoServer,  # noqa: F811
    make_token: MakeToken,
) -> None:
    name = unique("usegrant/")
    token = make_token()
    sm_sink(aws_env, name).write(make_token())
    sm_sink(aws_env, name).write(token)
    answer = secretsmanager(aws_env).get_secret_value(SecretId=name, VersionStage="AWSCURRENT")  # type: ignore[attr-defined]
    assert answer["SecretString"] == token.access_token.get_secret_value()
    assert "SecretBinary" not in answer


def test_json_format_stores_the_file_sinks_json_body(
    aws_env: MotoServer,  # noqa: F811
    make_token: MakeToken,
) -> None:
    name = unique("usegrant/")
    token = make_token()
    sm_sink(aws_env, name, format="json").write(token)
    answer = secretsmanager(aws_env).get_secret_value(SecretId=name)  # type: ignore[attr-defined]
    assert json.loads(answer["SecretString"]) == token.to_wire()


@pytest.mark.parametrize("format", ["raw", "json"])
def test_read_returns_the_awscurrent_token(
    aws_env: MotoServer,  # noqa: F811
    make_token: MakeToken,
    format: str,
) -> None:
    name = unique("usegrant/")
    token = make_token()
    sm_sink(aws_env, name, format=format).write(make_token())
    sm_sink(aws_env, name, format=format).write(token)
    held = sm_sink(aws_env, name, format=format).read()
    assert held is not None
    assert held.access_token == token.access_token
    assert held.expires_at == token.expires_at


def test_read_of_a_missing_secret_is_none(aws_env: MotoServer) -> None:  # noqa: F811
    assert sm_sink(aws_env, unique("missing/")).read() is None


def test_a_secret_binary_secret_is_a_sink_error(aws_env: MotoServer) -> None:  # noqa: F811
    name = unique("binary/")
    secretsmanager(aws_env).create_secret(Name=name, SecretBinary=b"\x00\x01")  # type: ignore[attr-defined]
    with pytest.raises(SinkError, match="does not hold a token"):
        sm_sink(aws_env, name).read()


def test_kms_key_id_is_sent_when_the_secret_is_created(
    moto_recorder: Recording,  # noqa: F811
    make_token: MakeToken,
) -> None:
    sm_sink(moto_recorder.server, unique("kms/"), kms_key_id="alias/usegrant").write(make_token())
    create = [e for e in moto_recorder.entries() if "CreateSecret" in str(e["headers"])]
    assert json.loads(create[0]["body"])["KmsKeyId"] == "alias/usegrant"


def test_an_unknown_secret_arn_is_not_created_and_fails_naming_the_sink(
    aws_env: MotoServer,  # noqa: F811
    make_token: MakeToken,
) -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:usegrant/none-AbCdEf"
    token = make_token()
    with pytest.raises(SinkError, match=r"^aws-secrets-manager arn:.*put_secret_value failed") as e:
        sm_sink(aws_env, arn).write(token)
    assert token.access_token.get_secret_value() not in str(e.value)


def test_a_failed_write_keeps_the_previous_version(
    aws_env: MotoServer,  # noqa: F811
    make_token: MakeToken,
) -> None:
    name = unique("usegrant/")
    old = make_token()
    sm_sink(aws_env, name).write(old)
    unreachable = AwsSecretsManagerTokenSink(
        secret_name=name, endpoint_url="http://127.0.0.1:9", region_name="us-east-1", max_attempts=1
    )
    with pytest.raises(SinkError, match="describe_secret failed: EndpointConnectionError"):
        unreachable.write(make_token())
    current = secretsmanager(aws_env).get_secret_value(SecretId=name)["SecretString"]  # type: ignore[attr-defined]
    assert current == old.access_token.get_secret_value()


@pytest.mark.parametrize(
    "name",
    [
        "arn:aws:secretsmanager:us-east-1:1234:secret:x",
        "arn:aws:s3:::bucket",
        "spaces are not allowed",
        "",
    ],
)
def test_a_malformed_secret_name_or_arn_is_refused_at_construction(name: str) -> None:
    with pytest.raises(ValidationError, match="secret_name"):
        AwsSecretsManagerTokenSink(secret_name=name)


def test_an_unknown_credentials_block_fails_before_any_request(
    moto_recorder: Recording,  # noqa: F811
    make_token: MakeToken,
) -> None:
    sink = sm_sink(moto_recorder.server, "usegrant/x", aws_credentials="no-such-block")
    with pytest.raises(ConfigurationError, match="AwsCredentials block 'no-such-block' not found"):
        sink.write(make_token())
    assert moto_recorder.entries() == []


def test_a_saved_aws_credentials_block_is_used(
    moto_recorder: Recording,  # noqa: F811
    make_token: MakeToken,
) -> None:
    from prefect_aws import AwsCredentials

    AwsCredentials(
        aws_access_key_id="AKIDFROMBLOCK0000000",
        aws_secret_access_key=SecretStr("from-block"),
        region_name="us-east-1",
    ).save("usegrant-aws-test", overwrite=True)
    sink = AwsSecretsManagerTokenSink(
        secret_name=unique("usegrant/"),
        endpoint_url=moto_recorder.server.url,
        aws_credentials="usegrant-aws-test",
    )
    sink.write(make_token())
    authorization = moto_recorder.entries()[0]["headers"]["Authorization"]
    assert "Credential=AKIDFROMBLOCK0000000/" in authorization


# --- SSM Parameter Store -----------------------------------------------------------------


def test_ssm_overwrites_a_secure_string_read_back_decrypted(
    aws_env: MotoServer,  # noqa: F811
    make_token: MakeToken,
) -> None:
    name = unique("/usegrant/")
    token = make_token()
    ssm_sink(aws_env, name).write(make_token())
    ssm_sink(aws_env, name).write(token)
    parameter = ssm(aws_env).get_parameter(Name=name, WithDecryption=True)["Parameter"]  # type: ignore[attr-defined]
    assert parameter["Type"] == "SecureString"
    assert parameter["Value"] == token.access_token.get_secret_value()
    assert parameter["Version"] == 2


def test_ssm_read_returns_the_token(aws_env: MotoServer, make_token: MakeToken) -> None:  # noqa: F811
    name = unique("/usegrant/")
    token = make_token()
    ssm_sink(aws_env, name).write(token)
    held = ssm_sink(aws_env, name).read()
    assert held is not None
    assert held.access_token == token.access_token


def test_ssm_read_of_a_missing_parameter_is_none(aws_env: MotoServer) -> None:  # noqa: F811
    assert ssm_sink(aws_env, unique("/missing/")).read() is None


def test_ssm_sends_secure_string_overwrite_tier_and_key(
    moto_recorder: Recording,  # noqa: F811
    make_token: MakeToken,
) -> None:
    sink = ssm_sink(moto_recorder.server, unique("/usegrant/"), kms_key_id="alias/usegrant")
    sink.write(make_token())  # creates, tagged
    sink.write(make_token())  # overwrites
    entries = moto_recorder.entries()
    names = moto_recorder.targets()
    puts = [e for e, name in zip(entries, names, strict=True) if name == "PutParameter"]
    create, overwrite = (json.loads(e["body"]) for e in puts)
    assert (overwrite["Type"], overwrite["Overwrite"], overwrite["Tier"]) == (
        "SecureString",
        True,
        "Standard",
    )
    assert overwrite["KeyId"] == create["KeyId"] == "alias/usegrant"
    assert create["Overwrite"] is False
    assert {"Key": "managed-by", "Value": "usegrant-flows"} in create["Tags"]


def big_token(length: int) -> AccessToken:
    # A JWT-shaped value of the given length (the sink checks length before anything).
    head = "eyJhbGciOiJub25lIn0"
    payload = "eyJleHAiOjQxMDI0NDQ4MDB9"
    signature = "A" * (length - len(head) - len(payload) - 2)
    return AccessToken(
        access_token=SecretStr(f"{head}.{payload}.{signature}"),
        expires_at=datetime(2100, 1, 1, tzinfo=timezone.utc),
    )


def test_a_token_over_4096_characters_on_standard_is_refused_before_any_request(
    moto_recorder: Recording,  # noqa: F811
) -> None:
    with pytest.raises(SinkError, match=r"4,097 characters, more than the 4,096 a Standard"):
        ssm_sink(moto_recorder.server, unique("/usegrant/")).write(big_token(4097))
    assert "PutParameter" not in moto_recorder.targets()
    assert moto_recorder.entries() == []


def test_a_token_of_exactly_4096_characters_fits_standard(
    aws_env: MotoServer,  # noqa: F811
) -> None:
    name = unique("/usegrant/")
    ssm_sink(aws_env, name).write(big_token(4096))
    value = ssm(aws_env).get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]  # type: ignore[attr-defined]
    assert len(value) == 4096


def test_advanced_tier_takes_a_token_over_4096(aws_env: MotoServer) -> None:  # noqa: F811
    name = unique("/usegrant/")
    ssm_sink(aws_env, name, tier="Advanced").write(big_token(5000))
    parameter = ssm(aws_env).get_parameter(Name=name, WithDecryption=True)["Parameter"]  # type: ignore[attr-defined]
    assert len(parameter["Value"]) == 5000


@pytest.mark.parametrize("name", ["/aws/usegrant", "ssm-token", "a b", "/" + "/".join("x" * 16)])
def test_a_bad_parameter_name_is_refused_at_construction(name: str) -> None:
    with pytest.raises(ValidationError, match="parameter_name"):
        AwsSsmParameterTokenSink(parameter_name=name)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"endpoint_url": "http://moto.example.com"}, "loopback"),
        ({"region_name": "Europe"}, "region_name"),
        ({"aws_credentials": "Has Spaces"}, "aws_credentials"),
    ],
)
def test_bad_shared_aws_fields_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AwsSsmParameterTokenSink(parameter_name="/usegrant/x", **fields)  # type: ignore[arg-type]


def test_importing_the_aws_sinks_does_not_import_boto3() -> None:
    code = (
        "import sys; from usegrant_flows.sinks import AwsSecretsManagerTokenSink, "
        "AwsSsmParameterTokenSink; "
        "sys.exit(1 if {'boto3', 'botocore', 'prefect_aws'} & set(sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_debug_logging_of_botocore_never_shows_the_token(
    aws_env: MotoServer,  # noqa: F811
    make_token: MakeToken,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.leaks import find_secret

    caplog.set_level(logging.DEBUG)
    token = make_token()
    sm_sink(aws_env, unique("usegrant/")).write(token)
    ssm_sink(aws_env, unique("/usegrant/")).write(token)
    assert any(r.name.startswith("botocore") for r in caplog.records)  # DEBUG was on
    assert find_secret(caplog.text, token.access_token.get_secret_value()) == []


# --- ownership: tags ---------------------------------------------------------------------


def test_a_secret_another_tool_created_fails_preflight_and_keeps_its_value(
    aws_env: MotoServer,  # noqa: F811
    make_token: MakeToken,
) -> None:
    name = unique("team/db-")
    secretsmanager(aws_env).create_secret(Name=name, SecretString="db-password")  # type: ignore[attr-defined]
    sink = sm_sink(aws_env, name)
    with pytest.raises(NotOwnedError, match="has no usegrant-flows mark") as caught:
        sink.preflight({"target": "t"})
    assert "set `adopt: true`" in str(caught.value)
    with pytest.raises(NotOwnedError):
        sink.write(make_token(), {"target": "t"})
    current = secretsmanager(aws_env).get_secret_value(SecretId=name)  # type: ignore[attr-defined]
    assert current["SecretString"] == "db-password"


def test_a_created_secret_carries_our_tags_and_adopt_tags_a_foreign_one(
    aws_env: MotoServer,  # noqa: F811
    make_token: MakeToken,
) -> None:
    ours, foreign = unique("usegrant/"), unique("usegrant/")
    sm_sink(aws_env, ours).write(make_token(), {"target": "aws-prod"})
    secretsmanager(aws_env).create_secret(Name=foreign, SecretString="x")  # type: ignore[attr-defined]
    sm_sink(aws_env, foreign, adopt=True).write(make_token(), {"target": "aws-prod"})
    for name in (ours, foreign):
        tags = secretsmanager(aws_env).describe_secret(SecretId=name)["Tags"]  # type: ignore[attr-defined]
        assert {"Key": "usegrant-target", "Value": "aws-prod"} in tags
        sm_sink(aws_env, name).preflight({"target": "aws-prod"})  # ours now


def test_a_parameter_another_tool_wrote_fails_preflight_and_is_kept(
    aws_env: MotoServer,  # noqa: F811
    make_token: MakeToken,
) -> None:
    name = unique("/team/db-")
    ssm(aws_env).put_parameter(Name=name, Value="db-password", Type="SecureString")  # type: ignore[attr-defined]
    sink = ssm_sink(aws_env, name)
    with pytest.raises(NotOwnedError, match="has no usegrant-flows mark"):
        sink.preflight({"target": "t"})
    with pytest.raises(NotOwnedError):
        sink.write(make_token(), {"target": "t"})
    value = ssm(aws_env).get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]  # type: ignore[attr-defined]
    assert value == "db-password"


def test_a_created_parameter_is_tagged_and_adopt_tags_a_foreign_one(
    aws_env: MotoServer,  # noqa: F811
    make_token: MakeToken,
) -> None:
    ours, foreign = unique("/usegrant/"), unique("/usegrant/")
    ssm_sink(aws_env, ours).write(make_token(), {"target": "t"})
    ssm(aws_env).put_parameter(Name=foreign, Value="x", Type="SecureString")  # type: ignore[attr-defined]
    ssm_sink(aws_env, foreign, adopt=True).write(make_token(), {"target": "t"})
    for name in (ours, foreign):
        ssm_sink(aws_env, name).preflight({"target": "t"})  # ours now
    with pytest.raises(NotOwnedError, match="marked for target 't', not 'u'"):
        ssm_sink(aws_env, ours).preflight({"target": "u"})


def test_an_aws_endpoint_outside_the_allowed_ones_fails_before_any_request(
    moto_recorder: Recording,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USEGRANT_ALLOWED_ENDPOINTS", "secretsmanager.us-east-1.amazonaws.com")
    with pytest.raises(ConfigurationError, match="not in USEGRANT_ALLOWED_ENDPOINTS"):
        sm_sink(moto_recorder.server, unique("usegrant/")).preflight()
    assert moto_recorder.targets() == []


# --- prefect-aws's client parameters -----------------------------------------------------


def save_block_with_endpoint(name: str, endpoint_url: str) -> None:
    from prefect_aws import AwsClientParameters, AwsCredentials

    AwsCredentials(
        aws_access_key_id="AKIDFROMBLOCK0000000",
        aws_secret_access_key=SecretStr("from-block"),
        region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=endpoint_url),
    ).save(name, overwrite=True)


@pytest.mark.parametrize("kind", ["secrets-manager", "ssm"])
def test_the_blocks_client_parameters_endpoint_is_used_when_the_sink_names_none(
    moto_recorder: Recording,  # noqa: F811
    make_token: MakeToken,
    kind: str,
) -> None:
    save_block_with_endpoint("usegrant-aws-endpoint", moto_recorder.server.url)
    sink: AwsSecretsManagerTokenSink | AwsSsmParameterTokenSink
    if kind == "ssm":
        sink = AwsSsmParameterTokenSink(
            parameter_name=unique("/usegrant/"), aws_credentials="usegrant-aws-endpoint"
        )
    else:
        sink = AwsSecretsManagerTokenSink(
            secret_name=unique("usegrant/"), aws_credentials="usegrant-aws-endpoint"
        )
    assert sink.endpoint_url is None
    token = make_token()
    sink.write(token)
    held = sink.read()
    assert held is not None and held.access_token == token.access_token
    authorization = moto_recorder.entries()[0]["headers"]["Authorization"]
    assert "Credential=AKIDFROMBLOCK0000000/" in authorization


def test_the_sinks_own_endpoint_url_wins_over_the_blocks(
    moto_recorder: Recording,  # noqa: F811
    make_token: MakeToken,
) -> None:
    # The block points at a closed loopback port: only the sink's endpoint can succeed.
    save_block_with_endpoint("usegrant-aws-elsewhere", "http://127.0.0.1:9")
    sink = AwsSecretsManagerTokenSink(
        secret_name=unique("usegrant/"),
        endpoint_url=moto_recorder.server.url,
        aws_credentials="usegrant-aws-elsewhere",
        max_attempts=1,
        timeout=5,
    )
    token = make_token()
    sink.write(token)
    held = sink.read()
    assert held is not None and held.access_token == token.access_token
    assert "CreateSecret" in moto_recorder.targets()


def test_a_blocks_plain_http_endpoint_off_loopback_is_refused_before_any_request(
    moto_recorder: Recording,  # noqa: F811
    make_token: MakeToken,
) -> None:
    save_block_with_endpoint("usegrant-aws-public-http", "http://sm.example.com")
    sink = AwsSecretsManagerTokenSink(
        secret_name=unique("usegrant/"), aws_credentials="usegrant-aws-public-http"
    )
    with pytest.raises(ConfigurationError, match=r"aws_client_parameters\.endpoint_url must be"):
        sink.preflight()
    assert moto_recorder.entries() == []
