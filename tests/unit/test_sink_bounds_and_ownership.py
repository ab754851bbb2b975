"""Worker bounds (USEGRANT_FILE_ROOT, USEGRANT_ALLOWED_ENDPOINTS) and ownership, per sink.

Each refusal happens in the sink's preflight, before any request, and names the
destination and the way out, never what the destination holds.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.api.models import AccessToken
from usegrant_flows.sinks import FileTokenSink, VaultKvTokenSink, WebhookTokenSink
from usegrant_flows.sinks.base import NotOwnedError

MakeToken = Callable[..., AccessToken]
AUTHORIZED_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorKey operator@host\n"


# ---- USEGRANT_FILE_ROOT --------------------------------------------------------------


def test_a_file_inside_the_root_is_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USEGRANT_FILE_ROOT", str(tmp_path / "tokens"))
    (tmp_path / "tokens").mkdir()
    FileTokenSink(path=tmp_path / "tokens" / "a.jwt").preflight()


def test_a_file_outside_the_root_fails_preflight_naming_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USEGRANT_FILE_ROOT", str(tmp_path / "tokens"))
    with pytest.raises(ConfigurationError, match="outside USEGRANT_FILE_ROOT"):
        FileTokenSink(path=tmp_path / "home" / ".bashrc").preflight()


def test_dot_dot_cannot_climb_out_of_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tokens").mkdir()
    monkeypatch.setenv("USEGRANT_FILE_ROOT", str(tmp_path / "tokens"))
    with pytest.raises(ConfigurationError, match="resolves to"):
        FileTokenSink(path=tmp_path / "tokens" / ".." / "x.jwt").preflight()


def test_a_symlinked_folder_inside_the_root_cannot_lead_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_token: MakeToken
) -> None:
    (tmp_path / "tokens").mkdir()
    (tmp_path / "ssh").mkdir()
    (tmp_path / "tokens" / "link").symlink_to(tmp_path / "ssh")
    monkeypatch.setenv("USEGRANT_FILE_ROOT", str(tmp_path / "tokens"))
    sink = FileTokenSink(path=tmp_path / "tokens" / "link" / "authorized_keys")
    with pytest.raises(ConfigurationError, match="outside USEGRANT_FILE_ROOT"):
        sink.write(make_token())  # write checks too, not only the preflight
    assert not (tmp_path / "ssh" / "authorized_keys").exists()


def test_several_roots_are_separated_by_os_pathsep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("USEGRANT_FILE_ROOT", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    FileTokenSink(path=tmp_path / "b" / "t.jwt").preflight()


# ---- USEGRANT_ALLOWED_ENDPOINTS ------------------------------------------------------


def test_a_vault_url_outside_the_allowed_endpoints_fails_preflight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USEGRANT_ALLOWED_ENDPOINTS", "vault.internal:8200")
    sink = VaultKvTokenSink(url="https://attacker.example:8200", path="x", jwt_role="r")
    with pytest.raises(ConfigurationError, match="not in USEGRANT_ALLOWED_ENDPOINTS"):
        sink.preflight()


def test_an_allowed_host_without_port_allows_every_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("hvac")
    monkeypatch.setenv("USEGRANT_ALLOWED_ENDPOINTS", "127.0.0.1, vault.internal:8200")
    VaultKvTokenSink(url="http://127.0.0.1:8201", path="x", jwt_role="r").preflight()


def test_a_webhook_outside_the_allowed_endpoints_is_refused_without_its_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USEGRANT_ALLOWED_ENDPOINTS", "hooks.internal")
    sink = WebhookTokenSink(url="https://evil.example/secret-path-part")
    with pytest.raises(ConfigurationError, match=r"https://evil\.example is not in") as caught:
        sink.preflight()
    assert "secret-path-part" not in str(caught.value)


def test_a_malformed_allowed_endpoint_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USEGRANT_ALLOWED_ENDPOINTS", "vault:port")
    sink = WebhookTokenSink(url="https://hooks.internal/x")
    with pytest.raises(ConfigurationError, match="USEGRANT_ALLOWED_ENDPOINTS: 'vault:port'"):
        sink.preflight()


# ---- ownership of files --------------------------------------------------------------


def test_a_file_that_is_not_a_token_fails_preflight_with_the_way_out(tmp_path: Path) -> None:
    keys = tmp_path / "authorized_keys"
    keys.write_text(AUTHORIZED_KEY)
    with pytest.raises(NotOwnedError, match="set `adopt: true` on this sink") as caught:
        FileTokenSink(path=keys).preflight()
    assert str(keys) in str(caught.value)
    assert "ssh-ed25519" not in str(caught.value)


def test_a_foreign_file_is_never_replaced_by_write(tmp_path: Path, make_token: MakeToken) -> None:
    bashrc = tmp_path / ".bashrc"
    bashrc.write_text("alias ll='ls -l'\n")
    with pytest.raises(NotOwnedError):
        FileTokenSink(path=bashrc, format="dotenv").write(make_token())
    assert bashrc.read_text() == "alias ll='ls -l'\n"


def test_adopt_takes_a_foreign_file_over_and_then_it_is_ours(
    tmp_path: Path, make_token: MakeToken
) -> None:
    path = tmp_path / "t.jwt"
    path.write_text("placeholder written by hand\n")
    FileTokenSink(path=path, adopt=True).write(make_token())
    FileTokenSink(path=path).preflight()  # ours now, without adopt


def test_a_token_file_of_another_format_is_not_ours(tmp_path: Path, make_token: MakeToken) -> None:
    path = tmp_path / "t"
    FileTokenSink(path=path, format="json").write(make_token())
    with pytest.raises(NotOwnedError, match="other than a dotenv token"):
        FileTokenSink(path=path, format="dotenv").preflight()
