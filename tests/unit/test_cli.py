"""The ``usegrant-flows`` command, run in-process with ``main(argv)`` and as a subprocess."""

from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backends.fail
import keyring.backends.null
import pytest
import respx
from keyrings.alt.file import PlaintextKeyring

from tests.unit.conftest import MemoryKeyring, make_jwt
from usegrant_flows.api import errors
from usegrant_flows.api.settings import KEYRING_SERVICE, KEYRING_USERNAME
from usegrant_flows.cli.commands import is_plaintext_backend, main

BASE = "https://sdk.usegrant.dev"
API_KEY = "usegrant_cli_test_key_41b2"
PROVIDER = "5b0f4c3e-8d7a-4a3b-9c1d-2e3f4a5b6c7d"
CLIENT = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
TOKENS_URL = f"{BASE}/v1/providers/{PROVIDER}/clients/{CLIENT}/tokens"
TOKEN = make_jwt({"jti": "cli-jti", "exp": 1_900_000_000})
OK_BODY = {"accessToken": TOKEN, "expiresAt": "2030-03-17T17:46:40.000Z", "type": "Bearer"}
# respx answers with dummy signatures: the checks are proven against the emulator
# (tests/integration/test_tasks_verify.py).
CREATE = ["token", "create", "--provider-id", PROVIDER, "--client-id", CLIENT, "--verify", "off"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


@pytest.fixture
def key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USEGRANT_API_KEY", API_KEY)


class TtyInput(io.StringIO):
    def isatty(self) -> bool:
        return True


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("usegrant-flows: error: ")
    return lines[0]


# --- token create -------------------------------------------------------------------------


@pytest.mark.usefixtures("key_in_env")
def test_token_create_prints_the_json_answer(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    route = api.post(TOKENS_URL).respond(201, json=OK_BODY)

    status = main(CREATE)

    out = capsys.readouterr().out
    assert status == 0
    assert json.loads(out) == OK_BODY
    assert json.loads(route.calls.last.request.content) == {}


@pytest.mark.usefixtures("key_in_env")
def test_token_create_raw_prints_the_bare_jwt(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    api.post(TOKENS_URL).respond(201, json=OK_BODY)

    status = main([*CREATE, "--raw"])

    assert status == 0
    assert capsys.readouterr().out == TOKEN + "\n"


@pytest.mark.usefixtures("key_in_env")
def test_token_create_sends_the_options_given(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    route = api.post(TOKENS_URL).respond(201, json=OK_BODY)

    main(
        [
            *CREATE,
            "--expires-in",
            "900",
            "--use-jwt-type",
            "--no-audience-as-array",
            "--force-default-domain",
        ]
    )

    assert json.loads(route.calls.last.request.content) == {
        "expiresIn": 900,
        "useJwtType": True,
        "audienceAsArray": False,
        "forceDefaultDomain": True,
    }


@pytest.mark.usefixtures("key_in_env")
def test_token_create_uses_the_base_url_option(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    route = api.post(
        f"http://127.0.0.1:8787/v1/providers/{PROVIDER}/clients/{CLIENT}/tokens"
    ).respond(201, json=OK_BODY)

    status = main([*CREATE, "--base-url", "http://127.0.0.1:8787"])

    assert status == 0
    assert route.call_count == 1


def test_token_create_uses_the_key_stored_by_login(
    api: respx.MockRouter, memory_keyring: MemoryKeyring, capsys: pytest.CaptureFixture[str]
) -> None:
    memory_keyring.set_password(KEYRING_SERVICE, KEYRING_USERNAME, API_KEY)
    route = api.post(TOKENS_URL).respond(201, json=OK_BODY)

    assert main(CREATE) == 0
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {API_KEY}"


@pytest.mark.usefixtures("key_in_env")
@pytest.mark.parametrize("status", [401, 404, 503])
def test_an_api_error_is_one_line_on_stderr_with_exit_1(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str], status: int
) -> None:
    api.post(TOKENS_URL).respond(status, json={"code": "SOME_CODE", "message": "nope"})

    exit_status = main(CREATE)

    captured = capsys.readouterr()
    assert exit_status == 1
    assert captured.out == ""
    assert f"answered {status}" in one_error_line(captured.err)


@pytest.mark.usefixtures("key_in_env")
def test_a_connection_error_is_one_line_on_stderr_with_exit_1(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    import httpx

    api.post(TOKENS_URL).mock(side_effect=httpx.ConnectError("refused"))

    exit_status = main(CREATE)

    assert exit_status == 1
    assert "Could not reach" in one_error_line(capsys.readouterr().err)


@pytest.mark.usefixtures("key_in_env")
@pytest.mark.parametrize(
    ("extra", "argument"),
    [
        (["--expires-in", "172801"], "expires_in"),
        (["--base-url", "http://example.com"], "base_url"),
    ],
)
def test_a_configuration_error_is_one_line_on_stderr_with_exit_2(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str], extra: list[str], argument: str
) -> None:
    route = api.route()

    exit_status = main([*CREATE, *extra])

    assert exit_status == 2
    assert argument in one_error_line(capsys.readouterr().err)
    assert route.call_count == 0


@pytest.mark.usefixtures("key_in_env")
def test_a_bad_provider_id_is_a_configuration_error(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_status = main(["token", "create", "--provider-id", "../x", "--client-id", CLIENT])

    assert exit_status == 2
    assert "provider_id" in one_error_line(capsys.readouterr().err)


def test_no_key_anywhere_is_a_configuration_error(capsys: pytest.CaptureFixture[str]) -> None:
    exit_status = main(CREATE)

    assert exit_status == 2
    assert "usegrant-flows login" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "argv",
    [
        ["token", "create", "--provider-id", PROVIDER],
        [*CREATE, "--expires-in", "soon"],
        ["token", "create", "--no-such-option"],
    ],
)
def test_a_usage_error_is_one_line_on_stderr_with_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["token", "create", "--client-id", CLIENT], "missing required option --provider-id"),
        (["token", "create", "--provider-id", PROVIDER], "missing required option --client-id"),
        (
            ["token", "create", "--client-id", CLIENT, "--provider-id"],
            "option --provider-id needs a value",
        ),
        (["quota", "plan"], "missing required argument FLEET_FILE"),
    ],
)
def test_a_missing_option_is_named_as_missing(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2

    line = one_error_line(capsys.readouterr().err)
    assert message in line
    assert "requires an argument" not in line
    assert "unknown option" not in line


def test_a_typo_beside_a_missing_option_is_named_too(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "create", "--provider-idd", PROVIDER, "--client-id", CLIENT]) == 2

    line = one_error_line(capsys.readouterr().err)
    assert "missing required option --provider-id; unknown option --provider-idd" in line
    assert "usegrant-flows token create --help" in line


@pytest.mark.usefixtures("key_in_env")
@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.ConfigurationError("bad\nsetting"), 2),
        (errors.AuthenticationError(401, "UNAUTHORIZED", "bad\n  key"), 1),
        (errors.UseGrantConnectionError("no\nroute"), 1),
        (errors.InvalidResponseError("not\r\nJSON"), 1),
        (errors.TokenVerificationError("bad\nsignature"), 1),
        (errors.UseGrantError(""), 1),
    ],
)
def test_every_usegrant_error_is_one_line(
    error: errors.UseGrantError,
    status: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr("usegrant_flows.api.client.UseGrantClient.create_token", fail)

    assert main(CREATE) == status
    captured = capsys.readouterr()
    assert captured.out == ""
    one_error_line(captured.err)


# --- quota plan ----------------------------------------------------------------------------


def fleet_file(folder: Path, count: int, expires_in: int, **defaults: str) -> Path:
    targets = [
        {
            "name": f"t{i}",
            "provider_id": PROVIDER,
            "client_id": f"00000000-0000-4000-8000-{i:012d}",
            "expires_in": expires_in,
            "sinks": [{"type": "file", "path": f"t{i}.jwt"}],
        }
        for i in range(count)
    ]
    path = folder / "fleet.json"
    path.write_text(json.dumps({"defaults": defaults, "targets": targets}))
    return path


def test_quota_plan_of_a_fleet_that_fits_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["quota", "plan", str(fleet_file(tmp_path, 3, 3600))]) == 0
    assert capsys.readouterr().err == ""


def test_quota_plan_of_a_fleet_over_its_budget_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 100 one-minute tokens: about 9000 mints per hour against the default 1000.
    assert main(["quota", "plan", str(fleet_file(tmp_path, 100, 60))]) == 3

    captured = capsys.readouterr()
    assert "does not fit" in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("content", [None, "targets: [", json.dumps({"targets": [{"name": "x"}]})])
def test_quota_plan_of_a_missing_or_bad_fleet_file_exits_2(
    tmp_path: Path, content: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "fleet.yaml"
    if content is not None:
        path.write_text(content)

    assert main(["quota", "plan", str(path)]) == 2
    assert "fleet file" in one_error_line(capsys.readouterr().err)


def test_quota_plan_with_a_missing_credentials_block_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def missing(name: str) -> None:
        raise errors.ConfigurationError(f"credentials block {name!r} not found")

    monkeypatch.setattr("usegrant_flows.credentials.load_credentials", missing)

    path = fleet_file(tmp_path, 3, 3600, credentials="nowhere")
    assert main(["quota", "plan", str(path)]) == 2
    assert "'nowhere' not found" in one_error_line(capsys.readouterr().err)


def test_a_missing_lazily_registered_command_is_one_line_with_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import usegrant_flows.cli.commands as cli

    monkeypatch.setitem(sys.modules, "usegrant_flows.cli.quota", None)  # import fails
    # A fresh app: another test may already have resolved the lazy command.
    fresh = importlib.reload(cli)
    try:
        assert fresh.main(["quota"]) == 1
        assert "usegrant_flows.cli.quota" in one_error_line(capsys.readouterr().err)
    finally:
        monkeypatch.undo()
        importlib.reload(cli)


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0

    out = capsys.readouterr().out
    for command in ("token", "login", "logout", "emulator", "demo", "quota"):
        assert command in out


# --- login / logout -----------------------------------------------------------------------


def test_login_reads_the_key_from_stdin_when_piped(
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(API_KEY + "\n"))

    assert main(["login"]) == 0

    assert memory_keyring.passwords == {(KEYRING_SERVICE, KEYRING_USERNAME): API_KEY}
    captured = capsys.readouterr()
    assert API_KEY not in captured.out + captured.err


def test_login_reads_the_key_from_a_hidden_prompt_on_a_terminal(
    memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts: list[str] = []
    monkeypatch.setattr(sys, "stdin", TtyInput(""))
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or API_KEY)

    assert main(["login"]) == 0

    assert prompts == ["UseGrant API key: "]
    assert memory_keyring.get_password(KEYRING_SERVICE, KEYRING_USERNAME) == API_KEY


@pytest.mark.parametrize("entered", ["", "usegrant key with spaces"])
def test_login_rejects_an_unusable_key_with_exit_2(
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    entered: str,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(entered))

    assert main(["login"]) == 2

    assert "api_key" in one_error_line(capsys.readouterr().err)
    assert memory_keyring.passwords == {}


def test_login_without_a_keyring_backend_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    keyring.set_keyring(keyring.backends.fail.Keyring())
    monkeypatch.setattr(sys, "stdin", io.StringIO(API_KEY))

    assert main(["login"]) == 2

    line = one_error_line(capsys.readouterr().err)
    assert "keyring" in line
    assert "USEGRANT_API_KEY" in line


def test_login_names_the_keyring_backend_it_used(
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(API_KEY))

    assert main(["login"]) == 0

    err = capsys.readouterr().err
    assert f"stored in keyring backend {memory_keyring.name}" in err
    assert "unencrypted" not in err


@pytest.fixture
def plaintext_keyring(tmp_path: Path) -> PlaintextKeyring:
    """keyrings.alt's PlaintextKeyring, writing to a file of the test's own folder."""
    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "keyring_pass.cfg")
    keyring.set_keyring(backend)  # the autouse memory keyring fixture restores the real one
    return backend


def test_login_refuses_a_plaintext_keyring_with_exit_2(
    plaintext_keyring: PlaintextKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prompts: list[str] = []
    monkeypatch.setattr(sys, "stdin", TtyInput(""))
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or API_KEY)

    assert main(["login"]) == 2

    line = one_error_line(capsys.readouterr().err)
    assert "keyrings.alt.file.PlaintextKeyring" in line
    assert "unencrypted" in line and "--allow-plaintext" in line
    assert prompts == []  # refused before asking for the key
    assert not Path(plaintext_keyring.file_path).exists()


def test_login_stores_in_a_plaintext_keyring_when_allowed_and_says_where(
    plaintext_keyring: PlaintextKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(API_KEY))

    assert main(["login", "--allow-plaintext"]) == 0

    err = capsys.readouterr().err
    assert "keyring backend file PlaintextKeyring, unencrypted in " in err
    assert plaintext_keyring.file_path in err
    assert API_KEY not in err
    assert plaintext_keyring.get_password(KEYRING_SERVICE, KEYRING_USERNAME) == API_KEY


def test_login_refuses_the_null_keyring_that_stores_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    keyring.set_keyring(keyring.backends.null.Keyring())
    monkeypatch.setattr(sys, "stdin", io.StringIO(API_KEY))

    assert main(["login", "--allow-plaintext"]) == 2
    assert "stores nothing" in one_error_line(capsys.readouterr().err)


def test_login_names_the_first_backend_of_a_chain(
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Chain:
        backends = (memory_keyring, PlaintextKeyring())

    monkeypatch.setattr(keyring, "get_keyring", Chain)
    monkeypatch.setattr(sys, "stdin", io.StringIO(API_KEY))

    assert main(["login"]) == 0
    assert f"keyring backend {memory_keyring.name} " in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "plaintext"),
    [
        ("keyrings.alt.file.PlaintextKeyring", True),
        ("keyring.backends.SecretService.Keyring", False),
        ("keyring.backends.macOS.Keyring", False),
    ],
)
def test_plaintext_backends_are_recognised(name: str, plaintext: bool) -> None:
    module, _, cls = name.rpartition(".")
    backend_type = type(cls, (), {"__module__": module})
    assert is_plaintext_backend(backend_type()) is plaintext


def test_logout_removes_the_stored_key(
    memory_keyring: MemoryKeyring, capsys: pytest.CaptureFixture[str]
) -> None:
    memory_keyring.set_password(KEYRING_SERVICE, KEYRING_USERNAME, API_KEY)

    assert main(["logout"]) == 0

    assert memory_keyring.passwords == {}
    assert f"removed from keyring backend {memory_keyring.name}" in capsys.readouterr().err


def test_logout_without_a_stored_key_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["logout"]) == 0

    assert "No API key was stored" in capsys.readouterr().err


def test_logout_without_a_keyring_backend_is_one_clear_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    keyring.set_keyring(keyring.backends.fail.Keyring())

    assert main(["logout"]) == 2
    assert "keyring" in one_error_line(capsys.readouterr().err)


# --- as a real process ---------------------------------------------------------------------


def run_cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        key: value for key, value in os.environ.items() if not key.upper().startswith("USEGRANT_")
    }
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"  # never the real keyring
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "usegrant_flows.cli", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_as_a_process_errors_are_one_line_with_no_traceback(tmp_path: Path) -> None:
    result = run_cli(*CREATE, cwd=tmp_path)

    assert result.returncode == 2
    assert result.stdout == ""
    assert "usegrant-flows login" in one_error_line(result.stderr)


def test_token_create_imports_neither_prefect_nor_the_emulator_stack(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from usegrant_flows.cli.commands import is_plaintext_backend, main\n"
        f"main({CREATE!r})\n"
        "top = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(top & {'prefect', 'uvicorn', 'fastapi'}))\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("USEGRANT_")}
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert result.stdout.strip() == "[]"
