"""VaultKvTokenSink against a real OpenBao dev server on loopback."""

from __future__ import annotations

import subprocess
import sys
import uuid

import hvac
import hvac.exceptions
import pytest
from pydantic import SecretStr, ValidationError

from tests.integration.remote_servers import (  # noqa: F401
    JWT_ROLE,
    OpenBao,
    OpenBaoTls,
    openbao,
    openbao_tls,
)
from usegrant_flows.api.client import UseGrantClient
from usegrant_flows.api.models import AccessToken
from usegrant_flows.api.verify import verify_token
from usegrant_flows.emulator import RunningEmulator
from usegrant_flows.sinks import SinkError, VaultKvTokenSink
from usegrant_flows.sinks.base import NotOwnedError


def mint(emu: RunningEmulator, lifetime: int = 900) -> AccessToken:
    provider = emu.seed.providers[0]
    with UseGrantClient(api_key=emu.api_key, base_url=emu.base_url) as client:
        return client.create_token(provider.id, provider.clients[0].id, expires_in=lifetime)


def flip_signature_byte(jwt: str) -> str:
    head, payload, signature = jwt.split(".")
    index = len(signature) // 2
    swapped = "A" if signature[index] != "A" else "B"
    return f"{head}.{payload}.{signature[:index]}{swapped}{signature[index + 1 :]}"


def fresh_path() -> str:
    return f"usegrant/{uuid.uuid4().hex}"


def sink(server: OpenBao, path: str, **auth: object) -> VaultKvTokenSink:
    if not auth:
        auth = {"token": server.writer_token()}
    return VaultKvTokenSink(url=server.url, path=path, **auth)  # type: ignore[arg-type]


def test_a_written_token_is_what_hvac_reads_back(
    openbao: OpenBao,  # noqa: F811
    emulator: RunningEmulator,
) -> None:
    path = fresh_path()
    token = mint(emulator)
    sink(openbao, path).write(token)
    data = openbao.kv(path)["data"]
    assert data["token"] == token.access_token.get_secret_value()
    assert data["expiresAt"] == token.to_wire()["expiresAt"]


def test_read_returns_the_stored_token(openbao: OpenBao, emulator: RunningEmulator) -> None:  # noqa: F811
    path = fresh_path()
    token = mint(emulator)
    sink(openbao, path).write(token)
    held = sink(openbao, path).read()
    assert held == token


def test_read_of_a_missing_secret_is_none_and_records_version_zero(openbao: OpenBao) -> None:  # noqa: F811
    reader = sink(openbao, fresh_path())
    assert reader.read() is None
    assert reader.seen_version == 0


def test_custom_key_holds_the_jwt(openbao: OpenBao, emulator: RunningEmulator) -> None:  # noqa: F811
    path = fresh_path()
    token = mint(emulator)
    sink(openbao, path, token=openbao.writer_token(), key="jwt").write(token)
    assert openbao.kv(path)["data"]["jwt"] == token.access_token.get_secret_value()


def test_two_writers_from_one_version_conflict_and_the_first_token_is_kept(
    openbao: OpenBao,  # noqa: F811
    emulator: RunningEmulator,
) -> None:
    path = fresh_path()
    sink(openbao, path).write(mint(emulator))
    first, second = sink(openbao, path), sink(openbao, path)
    first.read()
    second.read()
    winner, loser = mint(emulator), mint(emulator)
    first.write(winner)
    with pytest.raises(SinkError, match="check-and-set conflict") as caught:
        second.write(loser)
    assert openbao.kv(path)["data"]["token"] == winner.access_token.get_secret_value()
    assert openbao.kv(path)["metadata"]["version"] == 2
    assert loser.access_token.get_secret_value() not in str(caught.value)


def test_a_secret_created_after_a_read_of_nothing_is_not_overwritten(
    openbao: OpenBao,  # noqa: F811
    emulator: RunningEmulator,
) -> None:
    path = fresh_path()
    late = sink(openbao, path)
    assert late.read() is None
    other = mint(emulator)
    sink(openbao, path).write(other)
    with pytest.raises(SinkError, match="check-and-set conflict"):
        late.write(mint(emulator))
    assert openbao.kv(path)["data"]["token"] == other.access_token.get_secret_value()


def test_approle_auth_writes(openbao: OpenBao, emulator: RunningEmulator) -> None:  # noqa: F811
    role_id, secret_id = openbao.approle()
    path = fresh_path()
    token = mint(emulator)
    sink(openbao, path, role_id=role_id, secret_id=secret_id).write(token)
    assert openbao.kv(path)["data"]["token"] == token.access_token.get_secret_value()


def test_a_wrong_approle_secret_id_fails_naming_the_sink_and_writes_nothing(
    openbao: OpenBao,  # noqa: F811
    emulator: RunningEmulator,
) -> None:
    role_id, _ = openbao.approle()
    path = fresh_path()
    bad = sink(openbao, path, role_id=role_id, secret_id="not-the-secret-id")
    with pytest.raises(SinkError, match=r"^vault-kv http://127\.0\.0\.1:\d+ secret/.*login failed"):
        bad.write(mint(emulator))
    with pytest.raises(hvac.exceptions.InvalidPath):
        openbao.kv(path)


def test_jwt_role_auth_logs_in_with_the_minted_token_itself(
    openbao: OpenBao,  # noqa: F811
    emulator: RunningEmulator,
) -> None:
    path = fresh_path()
    token = mint(emulator)
    writer = sink(openbao, path, jwt_role=JWT_ROLE)
    writer.write(token)
    assert openbao.kv(path)["data"]["token"] == token.access_token.get_secret_value()
    assert writer.read() == token  # with the Vault token of that login


def test_a_jwt_role_sink_that_never_logged_in_reads_none(openbao: OpenBao) -> None:  # noqa: F811
    assert sink(openbao, fresh_path(), jwt_role=JWT_ROLE).read() is None


def test_openbao_as_relying_party_accepts_a_minted_token(
    openbao: OpenBao,  # noqa: F811
    emulator: RunningEmulator,
) -> None:
    token = mint(emulator)
    claims = verify_token(token, emulator.jwks_url, audience=openbao.audience)
    answer = hvac.Client(url=openbao.url, timeout=10).auth.jwt.jwt_login(
        role=JWT_ROLE, jwt=token.access_token.get_secret_value()
    )
    assert answer["auth"]["metadata"]["role"] == JWT_ROLE
    assert answer["auth"]["policies"] == ["default", "usegrant-writer"]
    assert claims["iss"] == openbao.issuer


def test_openbao_refuses_a_token_with_a_flipped_signature_byte(
    openbao: OpenBao,  # noqa: F811
    emulator: RunningEmulator,
) -> None:
    forged = flip_signature_byte(mint(emulator).access_token.get_secret_value())
    with pytest.raises(hvac.exceptions.VaultError):
        hvac.Client(url=openbao.url, timeout=10).auth.jwt.jwt_login(role=JWT_ROLE, jwt=forged)


def test_a_forged_token_through_a_jwt_role_sink_writes_nothing_and_is_not_quoted(
    openbao: OpenBao,  # noqa: F811
    emulator: RunningEmulator,
) -> None:
    path = fresh_path()
    genuine = mint(emulator)
    forged_jwt = flip_signature_byte(genuine.access_token.get_secret_value())
    forged = AccessToken(access_token=SecretStr(forged_jwt), expires_at=genuine.expires_at)
    with pytest.raises(SinkError, match="login failed") as caught:
        sink(openbao, path, jwt_role=JWT_ROLE).write(forged)
    assert forged_jwt not in str(caught.value)
    with pytest.raises(hvac.exceptions.InvalidPath):
        openbao.kv(path)


def test_a_path_outside_the_policy_is_a_permission_error(
    openbao: OpenBao,  # noqa: F811
    emulator: RunningEmulator,
) -> None:
    outside = sink(openbao, f"elsewhere/{uuid.uuid4().hex}")
    with pytest.raises(SinkError, match="permission denied"):
        outside.write(mint(emulator))


def test_an_unreachable_vault_is_a_one_line_sink_error(emulator: RunningEmulator) -> None:
    from tests.integration.remote_servers import free_port

    unreachable = VaultKvTokenSink(
        url=f"http://127.0.0.1:{free_port()}", path="usegrant/x", token="t", timeout=2
    )
    with pytest.raises(SinkError, match="could not reach Vault") as caught:
        unreachable.write(mint(emulator))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"path": "usegrant/../root", "token": "t"}, "path must be"),
        ({"path": "usegrant/x", "token": "t", "role_id": "r", "secret_id": "s"}, "exactly one"),
        ({"path": "usegrant/x"}, "exactly one"),
        ({"path": "usegrant/x", "role_id": "r"}, "both role_id and secret_id"),
        ({"path": "usegrant/x", "token": "t", "key": "expiresAt"}, "key must be"),
        ({"path": "usegrant/x", "token": "t", "url": "http://vault.example.com"}, "loopback"),
    ],
)
def test_bad_settings_are_refused_at_construction(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        VaultKvTokenSink(**{"url": "https://vault.example.com", **fields})  # type: ignore[arg-type]


def test_the_token_and_secret_id_never_show_in_repr() -> None:
    block = VaultKvTokenSink(
        url="https://vault.example.com", path="a", role_id="r", secret_id="secret-id-value"
    )
    other = VaultKvTokenSink(url="https://vault.example.com", path="a", token="root-token-value")
    assert "secret-id-value" not in repr(block)
    assert "root-token-value" not in repr(other)


def test_importing_the_module_does_not_import_hvac() -> None:
    code = (
        "import sys, usegrant_flows.sinks, usegrant_flows.sinks.vault; "
        "from usegrant_flows.sinks import VaultKvTokenSink; "
        "sys.exit(1 if 'hvac' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_a_namespace_sink_writes_inside_the_namespace_only(
    openbao: OpenBao,  # noqa: F811
    emulator: RunningEmulator,
) -> None:
    namespace = f"team{uuid.uuid4().hex[:8]}"
    root = openbao.root()
    root.write_data(f"sys/namespaces/{namespace}", data={})
    inside = hvac.Client(url=openbao.url, token=openbao.root_token, namespace=namespace)
    inside.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    path = fresh_path()
    token = mint(emulator)
    sink(openbao, path, token=openbao.root_token, namespace=namespace).write(token)
    stored = inside.secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", raise_on_deleted_version=True
    )
    assert stored["data"]["data"]["token"] == token.access_token.get_secret_value()
    with pytest.raises(hvac.exceptions.InvalidPath):
        openbao.kv(path)  # not in the root namespace


def test_https_with_the_servers_ca_cert_writes(
    openbao_tls: OpenBaoTls,  # noqa: F811
    emulator: RunningEmulator,
) -> None:
    token = mint(emulator)
    VaultKvTokenSink(
        url=openbao_tls.url,
        path="usegrant/tls",
        token=SecretStr(openbao_tls.root_token),
        ca_cert=str(openbao_tls.ca_file),
    ).write(token)
    stored = hvac.Client(
        url=openbao_tls.url, token=openbao_tls.root_token, verify=str(openbao_tls.ca_file)
    ).secrets.kv.v2.read_secret_version(path="usegrant/tls", raise_on_deleted_version=True)
    assert stored["data"]["data"]["token"] == token.access_token.get_secret_value()


def test_https_without_the_ca_cert_is_refused_and_writes_nothing(
    openbao_tls: OpenBaoTls,  # noqa: F811
    emulator: RunningEmulator,
) -> None:
    untrusted = VaultKvTokenSink(
        url=openbao_tls.url, path="usegrant/untrusted", token=SecretStr(openbao_tls.root_token)
    )
    with pytest.raises(SinkError, match=r"could not reach Vault \(SSLError\)"):
        untrusted.write(mint(emulator))
    client = hvac.Client(
        url=openbao_tls.url, token=openbao_tls.root_token, verify=str(openbao_tls.ca_file)
    )
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.kv.v2.read_secret_version(
            path="usegrant/untrusted", raise_on_deleted_version=True
        )


def custom_metadata(server: OpenBao, path: str) -> dict[str, str] | None:
    answer = server.root().secrets.kv.v2.read_secret_metadata(path=path, mount_point="secret")
    return answer["data"].get("custom_metadata")


def test_what_the_sink_creates_carries_our_marks(
    openbao: OpenBao,  # noqa: F811
    emulator: RunningEmulator,
) -> None:
    path = fresh_path()
    sink(openbao, path).write(mint(emulator), {"target": "aws-prod"})
    assert custom_metadata(openbao, path) == {
        "managed-by": "usegrant-flows",
        "usegrant-target": "aws-prod",
    }


def test_a_secret_another_tool_wrote_fails_preflight_and_is_kept(
    openbao: OpenBao,  # noqa: F811
    emulator: RunningEmulator,
) -> None:
    path = fresh_path()
    openbao.root().secrets.kv.v2.create_or_update_secret(
        path=path, secret={"password": "db-password-kept"}, mount_point="secret"
    )
    target = {"target": "aws-prod"}
    with pytest.raises(NotOwnedError, match=r"has no usegrant-flows mark.*adopt: true"):
        sink(openbao, path).preflight(target)
    with pytest.raises(NotOwnedError):
        sink(openbao, path).write(mint(emulator), target)
    assert openbao.kv(path)["data"] == {"password": "db-password-kept"}


def test_a_secret_marked_for_another_target_is_not_taken(
    openbao: OpenBao,  # noqa: F811
    emulator: RunningEmulator,
) -> None:
    path = fresh_path()
    sink(openbao, path).write(mint(emulator), {"target": "team-a"})
    with pytest.raises(NotOwnedError, match="marked for target 'team-a', not 'team-b'"):
        sink(openbao, path).preflight({"target": "team-b"})


def test_adopt_takes_a_foreign_secret_over_and_marks_it(
    openbao: OpenBao,  # noqa: F811
    emulator: RunningEmulator,
) -> None:
    path = fresh_path()
    openbao.root().secrets.kv.v2.create_or_update_secret(
        path=path, secret={"token": "placeholder"}, mount_point="secret"
    )
    token = mint(emulator)
    sink(openbao, path, token=openbao.writer_token(), adopt=True).write(token, {"target": "t"})
    assert openbao.kv(path)["data"]["token"] == token.access_token.get_secret_value()
    assert custom_metadata(openbao, path) == {
        "managed-by": "usegrant-flows",
        "usegrant-target": "t",
    }
    sink(openbao, path).preflight({"target": "t"})  # ours now, without adopt
