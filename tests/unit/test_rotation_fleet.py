"""Rotation targets and fleet files (YAML/JSON), and inline sink specs built from the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.rotation.fleet import (
    BlockSinkSpec,
    InlineSinkSpec,
    RotationTarget,
    parse_fleet,
)
from usegrant_flows.rotation.fleet_file import load_fleet_file
from usegrant_flows.sinks import (
    FileTokenSink,
    KeyringTokenSink,
    SecretBlockSink,
    WebhookTokenSink,
)
from usegrant_flows.sinks.registry import SINK_KINDS, inline_kinds, sink_spec

P = "10000000-0000-4000-8000-000000000001"
C = "20000000-0000-4000-8000-000000000001"


def target(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "aws",
        "provider_id": P,
        "client_id": C,
        "sinks": [{"type": "file", "path": "/run/aws.jwt"}],
    }
    return {**base, **overrides}


def test_defaults_are_merged_into_every_target() -> None:
    [t] = parse_fleet(
        {"defaults": {"credentials": "prod", "expires_in": 900}, "targets": [target()]}
    )
    assert (t.credentials, t.expires_in) == ("prod", 900)


def test_a_targets_own_keys_win_over_defaults() -> None:
    [t] = parse_fleet({"defaults": {"expires_in": 900}, "targets": [target(expires_in=600)]})
    assert t.expires_in == 600


def test_a_bare_list_is_a_fleet() -> None:
    gcp = target(name="gcp", sinks=[{"type": "file", "path": "/run/gcp.jwt"}])
    assert [t.name for t in parse_fleet([target(), gcp])] == ["aws", "gcp"]


def test_a_string_sink_is_a_saved_block() -> None:
    [t] = parse_fleet([target(sinks=["usegrant-webhook-token-sink/ops"])])
    assert t.sinks == [BlockSinkSpec(block="usegrant-webhook-token-sink/ops")]


def test_inline_sinks_are_picked_by_type() -> None:
    [t] = parse_fleet(
        [
            target(
                sinks=[
                    {"type": "file", "path": "/a", "format": "json"},
                    {"type": "secret-block", "secret_block_name": "aws-token"},
                    {"type": "keyring"},
                ]
            )
        ]
    )
    assert [type(s.build()) for s in t.sinks if isinstance(s, InlineSinkSpec)] == [
        FileTokenSink,
        SecretBlockSink,
        KeyringTokenSink,
    ]


def test_relative_file_paths_start_at_the_fleet_files_folder(tmp_path: Path) -> None:
    fleet = tmp_path / "conf" / "fleet.yaml"
    fleet.parent.mkdir()
    fleet.write_text(
        f"targets:\n  - name: aws\n    provider_id: {P}\n    client_id: {C}\n"
        "    sinks:\n      - {type: file, path: tokens/aws.jwt}\n"
    )
    [t] = load_fleet_file(fleet)
    [sink] = t.sinks
    assert isinstance(sink, InlineSinkSpec)
    assert sink.build() == FileTokenSink(path=tmp_path / "conf" / "tokens" / "aws.jwt")


def test_json_fleet_file_is_read(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.json"
    fleet.write_text(json.dumps({"targets": [target()]}))
    assert [t.name for t in load_fleet_file(fleet)] == ["aws"]


def test_missing_fleet_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"nope\.yaml"):
        load_fleet_file(tmp_path / "nope.yaml")


def test_invalid_target_error_names_the_target_and_the_field() -> None:
    with pytest.raises(ConfigurationError, match=r"target aws: expires_in: .*172800"):
        parse_fleet([target(expires_in=172801)])


def test_duplicate_target_names_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="'aws' is used twice"):
        parse_fleet([target(), target()])


def test_unknown_top_level_key_is_refused_without_quoting_it() -> None:
    with pytest.raises(ConfigurationError, match="1 unknown top-level key") as caught:
        parse_fleet({"targets": [], "defualts": {}})
    assert "defualts" not in str(caught.value)


def test_a_password_file_given_as_a_fleet_is_refused_without_its_lines(tmp_path: Path) -> None:
    shadow = "daemonuser: $6$saltsalt$HASHofROOTpassword\nalice: $6$pepper$HASHofALICE\n"
    message = refusal(write(tmp_path, shadow))
    assert "unknown top-level key(s) (line 1)" in message
    for secret in ("daemonuser", "alice", "HASH", "$6$"):
        assert secret not in message


def test_an_unknown_target_field_is_named_by_line_not_by_its_text(tmp_path: Path) -> None:
    text = FLEET.format(expires_in=3600) + "    s3cr3t-looking-key: 1\n"
    message = refusal(write(tmp_path, text))
    assert "unknown field" in message and "(line 8)" in message
    assert "s3cr3t" not in message


def test_target_without_sinks_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="sinks"):
        parse_fleet([target(sinks=[])])


def test_file_mode_accepts_an_octal_string() -> None:
    sink = sink_spec("file", path="/a", mode="0640").build()
    assert isinstance(sink, FileTokenSink) and sink.mode == 0o640


def test_a_fleet_file_refuses_a_world_readable_mode_when_it_is_parsed() -> None:
    # 0604 is below 0640 as a number, but grants "other" read.
    with pytest.raises(ConfigurationError, match="at most 0640"):
        parse_fleet([target(sinks=[{"type": "file", "path": "/a", "mode": "0604"}])])


def test_token_options_leave_out_what_is_not_set() -> None:
    t = RotationTarget.model_validate(target(expires_in=900, use_jwt_type=False))
    assert t.token_options() == {"expires_in": 900, "use_jwt_type": False}


REQUIRED: dict[str, dict[str, object]] = {
    "file": {"path": "/a"},
    "secret-block": {"secret_block_name": "s"},
    "vault-kv": {"url": "https://vault.example", "path": "p", "jwt_role": "r"},
    "aws-secrets-manager": {"secret_name": "usegrant/token"},
    "aws-ssm-parameter": {"parameter_name": "/usegrant/token"},
}


def test_an_inline_spec_offers_exactly_its_blocks_fields_with_the_same_defaults() -> None:
    assert inline_kinds() == [
        "aws-secrets-manager",
        "aws-ssm-parameter",
        "file",
        "keyring",
        "secret-block",
        "vault-kv",
    ]
    for kind in inline_kinds():
        sink_class = SINK_KINDS[kind]
        spec = sink_spec(kind, **REQUIRED.get(kind, {}))
        spec_fields = type(spec).model_fields
        secret = {"token", "secret_id"}  # a Vault sink's secrets live in a saved block only
        assert set(spec_fields) - {"type"} == set(sink_class.model_fields) - secret, kind
        assert spec.build() == sink_class(**REQUIRED.get(kind, {})), kind


def test_a_sink_whose_required_field_is_secret_is_named_as_a_saved_block_only() -> None:
    assert WebhookTokenSink.kind in SINK_KINDS
    assert WebhookTokenSink.kind not in inline_kinds()
    with pytest.raises(ConfigurationError, match="target aws: sinks"):
        parse_fleet([target(sinks=[{"type": "webhook", "url": "https://hooks.example"}])])


def test_a_bad_sink_field_is_refused_when_the_fleet_is_read_with_the_blocks_message() -> None:
    with pytest.raises(ConfigurationError, match="dotenv_variable must be a shell variable name"):
        parse_fleet([target(sinks=[{"type": "file", "path": "/a", "dotenv_variable": "1X"}])])


def test_an_unknown_sink_type_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown sink type 'ftp'"):
        sink_spec("ftp", path="/a")


def test_the_example_fleet_file_of_the_deployment_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "flows" / "fleet.example.yaml"
    targets = load_fleet_file(example)
    assert [t.name for t in targets] == [
        "aws-web-identity",
        "gcp-workload-identity",
        "azure-federated",
    ]
    assert all(t.credentials == "usegrant" for t in targets)
    first = targets[0].sinks[0]
    assert isinstance(first, InlineSinkSpec) and first.type == "file"
    assert ".." not in str(first.build().describe())


# strict fleet files: one line naming the file, the target, the field and the line


def write(tmp_path: Path, text: str | bytes, name: str = "fleet.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


FLEET = """\
targets:
  - name: aws
    provider_id: 10000000-0000-4000-8000-000000000001
    client_id: 20000000-0000-4000-8000-000000000001
    expires_in: {expires_in}
    sinks:
      - {{type: file, path: aws.jwt}}
"""


def refusal(path: Path) -> str:
    with pytest.raises(ConfigurationError) as info:
        load_fleet_file(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


@pytest.mark.parametrize("value", ["yes", "true", "on", "3600.0"])
def test_a_number_that_yaml_reads_as_a_bool_or_float_is_refused(tmp_path: Path, value: str) -> None:
    message = refusal(write(tmp_path, FLEET.format(expires_in=value)))
    assert "target aws (line 2): expires_in (line 5):" in message


def test_a_boolean_number_says_what_yaml_did(tmp_path: Path) -> None:
    message = refusal(write(tmp_path, FLEET.format(expires_in="yes")))
    assert "not a boolean" in message


def test_a_policy_number_given_as_a_boolean_is_refused(tmp_path: Path) -> None:
    text = FLEET.format(expires_in=3600) + "    policy: {renew_before: true}\n"
    message = refusal(write(tmp_path, text))
    assert "target aws (line 2): policy.renew_before (line 8):" in message


def test_a_flag_given_as_a_string_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="use_jwt_type: must be true or false"):
        parse_fleet([target(use_jwt_type="yes")])


def test_a_duplicate_key_is_refused_with_both_lines(tmp_path: Path) -> None:
    text = FLEET.format(expires_in=3600) + "    expires_in: 600\n"
    message = refusal(write(tmp_path, text))
    assert "(line 8): a key is given twice (first on line 5)" in message
    assert "expires_in" not in message


def test_a_yaml_merge_key_is_not_a_duplicate(tmp_path: Path) -> None:
    text = (
        "targets:\n"
        "  - &aws\n"
        "    name: aws\n"
        "    provider_id: 10000000-0000-4000-8000-000000000001\n"
        "    client_id: 20000000-0000-4000-8000-000000000001\n"
        "    sinks: [{type: file, path: aws.jwt}]\n"
        "  - <<: *aws\n"
        "    name: gcp\n"
        "    sinks: [{type: file, path: gcp.jwt}]\n"
    )
    assert [t.name for t in load_fleet_file(write(tmp_path, text))] == ["aws", "gcp"]


def test_a_duplicate_key_in_a_json_fleet_is_refused(tmp_path: Path) -> None:
    text = '{"targets": [], "targets": []}'
    message = refusal(write(tmp_path, text, "fleet.json"))
    assert "a key is given twice in one object" in message


def test_invalid_utf8_names_the_file_and_the_byte(tmp_path: Path) -> None:
    raw = FLEET.format(expires_in=3600).encode().replace(b"aws\n", b"aws\xff\n", 1)
    message = refusal(write(tmp_path, raw))
    assert "not UTF-8 text (byte 0xff" in message and "(line 2)" in message


@pytest.mark.parametrize(("name", "text"), [("fleet.yaml", "[" * 5000), ("fleet.json", "[" * 5000)])
def test_deep_nesting_is_a_clear_error(tmp_path: Path, name: str, text: str) -> None:
    message = refusal(write(tmp_path, text + "]" * 5000, name))
    assert "nested too deeply" in message


def test_a_fleet_file_larger_than_4_mib_is_refused_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed a file over the cap")

    monkeypatch.setattr(yaml.SafeLoader, "get_single_node", never)
    path = write(tmp_path, "# " + "x" * (4 * 1024 * 1024) + "\n")
    assert "larger than 4 MiB" in refusal(path)


def test_an_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    message = refusal(write(tmp_path, "\n".join(lines) + "\n"))
    assert "expands to more than" in message


@pytest.mark.timeout(30)
def test_a_fifo_as_fleet_file_is_refused_without_hanging(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "fleet.yaml")
    assert "not a regular file" in refusal(tmp_path / "fleet.yaml")


def test_broken_yaml_is_one_line_with_its_line(tmp_path: Path) -> None:
    message = refusal(write(tmp_path, "targets:\n  - name: [unclosed\n"))
    assert "not valid YAML" in message and "(line " in message


def test_a_target_that_is_not_a_mapping_names_its_line(tmp_path: Path) -> None:
    message = refusal(write(tmp_path, "targets:\n  - just a string\n"))
    assert "target #1 (line 2) is not a mapping" in message


def test_verify_is_a_fleet_field_with_two_values() -> None:
    [t] = parse_fleet([target(verify="claims")])
    assert t.verify == "claims"
    with pytest.raises(ConfigurationError, match="verify"):
        parse_fleet([target(verify="none")])
