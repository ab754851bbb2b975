"""FileTokenSink: exact formats, permissions, refusals, atomicity and read-back."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.api.models import AccessToken
from usegrant_flows.sinks import FileTokenSink, SinkError, _atomic

MakeToken = Callable[..., AccessToken]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _jwt(token: AccessToken) -> str:
    return token.access_token.get_secret_value()


def _expiry(token: AccessToken) -> str:
    return token.to_wire()["expiresAt"]


# formats, exact to the byte


def test_raw_format_is_the_bare_jwt_without_newline(tmp_path: Path, make_token: MakeToken) -> None:
    token = make_token()
    FileTokenSink(path=tmp_path / "t.jwt").write(token)
    assert (tmp_path / "t.jwt").read_bytes() == _jwt(token).encode()


def test_json_format_is_one_compact_line(tmp_path: Path, make_token: MakeToken) -> None:
    token = make_token()
    FileTokenSink(path=tmp_path / "t.json", format="json").write(token)
    expected = f'{{"accessToken":"{_jwt(token)}","expiresAt":"{_expiry(token)}","type":"Bearer"}}\n'
    assert (tmp_path / "t.json").read_bytes() == expected.encode()


def test_json_format_uses_the_configured_token_field(tmp_path: Path, make_token: MakeToken) -> None:
    token = make_token()
    sink = FileTokenSink(path=tmp_path / "t.json", format="json", json_token_field="id_token")
    sink.write(token)
    body = json.loads((tmp_path / "t.json").read_text())
    assert body == {"id_token": _jwt(token), "expiresAt": _expiry(token), "type": "Bearer"}


def test_dotenv_format_writes_token_and_expiry_variables(
    tmp_path: Path, make_token: MakeToken
) -> None:
    token = make_token()
    FileTokenSink(path=tmp_path / "t.env", format="dotenv").write(token)
    expected = (
        f"USEGRANT_ACCESS_TOKEN={_jwt(token)}\nUSEGRANT_ACCESS_TOKEN_EXPIRES_AT={_expiry(token)}\n"
    )
    assert (tmp_path / "t.env").read_bytes() == expected.encode()


def test_dotenv_format_uses_the_configured_variable(tmp_path: Path, make_token: MakeToken) -> None:
    token = make_token()
    sink = FileTokenSink(path=tmp_path / "t.env", format="dotenv", dotenv_variable="AWS_TOKEN")
    sink.write(token)
    lines = (tmp_path / "t.env").read_text().splitlines()
    assert [line.split("=")[0] for line in lines] == ["AWS_TOKEN", "AWS_TOKEN_EXPIRES_AT"]


@pytest.mark.parametrize("name", ["", "1ABC", "A-B", "A B", "A=B"])
def test_refuses_a_dotenv_variable_that_is_not_a_shell_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValidationError, match="dotenv_variable"):
        FileTokenSink(path=tmp_path / "t.env", format="dotenv", dotenv_variable=name)


@pytest.mark.parametrize("field", ["", "expiresAt", "type"])
def test_refuses_a_json_token_field_that_collides(tmp_path: Path, field: str) -> None:
    with pytest.raises(ValidationError, match="json_token_field"):
        FileTokenSink(path=tmp_path / "t.json", format="json", json_token_field=field)


# read-back


@pytest.mark.parametrize("fmt", ["raw", "json", "dotenv"])
def test_read_returns_the_written_token(tmp_path: Path, make_token: MakeToken, fmt: Any) -> None:
    token = make_token()
    sink = FileTokenSink(path=tmp_path / "token", format=fmt)
    sink.write(token)
    back = sink.read()
    assert back is not None
    assert back.fingerprint == token.fingerprint
    assert back.expires_at == token.expires_at
    assert back.type == "Bearer"


def test_read_of_a_raw_file_takes_the_expiry_from_the_exp_claim(
    tmp_path: Path, make_token: MakeToken
) -> None:
    token = make_token(lifetime=900)
    (tmp_path / "t.jwt").write_text(_jwt(token))
    back = FileTokenSink(path=tmp_path / "t.jwt").read()
    assert back is not None
    assert int(back.expires_at.timestamp()) == token.claims()["exp"]


def test_read_returns_none_when_the_file_does_not_exist(tmp_path: Path) -> None:
    assert FileTokenSink(path=tmp_path / "missing.jwt").read() is None


@pytest.mark.parametrize("fmt", ["raw", "json", "dotenv"])
def test_read_of_garbage_raises_without_quoting_it(tmp_path: Path, fmt: Any) -> None:
    (tmp_path / "t").write_text("not-a-token-SECRETISH-CONTENT")
    with pytest.raises(SinkError) as caught:
        FileTokenSink(path=tmp_path / "t", format=fmt).read()
    assert "SECRETISH" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_read_of_a_jwt_without_exp_claim_raises(tmp_path: Path) -> None:
    no_exp = "eyJhbGciOiJub25lIn0.eyJqdGkiOiJhYmMifQ."
    (tmp_path / "t.jwt").write_text(no_exp)
    with pytest.raises(SinkError, match="does not hold a token"):
        FileTokenSink(path=tmp_path / "t.jwt").read()


async def test_async_twins_write_and_read(tmp_path: Path, make_token: MakeToken) -> None:
    token = make_token()
    sink = FileTokenSink(path=tmp_path / "t.jwt")
    await sink.awrite(token)
    back = await sink.aread()
    assert back is not None
    assert back.fingerprint == token.fingerprint


# permissions


def test_file_mode_is_0600_by_default(tmp_path: Path, make_token: MakeToken) -> None:
    FileTokenSink(path=tmp_path / "t.jwt").write(make_token())
    assert _mode(tmp_path / "t.jwt") == 0o600


def test_file_mode_is_exact_whatever_the_umask(tmp_path: Path, make_token: MakeToken) -> None:
    previous = os.umask(0)
    try:
        FileTokenSink(path=tmp_path / "t.jwt", mode=0o640).write(make_token())
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "t.jwt") == 0o640


def test_mode_accepts_an_octal_string(tmp_path: Path) -> None:
    assert FileTokenSink(path=tmp_path / "t", mode="0640").mode == 0o640  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", [0o644, 0o660, 0o700, 0o604, 0o200, 0o000, "0644", "rw"])
def test_refuses_a_mode_wider_than_0640_or_without_owner_read(tmp_path: Path, mode: Any) -> None:
    with pytest.raises(ValidationError, match="mode"):
        FileTokenSink(path=tmp_path / "t", mode=mode)


def test_rewriting_a_too_wide_file_narrows_it(tmp_path: Path, make_token: MakeToken) -> None:
    target = tmp_path / "t.jwt"
    FileTokenSink(path=target).write(make_token())
    target.chmod(0o644)
    FileTokenSink(path=target).write(make_token())
    assert _mode(target) == 0o600


def test_missing_parent_directories_are_created_with_0700(
    tmp_path: Path, make_token: MakeToken
) -> None:
    target = tmp_path / "a" / "b" / "t.jwt"
    FileTokenSink(path=target).write(make_token())
    assert _mode(tmp_path / "a") == 0o700
    assert _mode(tmp_path / "a" / "b") == 0o700


# refusals


def test_refuses_a_symlink_target_and_leaves_its_destination_alone(
    tmp_path: Path, make_token: MakeToken
) -> None:
    destination = tmp_path / "elsewhere"
    destination.write_text("keep me")
    (tmp_path / "t.jwt").symlink_to(destination)
    with pytest.raises(ConfigurationError, match="symbolic link"):
        FileTokenSink(path=tmp_path / "t.jwt").write(make_token())
    assert destination.read_text() == "keep me"
    assert (tmp_path / "t.jwt").is_symlink()


def test_refuses_to_read_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "t.jwt").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigurationError, match="symbolic link"):
        FileTokenSink(path=tmp_path / "t.jwt").read()


def test_refuses_a_world_writable_directory(tmp_path: Path, make_token: MakeToken) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigurationError, match="world-writable"):
        FileTokenSink(path=shared / "t.jwt").write(make_token())
    assert list(shared.iterdir()) == []


def test_refuses_a_target_that_is_a_directory(tmp_path: Path, make_token: MakeToken) -> None:
    (tmp_path / "t.jwt").mkdir()
    with pytest.raises(ConfigurationError, match="not a regular file"):
        FileTokenSink(path=tmp_path / "t.jwt").write(make_token())


# failures keep the last good token


def test_failed_write_keeps_the_previous_token_and_no_temp_file(
    tmp_path: Path, make_token: MakeToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = FileTokenSink(path=tmp_path / "t.jwt")
    old = make_token()
    sink.write(old)

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_atomic.os, "fsync", broken_fsync)
    with pytest.raises(SinkError, match="No space left"):
        sink.write(make_token())
    assert (tmp_path / "t.jwt").read_text() == _jwt(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.jwt"]


def test_failed_write_error_does_not_contain_the_token(
    tmp_path: Path, make_token: MakeToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = make_token()

    def broken_replace(src: Any, dst: Any) -> None:
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(_atomic.os, "replace", broken_replace)
    with pytest.raises(SinkError) as caught:
        FileTokenSink(path=tmp_path / "t.jwt").write(token)
    assert _jwt(token) not in str(caught.value)
    assert not (tmp_path / "t.jwt").exists()
    assert list(tmp_path.iterdir()) == []


def test_stale_temp_files_of_killed_writers_are_swept(
    tmp_path: Path, make_token: MakeToken
) -> None:
    stale = tmp_path / ".t.jwt.0123456789abcdef.tmp"
    fresh = tmp_path / ".t.jwt.fedcba9876543210.tmp"
    for leftover in (stale, fresh):
        leftover.write_text("partial")
    old = time.time() - _atomic.STALE_TEMP_SECONDS - 10
    os.utime(stale, (old, old))
    FileTokenSink(path=tmp_path / "t.jwt").write(make_token())
    assert not stale.exists()
    assert fresh.exists()


def test_a_directory_is_swept_once_per_process(
    tmp_path: Path, make_token: MakeToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    scanned: list[str] = []
    real_scandir = _atomic.os.scandir

    def counting_scandir(path: str) -> object:
        scanned.append(str(path))
        return real_scandir(path)

    monkeypatch.setattr(_atomic.os, "scandir", counting_scandir)
    for name in ("a.jwt", "b.jwt", "a.jwt"):
        FileTokenSink(path=tmp_path / name).write(make_token())
    assert scanned == [str(tmp_path)]


def test_the_sweep_leaves_files_that_are_not_ours_alone(
    tmp_path: Path, make_token: MakeToken
) -> None:
    other = tmp_path / ".editor-backup.tmp"
    other.write_text("not ours")
    old = time.time() - _atomic.STALE_TEMP_SECONDS - 10
    os.utime(other, (old, old))
    FileTokenSink(path=tmp_path / "t.jwt").write(make_token())
    assert other.exists()


def test_describe_names_the_path_and_format(tmp_path: Path) -> None:
    sink = FileTokenSink(path=tmp_path / "t.env", format="dotenv")
    assert sink.describe() == f"file {tmp_path / 't.env'} (dotenv)"


def test_path_expands_the_home_directory() -> None:
    assert FileTokenSink(path="~/t.jwt").path == Path.home() / "t.jwt"  # type: ignore[arg-type]


def test_is_readable() -> None:
    assert FileTokenSink.readable is True
    assert FileTokenSink.kind == "file"


# preflight: refusals before any token is minted, nothing created


def test_preflight_accepts_a_missing_file_in_a_private_folder(tmp_path: Path) -> None:
    sink = FileTokenSink(path=tmp_path / "new" / "deeper" / "t.jwt")
    sink.preflight()
    assert not (tmp_path / "new").exists()  # nothing is created by a preflight


def test_preflight_refuses_a_fifo_at_the_path(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "t.jwt")
    with pytest.raises(ConfigurationError, match=r"named pipe \(FIFO\), not a regular file"):
        FileTokenSink(path=tmp_path / "t.jwt").preflight()


def test_preflight_refuses_a_symlink_even_to_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "real.jwt").write_text("x")
    (tmp_path / "t.jwt").symlink_to(tmp_path / "real.jwt")
    with pytest.raises(ConfigurationError, match="symbolic link"):
        FileTokenSink(path=tmp_path / "t.jwt").preflight()


def test_preflight_refuses_a_directory_at_the_path(tmp_path: Path) -> None:
    (tmp_path / "t.jwt").mkdir()
    with pytest.raises(ConfigurationError, match="is a directory, not a regular file"):
        FileTokenSink(path=tmp_path / "t.jwt").preflight()


def test_preflight_refuses_a_device(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="character device"):
        FileTokenSink(path="/dev/null").preflight()


def test_preflight_refuses_a_socket(tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "t.jwt"))
        with pytest.raises(ConfigurationError, match="socket"):
            FileTokenSink(path=tmp_path / "t.jwt").preflight()


def test_preflight_refuses_a_world_writable_folder(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigurationError, match="world-writable"):
        FileTokenSink(path=shared / "t.jwt").preflight()


def test_preflight_refuses_a_folder_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    with pytest.raises(ConfigurationError, match="is a regular file, not a directory"):
        FileTokenSink(path=tmp_path / "plain" / "t.jwt").preflight()


def test_preflight_refuses_a_missing_folder_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    with pytest.raises(ConfigurationError, match="cannot create directory"):
        FileTokenSink(path=tmp_path / "plain" / "sub" / "t.jwt").preflight()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_preflight_refuses_a_folder_we_cannot_write(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ConfigurationError, match="not writable by this process"):
        FileTokenSink(path=locked / "t.jwt").preflight()


async def test_apreflight_is_the_async_twin(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "t.jwt")
    with pytest.raises(ConfigurationError, match="FIFO"):
        await FileTokenSink(path=tmp_path / "t.jwt").apreflight()


# reads that must neither hang nor eat memory


@pytest.mark.timeout(10)  # a guard against a hang, not a timing assertion
def test_read_of_a_fifo_returns_at_once_with_a_sink_error(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "t.jwt")  # no writer: a blocking open would wait forever
    with pytest.raises(SinkError, match=r"named pipe \(FIFO\), not a regular file"):
        FileTokenSink(path=tmp_path / "t.jwt").read()


@pytest.mark.timeout(10)
def test_read_of_dev_zero_is_refused_without_reading_it() -> None:
    with pytest.raises(SinkError, match="character device, not a regular file"):
        FileTokenSink(path="/dev/zero").read()


def test_read_of_a_large_file_is_refused_without_reading_it_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "t.jwt"
    big.write_bytes(b"e" * 1_500_000)
    read_bytes: list[int] = []
    real_read = os.read

    def counting_read(fd: int, n: int) -> bytes:
        chunk = real_read(fd, n)
        read_bytes.append(len(chunk))
        return chunk

    monkeypatch.setattr(os, "read", counting_read)
    with pytest.raises(SinkError, match="larger than 64 KiB"):
        FileTokenSink(path=big).read()
    assert sum(read_bytes) <= 64 * 1024 + 1


def test_read_stops_at_the_cap_even_when_the_size_lies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file that grows after fstat (or a filesystem reporting size 0): the loop is bounded.
    big = tmp_path / "t.jwt"
    big.write_bytes(b"e" * 200_000)
    real_fstat = os.fstat

    def small_fstat(fd: int) -> os.stat_result:
        info = real_fstat(fd)
        return os.stat_result((info.st_mode, *info[1:6], 10, *info[7:]))

    monkeypatch.setattr(os, "fstat", small_fstat)
    with pytest.raises(SinkError, match="larger than 64 KiB"):
        FileTokenSink(path=big).read()


def test_read_of_a_file_that_is_not_utf8_is_a_sink_error(tmp_path: Path) -> None:
    (tmp_path / "t.jwt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SinkError, match="not UTF-8"):
        FileTokenSink(path=tmp_path / "t.jwt").read()
