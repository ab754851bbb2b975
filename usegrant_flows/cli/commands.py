"""The ``usegrant-flows`` command.

``usegrant-flows token create`` mints a token and prints it to stdout (the one place a
token is printed on purpose, for piping); ``login`` / ``logout`` manage the API key in
the OS keyring. ``emulator``, ``demo`` and ``quota`` are loaded only when invoked, so
``token create`` never imports uvicorn, FastAPI or Prefect.

Errors are one line on stderr, without a traceback: exit status 2 for configuration
and usage errors (a missing option is named as missing), 1 for API and connection
errors; ``quota plan`` exits 3 for a fleet that does not fit its request budget.

Example:
    >>> import contextlib, io
    >>> with contextlib.redirect_stdout(io.StringIO()) as out:
    ...     status = main(["--version"])
    >>> status, out.getvalue().strip() == __version__
    (0, True)
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Sequence
from typing import Any, Literal

from cyclopts import App
from cyclopts.exceptions import CycloptsError, MissingArgumentError

from usegrant_flows._version import __version__
from usegrant_flows.api.errors import ConfigurationError, UseGrantError

__all__ = ["PLAINTEXT_BACKENDS", "app", "is_plaintext_backend", "main"]

#: Exit status for configuration and usage errors.
EXIT_CONFIGURATION = 2
#: Exit status for API and connection errors.
EXIT_FAILURE = 1

app = App(
    name="usegrant-flows",
    help="Mint UseGrant access tokens; manage the API key; run the local emulator.",
    version=__version__,
)
token_app = App(name="token", help="Mint UseGrant access tokens.")
app.command(token_app)

# Registered by import path: resolved (imported) only when the command runs.
app.command(
    "usegrant_flows.emulator.cli:serve",
    name="emulator",
    help="Run a local UseGrant API emulator that signs real JWTs.",
)
app.command(
    "usegrant_flows.cli.demo:main",
    name="demo",
    help="Run the end-to-end demo against a local emulator.",
)
app.command(
    "usegrant_flows.cli.quota:app",
    name="quota",
    help="Show and manage the API key's request quota.",
)
app.command(
    "usegrant_flows.cli.fleet:app",
    name="fleet",
    help="Save fleets of rotation targets in Prefect, and show them.",
)
app.command(
    "usegrant_flows.cli.alerts:app",
    name="alerts",
    help="Alert on failed and unrotated tokens (Prefect automations).",
)
app.command(
    "usegrant_flows.cli.credentials:app",
    name="credentials",
    help="Save the API key as a UseGrant Credentials block in Prefect.",
)
app.command(
    "usegrant_flows.cli.init:init",
    name="init",
    help="Write prefect.yaml and an example fleet.yaml, to deploy from the package alone.",
)
app.command(
    "usegrant_flows.cli.consumer:app",
    name="consumer-config",
    help="Print what the AWS, GCP or Azure SDK needs to read a target's token file.",
)


@token_app.command(name="create")
def create_token(
    *,
    provider_id: str,
    client_id: str,
    expires_in: int | None = None,
    use_jwt_type: bool | None = None,
    audience_as_array: bool | None = None,
    force_default_domain: bool | None = None,
    base_url: str | None = None,
    raw: bool = False,
    verify: Literal["full", "claims", "off"] = "full",
) -> int:
    """Mint an access token and print it to stdout, once it passed the checks.

    The API key comes from USEGRANT_API_KEY, a .env file or the keyring
    (``usegrant-flows login``). The token is checked as a rotation checks it (claims
    and signature against the issuer's keys: USEGRANT_JWKS_URL, else discovery); a
    token that fails is not printed: one line on stderr, exit status 1.

    Args:
        provider_id: The provider's UUID.
        client_id: The client's UUID.
        expires_in: Token lifetime in seconds, 1..172800 (48 h).
        use_jwt_type: Set the JWT header typ to "jwt" instead of "at+jwt".
        audience_as_array: Make the aud claim an array.
        force_default_domain: Use the provider's default domain as issuer.
        base_url: API base URL (default USEGRANT_BASE_URL or https://sdk.usegrant.dev).
        raw: Print the bare JWT instead of the JSON answer.
        verify: "full" (claims and signature), "claims" (claims only) or "off".
    """
    from usegrant_flows.api.client import UseGrantClient
    from usegrant_flows.api.settings import load_settings
    from usegrant_flows.api.trust import check_issued, check_mode

    mode = check_mode(verify)
    with UseGrantClient(base_url=base_url) as client:
        token = client.create_token(
            provider_id,
            client_id,
            expires_in=expires_in,
            use_jwt_type=use_jwt_type,
            audience_as_array=audience_as_array,
            force_default_domain=force_default_domain,
        )
        jwks_url = load_settings().jwks_url if mode == "full" else None
        check_issued(token, mode=mode, base_url=client.base_url, jwks_url=jwks_url)
    # Deliberately printed: stdout is where the caller asked for the token.
    if raw:
        print(token.access_token.get_secret_value())
    else:
        print(json.dumps(token.to_wire()))
    return 0


#: Keyring backends that write the secret to disk unencrypted, by module and class.
#: Any backend whose class name says "plaintext" counts too.
PLAINTEXT_BACKENDS = frozenset(
    {
        "keyrings.alt.file.PlaintextKeyring",
        "keyrings.alt.pyfs.PlaintextKeyring",
        "keyrings.cryptfile.file.PlaintextKeyring",
    }
)


def _backend_in_use() -> Any:
    """Return the keyring backend a password write goes to.

    A chainer (several usable backends) writes to the first of its backends, which
    are sorted by priority.
    """
    import keyring

    backend = keyring.get_keyring()
    chained = getattr(backend, "backends", None)
    if isinstance(chained, (list, tuple)) and chained:
        return chained[0]
    return backend


def _backend_path(backend: Any) -> str:
    return f"{type(backend).__module__}.{type(backend).__qualname__}"


def _backend_name(backend: Any) -> str:
    name = getattr(backend, "name", None)
    return name if isinstance(name, str) and name else type(backend).__name__


def is_plaintext_backend(backend: Any) -> bool:
    """Whether a keyring backend stores passwords unencrypted on disk.

    Args:
        backend: A keyring backend instance (``keyring.get_keyring()``).

    Example:
        >>> from keyrings.alt.file import PlaintextKeyring
        >>> is_plaintext_backend(PlaintextKeyring())
        True
    """
    return (
        _backend_path(backend) in PLAINTEXT_BACKENDS
        or "plaintext" in type(backend).__name__.lower()
    )


def _check_backend(backend: Any, *, allow_plaintext: bool) -> None:
    """Refuse a backend that would not keep the key, or keep it in plain text."""
    name, path = _backend_name(backend), _backend_path(backend)
    if path == "keyring.backends.null.Keyring":
        raise ConfigurationError(
            f"keyring backend {name} ({path}) stores nothing; set USEGRANT_API_KEY or "
            "use a .env file instead, or choose a real backend (PYTHON_KEYRING_BACKEND)"
        )
    if is_plaintext_backend(backend) and not allow_plaintext:
        raise ConfigurationError(
            f"keyring backend {name} ({path}) would store the API key unencrypted; "
            "pass --allow-plaintext to accept that, or set USEGRANT_API_KEY or use a "
            ".env file instead"
        )


@app.command
def login(*, allow_plaintext: bool = False) -> int:
    """Store the API key in the OS keyring.

    Reads the key from a hidden prompt, or from stdin when stdin is not a terminal
    (``printf %s "$KEY" | usegrant-flows login``). Says which keyring backend it used,
    and refuses a backend that stores passwords unencrypted unless told otherwise.

    Args:
        allow_plaintext: Accept a keyring backend that writes the key unencrypted to a
            file (e.g. keyrings.alt's PlaintextKeyring, common on headless machines).
    """
    import keyring
    import keyring.errors

    from usegrant_flows.api.checks import check_api_key
    from usegrant_flows.api.settings import KEYRING_SERVICE, KEYRING_USERNAME

    # Checked before the prompt: nobody should type a key that will not be kept.
    backend = _backend_in_use()
    _check_backend(backend, allow_plaintext=allow_plaintext)
    if sys.stdin is not None and sys.stdin.isatty():
        entered = getpass.getpass("UseGrant API key: ")
    else:
        entered = sys.stdin.readline() if sys.stdin is not None else ""
    key = check_api_key(entered.strip())
    try:
        keyring.set_password(KEYRING_SERVICE, KEYRING_USERNAME, key.get_secret_value())
    except keyring.errors.KeyringError as exc:
        raise ConfigurationError(
            f"No usable OS keyring ({type(exc).__name__}); "
            "set USEGRANT_API_KEY or use a .env file instead"
        ) from None
    where = f"keyring backend {_backend_name(backend)}"
    if is_plaintext_backend(backend):
        file = getattr(backend, "file_path", None)
        where += f", unencrypted{f' in {file}' if isinstance(file, str) else ''}"
    print(f"API key stored in {where} (service {KEYRING_SERVICE!r}).", file=sys.stderr)
    return 0


@app.command
def logout() -> int:
    """Remove the API key from the OS keyring."""
    import keyring
    import keyring.errors

    from usegrant_flows.api.settings import KEYRING_SERVICE, KEYRING_USERNAME

    try:
        keyring.delete_password(KEYRING_SERVICE, KEYRING_USERNAME)
    except keyring.errors.PasswordDeleteError:
        print("No API key was stored in the OS keyring.", file=sys.stderr)
        return 0
    except keyring.errors.KeyringError as exc:
        raise ConfigurationError(f"No usable OS keyring ({type(exc).__name__})") from None
    name = _backend_name(_backend_in_use())
    print(f"API key removed from keyring backend {name}.", file=sys.stderr)
    return 0


def _option_names(command: Any) -> set[str]:
    """The ``--option`` spellings a command accepts (its parameters, flags' negatives)."""
    import inspect

    names = {"--help", "-h"}
    try:
        parameters = inspect.signature(command).parameters.values()
    except (TypeError, ValueError):
        return names
    for parameter in parameters:
        option = parameter.name.replace("_", "-")
        names.update({f"--{option}", f"--no-{option}"})
    return names


def _missing_message(exc: MissingArgumentError) -> str:
    """Name what is missing: cyclopts says "requires an argument" for all of it."""
    argument = exc.argument
    if argument is None:
        return str(exc)
    if exc.keyword is not None:
        text = f"option {exc.keyword} needs a value"
    elif argument.field_info.is_positional:
        text = f"missing required argument {argument.field_info.name.upper()}"
    else:
        text = f"missing required option {argument.name}"
    # Cyclopts stops at the first missing argument, before it reports unknown options:
    # name those too, so that a typo is not reported as a missing option alone.
    known = _option_names(exc.target)
    unknown = [
        token
        for token in exc.unused_tokens or ()
        if token.startswith("-") and token.split("=", 1)[0] not in known
    ]
    if unknown:
        text += f"; unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}"
    if exc.command_chain:
        text += f" (see usegrant-flows {' '.join(exc.command_chain)} --help)"
    return text


def _fail(message: object, status: int) -> int:
    text = " ".join(str(message).split()) or "failed"
    print(f"usegrant-flows: error: {text}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``usegrant-flows`` command; the console-script entry point.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit status: 0 on success, 2 for configuration or usage errors, 1 for API,
        connection or other failures.
    """
    try:
        result = app(
            argv,
            exit_on_error=False,
            print_error=False,
            result_action="return_value",
        )
    except MissingArgumentError as exc:
        return _fail(_missing_message(exc), EXIT_CONFIGURATION)
    except CycloptsError as exc:
        return _fail(exc, EXIT_CONFIGURATION)
    except ConfigurationError as exc:
        return _fail(exc, EXIT_CONFIGURATION)
    except UseGrantError as exc:
        return _fail(exc, EXIT_FAILURE)
    except ImportError as exc:  # a lazily registered command whose module is missing
        return _fail(exc, EXIT_FAILURE)
    except KeyboardInterrupt:
        return 130
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
