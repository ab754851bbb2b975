"""A token file on local disk, for workloads that read their token from a path.

The three formats match what consumers read:

* ``raw``: the bare JWT, no trailing newline. AWS SDKs
  (``AWS_WEB_IDENTITY_TOKEN_FILE``), Azure (``AZURE_FEDERATED_TOKEN_FILE``) and GCP
  ``credential_source.file`` with format ``text`` read exactly this.
* ``json``: one line, ``{"accessToken":"<JWT>","expiresAt":"<ISO>","type":"Bearer"}``
  and a newline; the token's key is configurable (GCP's ``subject_token_field_name``).
* ``dotenv``: two lines, ``USEGRANT_ACCESS_TOKEN=<JWT>`` and
  ``USEGRANT_ACCESS_TOKEN_EXPIRES_AT=<ISO>``, each ending in a newline; the variable
  name is configurable, and the expiry variable is its name plus ``_EXPIRES_AT``, so
  a script can tell when to re-read without decoding the JWT.

Writes are atomic and durable (see :mod:`usegrant_flows.sinks._atomic`): a reader
never sees a partial file, and a failed write leaves the previous token in place.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from usegrant_flows._links import DOCUMENTATION_URL, LOGO_URL
from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.api.models import AccessToken
from usegrant_flows.api.worker_bounds import check_file_allowed
from usegrant_flows.sinks._atomic import (
    atomic_write,
    check_target,
    ensure_directory,
    file_kind,
    preflight_target,
)
from usegrant_flows.sinks._file_mode import FileMode
from usegrant_flows.sinks.base import (
    ADOPT_DESCRIPTION,
    SinkError,
    TokenMetadata,
    TokenSink,
    not_owned,
    token_from_parts,
)

__all__ = ["MAX_READ_BYTES", "FileTokenSink", "TokenFileFormat"]

#: Largest token file read, in bytes: a token is a few KiB; anything larger is refused.
MAX_READ_BYTES = 64 * 1024
# Read without following a final symbolic link and without blocking on a FIFO.
_READ_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)

#: How a token file is laid out: bare JWT, JSON object or dotenv lines.
TokenFileFormat = Literal["raw", "json", "dotenv"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class FileTokenSink(TokenSink):
    """Writes UseGrant access tokens to a file, atomically, with owner-only permissions.

    The file is replaced atomically (temporary file in the same directory, fsync,
    rename, fsync of the directory), created with ``mode`` (0600 unless set, never
    wider than 0640). Missing parent directories are created with mode 0700. A
    symbolic link as target, or a world-writable directory, is refused.

    Example:
        Write a raw JWT file for the AWS SDK's ``AWS_WEB_IDENTITY_TOKEN_FILE``:

        >>> from usegrant_flows.sinks import FileTokenSink
        >>> sink = FileTokenSink(path="/var/run/usegrant/aws.jwt", format="raw")
        >>> sink.describe()
        'file /var/run/usegrant/aws.jwt (raw)'

        Load a saved sink (needs a Prefect API holding the block, hence the skip):

        >>> sink = FileTokenSink.load("BLOCK_NAME")  # doctest: +SKIP
    """

    _block_type_name = "UseGrant File Token Sink"
    _block_type_slug = "usegrant-file-token-sink"
    _logo_url = LOGO_URL
    _documentation_url = DOCUMENTATION_URL
    _description = "Writes UseGrant access tokens to a local file, atomically and mode 0600."

    kind: ClassVar[str] = "file"
    fleet_paths: ClassVar[tuple[str, ...]] = ("path",)
    readable: ClassVar[bool] = True

    path: Path = Field(
        description="Path of the token file; missing parent directories are created (0700)."
    )
    format: TokenFileFormat = Field(
        default="raw",
        description=(
            "File format: raw (bare JWT, no newline), json ({accessToken, expiresAt, type}) "
            "or dotenv (NAME=JWT and NAME_EXPIRES_AT=ISO date)."
        ),
    )
    json_token_field: str = Field(
        default="accessToken",
        description="Key holding the JWT in the json format (GCP's subject_token_field_name).",
    )
    dotenv_variable: str = Field(
        default="USEGRANT_ACCESS_TOKEN",
        description="Variable name holding the JWT in the dotenv format.",
    )
    mode: FileMode = Field(
        default=0o600,
        description=(
            "Permission bits of the file, e.g. 384 (0600) or 416 (0640); "
            "octal strings such as '0600' are accepted; at most 0640."
        ),
    )
    adopt: bool = Field(default=False, title="Adopt what is there", description=ADOPT_DESCRIPTION)

    @field_validator("path", mode="after")
    @classmethod
    def _expand_user(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("json_token_field", mode="after")
    @classmethod
    def _check_json_field(cls, value: str) -> str:
        if not value or value in ("expiresAt", "type"):
            raise ValueError("json_token_field must be a non-empty key other than expiresAt/type")
        return value

    @field_validator("dotenv_variable", mode="after")
    @classmethod
    def _check_env_name(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError(
                f"dotenv_variable must be a shell variable name ([A-Za-z_][A-Za-z0-9_]*), "
                f"got {value!r}"
            )
        return value

    @property
    def _expires_variable(self) -> str:
        return f"{self.dotenv_variable}_EXPIRES_AT"

    def render(self, token: AccessToken) -> bytes:
        """Return the exact bytes written for ``token`` (reveals the token).

        Args:
            token: The token to render in this sink's format.
        """
        wire = token.to_wire()
        if self.format == "raw":
            text = wire["accessToken"]
        elif self.format == "json":
            body = {
                self.json_token_field: wire["accessToken"],
                "expiresAt": wire["expiresAt"],
                "type": wire["type"],
            }
            text = json.dumps(body, separators=(",", ":")) + "\n"
        else:
            text = (
                f"{self.dotenv_variable}={wire['accessToken']}\n"
                f"{self._expires_variable}={wire['expiresAt']}\n"
            )
        return text.encode("ascii")

    def parse(self, content: str) -> AccessToken:
        """Parse file contents in this sink's format back into a token.

        Args:
            content: The file's text.

        Raises:
            ValueError: When the content is not a token in this format.
        """
        if self.format == "raw":
            return token_from_parts(content.strip(), None, None)
        if self.format == "json":
            body = json.loads(content)
            if not isinstance(body, dict) or not isinstance(body.get(self.json_token_field), str):
                raise ValueError(f"no string {self.json_token_field!r} key")
            return token_from_parts(
                body[self.json_token_field], body.get("expiresAt"), body.get("type")
            )
        values: dict[str, str] = {}
        for line in content.splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            name, _, value = line.removeprefix("export ").partition("=")
            values[name.strip()] = value.strip().strip("'\"")
        if self.dotenv_variable not in values:
            raise ValueError(f"no {self.dotenv_variable} variable")
        return token_from_parts(
            values[self.dotenv_variable], values.get(self._expires_variable), None
        )

    def write(self, token: AccessToken, metadata: TokenMetadata | None = None) -> None:
        """Replace the file with ``token`` atomically; see the class docstring.

        Args:
            token: The token to write.
            metadata: Ignored: a token file holds the token only.

        Raises:
            ConfigurationError: When the target is a symlink, not a regular file, or
                its directory is world-writable.
            SinkError: When the file could not be written; the old file is intact.
        """
        check_file_allowed(self.path)
        data = self.render(token)
        try:
            ensure_directory(self.path.parent)
            check_target(self.path)
            self._check_owner()
            atomic_write(self.path, data, mode=self.mode)
        except ConfigurationError:
            raise
        except OSError as exc:
            raise SinkError(
                f"could not write token file {self.path}: {exc.strerror or type(exc).__name__}"
            ) from None

    def preflight(self, metadata: TokenMetadata | None = None) -> None:
        """Check that the token file can be written, before any token is minted.

        Nothing is created: the path must resolve inside the worker's
        ``USEGRANT_FILE_ROOT`` (when set), must not be a symbolic link, a directory, a
        FIFO, a socket or a device, and its folder must exist (or be creatable), not be
        world-writable, and be writable by this process. A file already there must hold
        a token in this sink's format (what usegrant-flows writes), unless ``adopt``.

        Args:
            metadata: Unused: a token file carries no mark but its format.

        Raises:
            ConfigurationError: Naming the path or folder and what is wrong
                (:class:`~usegrant_flows.sinks.base.NotOwnedError` for a file that is
                not ours).
        """
        check_file_allowed(self.path)
        preflight_target(self.path)
        self._check_owner()

    def _check_owner(self) -> None:
        """Refuse to replace a file that is not a token file of this format (unless adopt).

        Raises:
            NotOwnedError: Naming the file and the way out, never its content.
        """
        if self.adopt:
            return
        data = self._read_bytes()
        if data is None:
            return
        try:
            self.parse(data.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError and pydantic's errors are ValueErrors
            raise not_owned(
                f"token file {self.path} holds something other than a {self.format} token"
            ) from None

    def read(self) -> AccessToken | None:
        """Return the token in the file, or ``None`` when the file does not exist.

        The file is opened without following a symbolic link and without blocking (a
        FIFO at the path must not hang the run), must be a regular file, and is read up
        to :data:`MAX_READ_BYTES`, so a device or a huge file costs neither time nor
        memory. A raw file's expiry comes from the JWT's ``exp`` claim.

        Raises:
            ConfigurationError: When the path is a symbolic link.
            SinkError: When the path is not a regular file, is larger than 64 KiB, or
                does not hold a token in ``format``.
        """
        data = self._read_bytes()
        if data is None:
            return None
        try:
            content = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SinkError(f"token file {self.path} is not UTF-8 text") from None
        try:
            return self.parse(content)
        except ValueError:
            # No chaining: the parse error could quote the file's content.
            raise SinkError(
                f"token file {self.path} does not hold a token in {self.format} format"
            ) from None

    def _read_bytes(self) -> bytes | None:
        try:
            fd = os.open(self.path, _READ_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
                raise ConfigurationError(
                    f"token file {self.path} is a symbolic link: refusing it"
                ) from None
            raise SinkError(
                f"could not read token file {self.path}: {exc.strerror or type(exc).__name__}"
            ) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise SinkError(
                    f"token file {self.path} is a {file_kind(info.st_mode)}, not a regular file"
                )
            if info.st_size > MAX_READ_BYTES:
                raise SinkError(f"token file {self.path} is larger than 64 KiB")
            chunks: list[bytes] = []
            size = 0
            # Bounded even if the file grows while we read it.
            while size <= MAX_READ_BYTES:
                chunk = os.read(fd, MAX_READ_BYTES + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            if size > MAX_READ_BYTES:
                raise SinkError(f"token file {self.path} is larger than 64 KiB")
            return b"".join(chunks)
        except OSError as exc:
            raise SinkError(
                f"could not read token file {self.path}: {exc.strerror or type(exc).__name__}"
            ) from None
        finally:
            os.close(fd)

    def describe(self) -> str:
        """Return ``"file <path> (<format>)"``."""
        return f"file {self.path} ({self.format})"
