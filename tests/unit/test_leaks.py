"""The leak search finds a secret in every form Prefect could store it in."""

from __future__ import annotations

import base64
import json
import pickle
from pathlib import Path

import cloudpickle
import pytest

from tests.leaks import find_secret, scan_tree

SECRET = "eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiJsZWFrLXRlc3QifQ.c2lnbmF0dXJlLWJ5dGVz"


def test_finds_the_literal_secret() -> None:
    assert find_secret(f"log line: {SECRET} end", SECRET) == ["literal"]


def test_finds_nothing_in_unrelated_text() -> None:
    assert find_secret("fingerprint=2f3333d59f05 jti=abc", SECRET) == []


def test_finds_nothing_when_only_a_prefix_is_present() -> None:
    assert find_secret(SECRET[:-5], SECRET) == []


@pytest.mark.parametrize("prefix_length", [0, 1, 2, 3, 4, 5])
def test_finds_standard_base64_at_every_alignment(prefix_length: int) -> None:
    blob = base64.b64encode(b"x" * prefix_length + SECRET.encode() + b"tail")
    assert any(form.startswith("base64") for form in find_secret(blob, SECRET))


@pytest.mark.parametrize("prefix_length", [0, 1, 2])
def test_finds_urlsafe_base64_at_every_alignment(prefix_length: int) -> None:
    # bytes chosen so that the standard and URL-safe encodings differ
    secret = "secret?>?>?>~~~value"
    blob = base64.urlsafe_b64encode(b"\xff" * prefix_length + secret.encode())
    assert f"base64url@{prefix_length}" in find_secret(blob, secret)


def test_finds_base64_wrapped_at_76_characters() -> None:
    blob = base64.encodebytes(b"\x80\x05" * 40 + SECRET.encode() * 2)
    assert b"\n" in blob
    assert find_secret(blob, SECRET)


def test_finds_a_pickled_secret_in_a_json_result_record() -> None:
    # The shape of a persisted Prefect result: base64(cloudpickle) inside a JSON string.
    pickled = base64.encodebytes(cloudpickle.dumps({"token": SECRET})).decode()
    record = json.dumps({"metadata": {"serializer": "pickle"}, "result": pickled})
    assert "\\n" in record
    assert find_secret(record, SECRET)


def test_finds_a_plain_pickle() -> None:
    assert find_secret(pickle.dumps(SECRET), SECRET) == ["literal"]


def test_refuses_a_secret_too_short_to_search_for() -> None:
    with pytest.raises(ValueError, match="at least 8"):
        find_secret("abc", "abc")


def test_scan_tree_reports_the_files_holding_the_secret(tmp_path: Path) -> None:
    (tmp_path / "clean.log").write_text("nothing here")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "result.json").write_bytes(base64.encodebytes(SECRET.encode()))
    hits = scan_tree(tmp_path, SECRET)
    assert list(hits) == [str(Path("sub") / "result.json")]
    assert "base64@0" in hits[str(Path("sub") / "result.json")]


def test_scan_tree_does_not_follow_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text(SECRET)
    inside = tmp_path / "inside"
    inside.mkdir()
    (inside / "link").symlink_to(outside)
    assert scan_tree(inside, SECRET) == {}
