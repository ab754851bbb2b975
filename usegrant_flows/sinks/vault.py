"""A HashiCorp Vault / OpenBao KV version 2 secret holding the token.

The secret at ``<mount_point>/<path>`` holds three keys, ``<key>`` (default ``token``)
with the bare JWT, ``expiresAt`` (ISO 8601) and ``type``; the sink owns the whole
secret and replaces it on each write. Consumers read it with any Vault client, e.g.
``vault kv get -field=token secret/usegrant/aws``.

Writes are check-and-set: :meth:`VaultKvTokenSink.read` records the secret's current
version (0 when there is none), and the next write sends ``cas=<that version>``. When
another writer changed the secret in between, Vault refuses the write, the sink raises
:class:`~usegrant_flows.sinks.base.SinkError` naming the conflict, and the other
writer's token stays in place: no update is ever lost. A write without an earlier read
reads the version first.

Authentication, exactly one of:

* ``token``: a Vault token (periodic or long-lived, with a policy on the path);
* ``role_id`` + ``secret_id``: AppRole login at ``approle_mount``;
* ``jwt_role``: JWT auth at ``auth_mount``, logging in with the token being written
  (Vault trusts UseGrant's JWKS; no Vault secret is stored at all). Such a sink can
  read only after it has logged in once in this process (with the Vault token of that
  login); before that, :meth:`~VaultKvTokenSink.read` returns ``None`` and a rotation
  mints, as it does for a missing token.

``hvac`` (``pip install 'usegrant-flows[vault]'``) is imported when a method runs, never
when this module is imported. Every HTTP call has ``timeout`` seconds.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator

from usegrant_flows._links import DOCUMENTATION_URL, LOGO_URL
from usegrant_flows.api.models import AccessToken
from usegrant_flows.api.redact import register_secret
from usegrant_flows.api.worker_bounds import check_endpoint_allowed
from usegrant_flows.sinks._remote import check_endpoint, origin_of, require_sdk, scrub
from usegrant_flows.sinks._vault_marks import check_owner, put_marks
from usegrant_flows.sinks.base import (
    ADOPT_DESCRIPTION,
    SinkError,
    TokenMetadata,
    TokenSink,
    token_from_parts,
)

if TYPE_CHECKING:
    import hvac

__all__ = ["VaultKvTokenSink"]

_SEGMENTS = re.compile(r"^[A-Za-z0-9_.@-]+(?:/[A-Za-z0-9_.@-]+)*$")
_RESERVED_KEYS = ("expiresAt", "type")


def _check_vault_path(name: str, value: str) -> str:
    cleaned = value.strip("/")
    if not _SEGMENTS.match(cleaned) or any(s in (".", "..") for s in cleaned.split("/")):
        raise ValueError(
            f"{name} must be '/'-separated segments of letters, digits and _ . @ - "
            f"(no empty, '.' or '..' segments)"
        )
    return cleaned


class VaultKvTokenSink(TokenSink):
    """Writes UseGrant access tokens to a Vault (or OpenBao) KV v2 secret, check-and-set.

    See the module docstring for the stored keys, the check-and-set rule and the three
    ways to authenticate. ``token`` and ``secret_id`` are secrets; nothing else is.

    Example:
        >>> from usegrant_flows.sinks import VaultKvTokenSink
        >>> sink = VaultKvTokenSink(
        ...     url="https://vault.example.com:8200", path="usegrant/aws", jwt_role="usegrant"
        ... )
        >>> sink.describe()
        'vault-kv https://vault.example.com:8200 secret/usegrant/aws#token'

        Load a saved sink (needs a Prefect API holding the block, hence the skip):

        >>> sink = VaultKvTokenSink.load("BLOCK_NAME")  # doctest: +SKIP
    """

    _block_type_name = "UseGrant Vault KV Token Sink"
    _block_type_slug = "usegrant-vault-kv-token-sink"
    _logo_url = LOGO_URL
    _documentation_url = DOCUMENTATION_URL
    _description = (
        "Writes UseGrant access tokens to a HashiCorp Vault or OpenBao KV v2 secret "
        "(check-and-set)."
    )

    kind: ClassVar[str] = "vault-kv"
    readable: ClassVar[bool] = True

    url: str = Field(
        description="Vault address, e.g. https://vault.example.com:8200 (http: loopback only)."
    )
    mount_point: str = Field(default="secret", description="Mount path of the KV v2 engine.")
    path: str = Field(description="Secret path inside the mount, e.g. usegrant/aws.")
    key: str = Field(default="token", description="Key of the secret holding the JWT.")
    namespace: str | None = Field(
        default=None, description="Vault Enterprise / OpenBao namespace; empty: none."
    )
    ca_cert: str | None = Field(
        default=None, description="Path of a PEM CA bundle to verify Vault's certificate."
    )
    verify: bool = Field(
        default=True, description="Verify Vault's TLS certificate (turn off for tests only)."
    )
    token: SecretStr | None = Field(default=None, description="Vault token (token auth).")
    role_id: str | None = Field(default=None, description="AppRole role_id (AppRole auth).")
    secret_id: SecretStr | None = Field(
        default=None, description="AppRole secret_id (AppRole auth), kept secret."
    )
    approle_mount: str = Field(default="approle", description="Mount path of AppRole auth.")
    jwt_role: str | None = Field(
        default=None,
        description="JWT auth role: log in with the token being written (no Vault secret).",
    )
    auth_mount: str = Field(default="jwt", description="Mount path of the JWT auth method.")
    timeout: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Timeout of each HTTP call to Vault, in seconds (0 < timeout <= 300).",
    )
    adopt: bool = Field(default=False, title="Adopt what is there", description=ADOPT_DESCRIPTION)

    # The KV version the last read saw (0: no secret); None: not read yet.
    _seen_version: int | None = PrivateAttr(default=None)
    # The Vault token of the last JWT login (jwt_role only), for later reads.
    _login_token: SecretStr | None = PrivateAttr(default=None)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_endpoint("url", value)

    @field_validator("mount_point", "path", "approle_mount", "auth_mount")
    @classmethod
    def _check_paths(cls, value: str, info: Any) -> str:
        return _check_vault_path(info.field_name, value)

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        return _check_vault_path("namespace", value)

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: str) -> str:
        if not value or value in _RESERVED_KEYS or any(ch.isspace() for ch in value):
            raise ValueError(
                "key must be a non-empty key without spaces, other than expiresAt/type"
            )
        return value

    @model_validator(mode="after")
    def _one_auth_method(self) -> VaultKvTokenSink:
        approle = self.role_id is not None or self.secret_id is not None
        if approle and (self.role_id is None or self.secret_id is None):
            raise ValueError("AppRole auth needs both role_id and secret_id")
        chosen = sum((self.token is not None, approle, self.jwt_role is not None))
        if chosen != 1:
            raise ValueError(
                "set exactly one auth method: token, role_id + secret_id, or jwt_role "
                f"({chosen} set)"
            )
        return self

    @property
    def seen_version(self) -> int | None:
        """The KV version the last read (or write) saw; ``None`` before any."""
        return self._seen_version

    def describe(self) -> str:
        """Return ``"vault-kv <origin> [ns <namespace>] <mount>/<path>#<key>"``."""
        namespace = f" ns {self.namespace}" if self.namespace else ""
        return (
            f"vault-kv {origin_of(self.url)}{namespace} {self.mount_point}/{self.path}#{self.key}"
        )

    def preflight(self, metadata: TokenMetadata | None = None) -> None:
        """Check, writing nothing, that a write could be attempted and would be ours.

        The URL is one the worker allows (``USEGRANT_ALLOWED_ENDPOINTS``), hvac is
        installed, and an existing secret carries our marks
        (:mod:`~usegrant_flows.sinks._vault_marks`) unless ``adopt``. A ``jwt_role``
        sink that has not logged in yet cannot read them: its write checks them.

        Args:
            metadata: ``target``: the target's name, which the marks must carry.

        Raises:
            ConfigurationError: When the URL is not allowed, or
                (:class:`~usegrant_flows.sinks.base.NotOwnedError`) the secret is not ours.
            SinkError: When hvac is not installed, or Vault refuses or cannot be reached.
        """
        check_endpoint_allowed(self.url)
        require_sdk("hvac", "vault", self.describe())
        import requests

        client = None
        try:
            client = self._client(None)
            if client is not None:
                check_owner(client, self.mount_point, self.path, metadata, adopt=self.adopt)
        except Exception as exc:
            if not _is_sdk_error(exc, requests):
                raise
            raise self._fail("preflight", exc) from None
        finally:
            if client is not None:
                client.adapter.close()

    def _fail(self, action: str, exc: BaseException) -> SinkError:
        """Turn an hvac or requests exception into a one-line SinkError."""
        import hvac.exceptions

        if isinstance(exc, hvac.exceptions.Forbidden):
            cause = "permission denied (check the policy and the auth method)"
        elif isinstance(exc, hvac.exceptions.VaultError):
            errors = getattr(exc, "errors", None) or [str(exc)]
            cause = f"{type(exc).__name__}: {scrub('; '.join(map(str, errors)))}"
        else:
            cause = f"could not reach Vault ({type(exc).__name__})"
        return SinkError(f"{self.describe()}: {action} failed: {cause}")

    def _client(self, jwt: SecretStr | None) -> hvac.Client | None:
        """Return an authenticated client; ``None`` for jwt_role without any token."""
        import hvac

        check_endpoint_allowed(self.url)  # every call, not only the preflight's
        verify: bool | str = self.ca_cert if (self.verify and self.ca_cert) else self.verify
        client = hvac.Client(
            url=self.url, namespace=self.namespace, verify=verify, timeout=self.timeout
        )
        try:
            if self.token is not None:
                client.token = self.token.get_secret_value()
            elif self.role_id is not None and self.secret_id is not None:
                client.auth.approle.login(
                    role_id=self.role_id,
                    secret_id=self.secret_id.get_secret_value(),
                    mount_point=self.approle_mount,
                )
            elif jwt is not None:
                assert self.jwt_role is not None  # the model validator ensures it
                answer = client.auth.jwt.jwt_login(
                    role=self.jwt_role, jwt=jwt.get_secret_value(), path=self.auth_mount
                )
                self._login_token = SecretStr(answer["auth"]["client_token"])
            elif self._login_token is not None:
                client.token = self._login_token.get_secret_value()
            else:
                client.adapter.close()
                return None
        except BaseException:
            client.adapter.close()  # a failed login: no session left open
            raise
        register_secret(client.token)  # a login's token: scrubbed from any error text
        return client

    def _read_secret(self, client: hvac.Client) -> tuple[int, dict[str, Any] | None]:
        """Return ``(current version, data)``; ``(0, None)`` when there is no secret."""
        import hvac.exceptions

        try:
            answer = client.secrets.kv.v2.read_secret_version(
                path=self.path, mount_point=self.mount_point, raise_on_deleted_version=False
            )
        except hvac.exceptions.InvalidPath:
            return 0, None
        body = answer.get("data") or {}
        version = int((body.get("metadata") or {}).get("version") or 0)
        data = body.get("data")
        return version, data if isinstance(data, dict) else None

    def write(self, token: AccessToken, metadata: TokenMetadata | None = None) -> None:
        """Store the token with check-and-set against the version the last read saw.

        Args:
            token: The token to store.
            metadata: ``target``: the target's name, carried by the secret's marks.

        Raises:
            NotOwnedError: When the secret exists without our marks and the sink does
                not say ``adopt``; nothing is written.
            SinkError: On a check-and-set conflict (another writer changed the secret
                since it was read; its token is kept), a refused login or write, or an
                unreachable Vault. Nothing is written then.
        """
        import requests

        wire = token.to_wire()
        secret = {
            self.key: wire["accessToken"],
            "expiresAt": wire["expiresAt"],
            "type": wire["type"],
        }
        client = None
        step = "login"
        try:
            client = self._client(token.access_token)
            assert client is not None  # a JWT was given
            step = "read"
            if check_owner(client, self.mount_point, self.path, metadata, adopt=self.adopt):
                step = "mark"
                put_marks(client, self.mount_point, self.path, metadata)
                step = "read"
            if self._seen_version is None:
                self._seen_version, _ = self._read_secret(client)
            expected = self._seen_version
            step = "write"
            answer = client.secrets.kv.v2.create_or_update_secret(
                path=self.path, secret=secret, cas=expected, mount_point=self.mount_point
            )
        except Exception as exc:
            if not _is_sdk_error(exc, requests):
                raise
            self._seen_version = None  # the next write reads the version again
            if step == "write" and _is_cas_conflict(exc):
                raise SinkError(
                    f"{self.describe()}: check-and-set conflict: the secret changed since "
                    f"version {expected} was read (another writer); nothing was written"
                ) from None
            raise self._fail(step, exc) from None
        finally:
            if client is not None:
                client.adapter.close()
        version = (answer or {}).get("data", {}).get("version")
        self._seen_version = int(version) if isinstance(version, int) else None

    def read(self) -> AccessToken | None:
        """Return the token the secret holds and record its version for the next write.

        Returns:
            The token, or ``None`` when there is no secret (or its latest version is
            deleted), or when a ``jwt_role`` sink has not logged in yet.

        Raises:
            SinkError: When Vault refuses or cannot be reached, or the secret does not
                hold a token under ``key``.
        """
        import requests

        client = None
        step = "login"
        try:
            client = self._client(None)
            if client is None:
                return None
            step = "read"
            version, data = self._read_secret(client)
        except Exception as exc:
            if not _is_sdk_error(exc, requests):
                raise
            raise self._fail(step, exc) from None
        finally:
            if client is not None:
                client.adapter.close()
        self._seen_version = version
        if data is None:
            return None
        try:
            value = data.get(self.key)
            if not isinstance(value, str):
                raise ValueError("no string value")
            expires_at = data.get("expiresAt")
            token_type = data.get("type")
            return token_from_parts(
                value,
                expires_at if isinstance(expires_at, str) else None,
                token_type if isinstance(token_type, str) else None,
            )
        except ValueError:
            # No chaining: the parse error could quote the secret.
            raise SinkError(
                f"{self.describe()}: the secret does not hold a token under {self.key!r}"
            ) from None


def _is_sdk_error(exc: BaseException, requests: Any) -> bool:
    import hvac.exceptions

    return isinstance(exc, (hvac.exceptions.VaultError, requests.exceptions.RequestException))


def _is_cas_conflict(exc: BaseException) -> bool:
    import hvac.exceptions

    text = " ".join(map(str, getattr(exc, "errors", None) or [str(exc)]))
    return isinstance(exc, hvac.exceptions.InvalidRequest) and "check-and-set" in text
