"""``usegrant-flows consumer-config``: what a cloud SDK needs to read a target's token file.

A rotation keeps a token file fresh; the workload's SDK then exchanges it itself. This
prints the settings each SDK reads, for one target of a fleet file:

* ``aws``: ``AWS_WEB_IDENTITY_TOKEN_FILE``, ``AWS_ROLE_ARN`` and
  ``AWS_ROLE_SESSION_NAME`` as ``export`` lines (or, with ``--profile``, a
  ``~/.aws/config`` profile with ``web_identity_token_file``); needs a raw file.
* ``gcp``: an ``external_account`` credential configuration (JSON, for
  ``GOOGLE_APPLICATION_CREDENTIALS``) whose ``credential_source.file`` is the token
  file, with ``format`` ``{"type": "text"}`` for a raw file or ``{"type": "json",
  "subject_token_field_name": "accessToken"}`` for a json file.
* ``azure``: ``AZURE_FEDERATED_TOKEN_FILE``, ``AZURE_CLIENT_ID`` and
  ``AZURE_TENANT_ID`` as ``export`` lines (``WorkloadIdentityCredential`` and
  ``DefaultAzureCredential`` read them); needs a raw file.

The builders are pure functions of a :class:`~usegrant_flows.rotation.fleet.RotationTarget`;
paths are made absolute. A target without a usable file sink (none, or dotenv only) is
a :class:`~usegrant_flows.errors.ConfigurationError`: one line, exit status 2.

Example:
    >>> from usegrant_flows.rotation.fleet import parse_fleet
    >>> [target] = parse_fleet([{
    ...     "name": "ci", "provider_id": "10000000-0000-4000-8000-000000000001",
    ...     "client_id": "20000000-0000-4000-8000-000000000001",
    ...     "sinks": [{"type": "file", "path": "/run/usegrant/aws.jwt"}],
    ... }])
    >>> env = aws_environment(target, role_arn="arn:aws:iam::123456789012:role/ci")
    >>> env["AWS_WEB_IDENTITY_TOKEN_FILE"], env["AWS_ROLE_SESSION_NAME"]
    ('/run/usegrant/aws.jwt', 'usegrant-ci')
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cyclopts import App

from usegrant_flows._aws_names import check_role_arn
from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.rotation.fleet import InlineSinkSpec, RotationTarget, load_fleet_file
from usegrant_flows.sinks.file import FileTokenSink

__all__ = [
    "GCP_SUBJECT_TOKEN_TYPE",
    "GCP_TOKEN_URL",
    "app",
    "aws_environment",
    "aws_profile",
    "azure_environment",
    "find_target",
    "gcp_credential_config",
    "token_file",
]

#: Google's Security Token Service endpoint.
GCP_TOKEN_URL = "https://sts.googleapis.com/v1/token"  # noqa: S105 - a URL
#: Token type of a UseGrant JWT in Google's token exchange.
GCP_SUBJECT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 - a type

_SESSION_NAME = re.compile(r"[^A-Za-z0-9+=,.@_-]")
_PROFILE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_TENANT = re.compile(r"^(?:[0-9a-fA-F-]{36}|[A-Za-z0-9.-]{1,253})$")
_GCP_AUDIENCE = re.compile(
    r"^//iam\.googleapis\.com/(?:projects/\d+/locations/global/workloadIdentityPools/"
    r"[a-z0-9-]+/providers/[a-z0-9-]+|locations/global/workforcePools/[a-z0-9-]+/"
    r"providers/[a-z0-9-]+)$"
)


def find_target(targets: list[RotationTarget], name: str) -> RotationTarget:
    """Return the target called ``name``.

    Raises:
        ConfigurationError: Naming the target and the fleet's target names.
    """
    for target in targets:
        if target.name == name:
            return target
    known = ", ".join(t.name for t in targets[:10]) or "none"
    raise ConfigurationError(f"no target named {name!r} in the fleet (targets: {known})")


def token_file(target: RotationTarget, *, consumer: str, json_ok: bool) -> FileTokenSink:
    """Return the target's first file sink the consumer can read.

    Args:
        target: The fleet target.
        consumer: ``AWS``, ``GCP`` or ``Azure``, for the message.
        json_ok: Whether a json file will do (GCP); otherwise a raw file is needed.

    Raises:
        ConfigurationError: When the target has no file sink, or none in a usable format.
    """
    files = [
        sink
        for spec in target.sinks
        if isinstance(spec, InlineSinkSpec) and isinstance(sink := spec.build(), FileTokenSink)
    ]
    wanted = {"raw", "json"} if json_ok else {"raw"}
    for sink in files:
        if sink.format in wanted:
            return sink
    need = "a raw or json" if json_ok else "a raw"
    if not files:
        raise ConfigurationError(
            f"target {target.name!r} has no file sink: {consumer} reads the token from "
            f"{need} file (add {{type: file, path: ...}})"
        )
    have = ", ".join(sorted({s.format for s in files}))
    raise ConfigurationError(
        f"target {target.name!r} writes only {have} token files: {consumer} needs {need} file"
    )


def _absolute(spec: FileTokenSink) -> str:
    return os.path.abspath(spec.path)


def _session_name(target: RotationTarget) -> str:
    return _SESSION_NAME.sub("-", f"usegrant-{target.name}")[:64]


def aws_environment(
    target: RotationTarget, *, role_arn: str, session_name: str | None = None
) -> dict[str, str]:
    """Return the environment the AWS SDKs' web identity provider reads.

    Args:
        target: A target with a raw file sink.
        role_arn: The IAM role to assume.
        session_name: Role session name; default ``usegrant-<target name>`` (64 chars max).

    Raises:
        ConfigurationError: For a bad ARN or a target without a raw file sink.
    """
    check_role_arn(role_arn)
    spec = token_file(target, consumer="AWS", json_ok=False)
    return {
        "AWS_WEB_IDENTITY_TOKEN_FILE": _absolute(spec),
        "AWS_ROLE_ARN": role_arn,
        "AWS_ROLE_SESSION_NAME": session_name or _session_name(target),
    }


def aws_profile(
    target: RotationTarget, *, role_arn: str, profile: str, session_name: str | None = None
) -> str:
    """Return a ``~/.aws/config`` profile section using the target's token file.

    Raises:
        ConfigurationError: For a bad ARN or profile name, or no raw file sink.
    """
    if not _PROFILE.match(profile):
        raise ConfigurationError("profile must be 1..64 letters, digits and _ . -")
    env = aws_environment(target, role_arn=role_arn, session_name=session_name)
    header = "[default]" if profile == "default" else f"[profile {profile}]"
    return (
        f"{header}\n"
        f"role_arn = {env['AWS_ROLE_ARN']}\n"
        f"web_identity_token_file = {env['AWS_WEB_IDENTITY_TOKEN_FILE']}\n"
        f"role_session_name = {env['AWS_ROLE_SESSION_NAME']}\n"
    )


def gcp_credential_config(
    target: RotationTarget,
    *,
    audience: str,
    token_url: str = GCP_TOKEN_URL,
    service_account_email: str | None = None,
) -> dict[str, Any]:
    """Return an ``external_account`` credential configuration for the target's file.

    Args:
        target: A target with a raw or json file sink.
        audience: The workload identity provider's full resource name,
            ``//iam.googleapis.com/projects/<number>/locations/global/
            workloadIdentityPools/<pool>/providers/<provider>``.
        token_url: Google's STS token endpoint (change it for tests only).
        service_account_email: Impersonate this service account after the exchange;
            ``None`` uses the federated identity directly.

    Raises:
        ConfigurationError: For a bad audience or a target without such a file.
    """
    if not _GCP_AUDIENCE.match(audience):
        raise ConfigurationError(
            "audience must be a workload identity provider's resource name, "
            "//iam.googleapis.com/projects/<number>/locations/global/"
            "workloadIdentityPools/<pool>/providers/<provider>"
        )
    spec = token_file(target, consumer="GCP", json_ok=True)
    if spec.format == "json":
        file_format: dict[str, str] = {
            "type": "json",
            "subject_token_field_name": spec.json_token_field,
        }
    else:
        file_format = {"type": "text"}
    config: dict[str, Any] = {
        "type": "external_account",
        "audience": audience,
        "subject_token_type": GCP_SUBJECT_TOKEN_TYPE,
        "token_url": token_url,
        "credential_source": {"file": _absolute(spec), "format": file_format},
    }
    if service_account_email is not None:
        config["service_account_impersonation_url"] = (
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/"
            f"{service_account_email}:generateAccessToken"
        )
    return config


def azure_environment(
    target: RotationTarget,
    *,
    client_id: str,
    tenant_id: str,
    authority_host: str | None = None,
) -> dict[str, str]:
    """Return the environment Azure's workload identity credential reads.

    Args:
        target: A target with a raw file sink.
        client_id: The app registration's or managed identity's client id (UUID).
        tenant_id: The Microsoft Entra tenant id (UUID or domain).
        authority_host: ``AZURE_AUTHORITY_HOST`` for sovereign clouds; ``None`` leaves
            the SDK's default (``https://login.microsoftonline.com``).

    Raises:
        ConfigurationError: For a bad id or a target without a raw file sink.
    """
    if not _UUID.match(client_id):
        raise ConfigurationError("client_id must be the application's client id (a UUID)")
    if not _TENANT.match(tenant_id):
        raise ConfigurationError("tenant_id must be a tenant id (a UUID) or a tenant domain")
    spec = token_file(target, consumer="Azure", json_ok=False)
    env = {
        "AZURE_FEDERATED_TOKEN_FILE": _absolute(spec),
        "AZURE_CLIENT_ID": client_id,
        "AZURE_TENANT_ID": tenant_id,
    }
    if authority_host is not None:
        env["AZURE_AUTHORITY_HOST"] = authority_host
    return env


def _exports(env: Mapping[str, str]) -> str:
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())


def _target(fleet: Path, target: str) -> RotationTarget:
    return find_target(load_fleet_file(fleet), target)


app = App(
    name="consumer-config",
    help="Print what the AWS, GCP or Azure SDK needs to read a fleet target's token file.",
)


@app.command
def aws(
    *,
    fleet: Path,
    target: str,
    role_arn: str,
    session_name: str | None = None,
    profile: str | None = None,
) -> int:
    """Print AWS web identity settings: export lines, or a config profile with --profile.

    Args:
        fleet: The fleet file (YAML or JSON).
        target: The target's name.
        role_arn: The IAM role to assume (arn:aws:iam::<account>:role/<name>).
        session_name: Role session name (default usegrant-<target>).
        profile: Print a ~/.aws/config profile of this name instead of export lines.
    """
    chosen = _target(fleet, target)
    if profile is not None:
        print(aws_profile(chosen, role_arn=role_arn, profile=profile, session_name=session_name))
    else:
        env = aws_environment(chosen, role_arn=role_arn, session_name=session_name)
        print(_exports(env), end="")
    return 0


@app.command
def gcp(
    *,
    fleet: Path,
    target: str,
    audience: str,
    token_url: str = GCP_TOKEN_URL,
    service_account_email: str | None = None,
) -> int:
    """Print a GCP external_account credential configuration (JSON).

    Args:
        fleet: The fleet file (YAML or JSON).
        target: The target's name.
        audience: The workload identity provider's resource name (//iam.googleapis.com/...).
        token_url: Google's STS token endpoint.
        service_account_email: Service account to impersonate after the exchange.
    """
    config = gcp_credential_config(
        _target(fleet, target),
        audience=audience,
        token_url=token_url,
        service_account_email=service_account_email,
    )
    print(json.dumps(config, indent=2))
    return 0


@app.command
def azure(
    *,
    fleet: Path,
    target: str,
    client_id: str,
    tenant_id: str,
    authority_host: str | None = None,
) -> int:
    """Print Azure workload identity settings as export lines.

    Args:
        fleet: The fleet file (YAML or JSON).
        target: The target's name.
        client_id: The application's client id (UUID).
        tenant_id: The tenant id (UUID) or domain.
        authority_host: AZURE_AUTHORITY_HOST for sovereign clouds.
    """
    env = azure_environment(
        _target(fleet, target),
        client_id=client_id,
        tenant_id=tenant_id,
        authority_host=authority_host,
    )
    print(_exports(env), end="")
    return 0
