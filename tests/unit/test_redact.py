"""Scrubbing by value: every secret the library holds is cut out of reasons and error text."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr

from usegrant_flows.api.redact import redact, register_secret
from usegrant_flows.rotation.policy import RotationAction, RotationResult, explain_error
from usegrant_flows.sinks import VaultKvTokenSink, WebhookTokenSink

VAULT_TOKEN = "hvs.vault-token-0123456789abcdef"


def test_a_registered_value_is_cut_out_of_any_text() -> None:
    register_secret("an-api-key-7f3e2c1b")
    assert redact("key an-api-key-7f3e2c1b refused") == "key [redacted] refused"


def test_the_base64_form_of_a_registered_value_is_cut_out_too() -> None:
    register_secret(SecretStr("user:p4ssw0rd-for-basic"))
    encoded = base64.b64encode(b"user:p4ssw0rd-for-basic").decode()
    assert encoded not in redact(f"Authorization: Basic {encoded}")


def test_a_short_value_is_not_registered_so_words_survive() -> None:
    register_secret("true")
    assert redact("true story") == "true story"


def test_a_vault_error_quoting_the_sink_token_becomes_a_clean_reason() -> None:
    hvac = pytest.importorskip("hvac")
    sink = VaultKvTokenSink(url="http://127.0.0.1:8200", path="usegrant/x", token=VAULT_TOKEN)
    error = hvac.exceptions.InvalidRequest(errors=[f"invalid header X-Vault-Token: {VAULT_TOKEN}"])
    reason = explain_error(sink._fail("write", error))
    assert VAULT_TOKEN not in reason and "[redacted]" in reason


def test_an_approle_secret_id_is_scrubbed_from_a_reason() -> None:
    secret_id = "approle-secret-id-5a6b7c8d9e"
    VaultKvTokenSink(
        url="http://127.0.0.1:8200", path="usegrant/x", role_id="r", secret_id=secret_id
    )
    assert secret_id not in explain_error(RuntimeError(f"login failed for {secret_id}"))


def test_webhook_headers_and_signing_key_are_scrubbed_from_a_reason() -> None:
    WebhookTokenSink(
        url="https://hooks.example.com/T0/B0/url-part-secret",
        headers={"Authorization": "Bearer header-secret-42aa"},
        signing_key="signing-key-secret-99bb",
    )
    text = "echo: Bearer header-secret-42aa signing-key-secret-99bb url-part-secret"
    reason = explain_error(RuntimeError(text))
    for secret in ("header-secret-42aa", "signing-key-secret-99bb"):
        assert secret not in reason
    assert "https://hooks.example.com/T0/B0/url-part-secret" not in explain_error(
        RuntimeError("posting to https://hooks.example.com/T0/B0/url-part-secret failed")
    )


def test_a_result_row_never_keeps_a_registered_secret_in_its_reason() -> None:
    register_secret("aws-secret-access-key-ZZ9")
    row = RotationResult(
        target="t",
        provider_id="p",
        client_id="c",
        action=RotationAction.FAILED,
        reason="SignatureDoesNotMatch for aws-secret-access-key-ZZ9",
    )
    assert row.reason == "SignatureDoesNotMatch for [redacted]"
