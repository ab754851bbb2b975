"""What the emulator knows: API keys, providers and their clients.

A seed is JSON of this shape (``--seed FILE`` on the command line, or a
:class:`Seed`, a dict, or a path for :func:`~usegrant_flows.emulator.run_emulator`)::

    {"api_keys": ["usegrant_emu_..."],
     "providers": [{"id": "<uuid>", "name": "acme",
                    "default_domain": "acme.auth.usegrant.dev",
                    "custom_domain": "auth.acme.test",
                    "clients": [{"id": "<uuid>", "name": "aws",
                                 "audience": "sts.amazonaws.com",
                                 "subject": "acme-ci"}]}]}

Without a seed, :func:`default_seed` gives one provider with a custom domain and three
clients (AWS, GCP, Azure audiences) under fixed, well-known UUIDs, and one random API
key with the prefix ``usegrant_emu_``.

Example:
    >>> seed = default_seed()
    >>> str(seed.providers[0].id)
    '10000000-0000-4000-8000-000000000001'
    >>> [client.audience for client in seed.providers[0].clients][0]
    'sts.amazonaws.com'
    >>> seed.api_keys[0].get_secret_value().startswith("usegrant_emu_")
    True
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from usegrant_flows.api.errors import ConfigurationError

__all__ = [
    "AWS_CLIENT_ID",
    "AZURE_CLIENT_ID",
    "DEFAULT_PROVIDER_ID",
    "EMULATOR_KEY_PREFIX",
    "GCP_CLIENT_ID",
    "Seed",
    "SeedClient",
    "SeedProvider",
    "default_seed",
    "load_seed",
]

#: Prefix of the emulator's own throwaway API keys.
EMULATOR_KEY_PREFIX = "usegrant_emu_"
#: The default seed's provider.
DEFAULT_PROVIDER_ID = UUID("10000000-0000-4000-8000-000000000001")
#: The default seed's client with the AWS STS audience.
AWS_CLIENT_ID = UUID("20000000-0000-4000-8000-000000000001")
#: The default seed's client with a GCP workload identity audience.
GCP_CLIENT_ID = UUID("20000000-0000-4000-8000-000000000002")
#: The default seed's client with the Azure federated credential audience.
AZURE_CLIENT_ID = UUID("20000000-0000-4000-8000-000000000003")

_GCP_AUDIENCE = (
    "//iam.googleapis.com/projects/123456789/locations/global/"
    "workloadIdentityPools/usegrant/providers/usegrant"
)


class SeedClient(BaseModel):
    """A client of a provider: the audience and subject of the tokens it gets.

    Attributes:
        id: The client's UUID (the ``clientId`` path parameter).
        name: A display name.
        audience: The ``aud`` claim of its tokens.
        subject: The ``sub`` claim of its tokens.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: UUID
    name: str
    audience: str = Field(min_length=1)
    subject: str = Field(min_length=1)


class SeedProvider(BaseModel):
    """A provider (an issuer) with its domains and clients.

    Attributes:
        id: The provider's UUID (the ``providerId`` path parameter).
        name: A display name.
        default_domain: Host name of its default issuer, e.g. ``acme.auth.usegrant.dev``.
        custom_domain: Host name of its custom issuer domain, or ``None``.
        clients: Its clients.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: UUID
    name: str
    default_domain: str = Field(min_length=1)
    custom_domain: str | None = None
    clients: list[SeedClient] = Field(default_factory=list)

    def issuer(self, *, force_default_domain: bool = False) -> str:
        """Return the ``iss`` of this provider's tokens.

        Args:
            force_default_domain: True uses the default domain even when a custom
                domain is set.

        Returns:
            ``https://<custom_domain>`` when there is one and it is not overridden,
            else ``https://<default_domain>``.
        """
        if self.custom_domain and not force_default_domain:
            return f"https://{self.custom_domain}"
        return f"https://{self.default_domain}"


class Seed(BaseModel):
    """Everything the emulator serves: API keys and providers.

    Attributes:
        api_keys: Accepted API keys (at least one); the first is the one
            :func:`~usegrant_flows.emulator.run_emulator` hands out.
        providers: The providers, each with its clients.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_keys: list[SecretStr] = Field(min_length=1)
    providers: list[SeedProvider] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ids_are_unique(self) -> Seed:
        provider_ids = [provider.id for provider in self.providers]
        if len(set(provider_ids)) != len(provider_ids):
            raise ValueError("provider ids must be unique")
        for provider in self.providers:
            client_ids = [client.id for client in provider.clients]
            if len(set(client_ids)) != len(client_ids):
                raise ValueError(f"client ids of provider {provider.id} must be unique")
        return self

    def provider(self, provider_id: UUID) -> SeedProvider | None:
        """Return the provider with this id, or ``None``."""
        for provider in self.providers:
            if provider.id == provider_id:
                return provider
        return None


def default_seed(api_key: str | None = None) -> Seed:
    """Return the seed used when none is given.

    Args:
        api_key: The API key to accept; a fresh random ``usegrant_emu_...`` key when
            ``None``.

    Returns:
        One provider (default domain ``emulator.auth.usegrant.dev``, custom domain
        ``auth.emulator.test``) with three clients: :data:`AWS_CLIENT_ID`
        (``sts.amazonaws.com``), :data:`GCP_CLIENT_ID` (a workload identity pool
        audience) and :data:`AZURE_CLIENT_ID` (``api://AzureADTokenExchange``).
    """
    key = api_key or EMULATOR_KEY_PREFIX + secrets.token_urlsafe(24)
    return Seed(
        api_keys=[SecretStr(key)],
        providers=[
            SeedProvider(
                id=DEFAULT_PROVIDER_ID,
                name="emulator",
                default_domain="emulator.auth.usegrant.dev",
                custom_domain="auth.emulator.test",
                clients=[
                    SeedClient(
                        id=AWS_CLIENT_ID,
                        name="aws",
                        audience="sts.amazonaws.com",
                        subject="emulator-aws",
                    ),
                    SeedClient(
                        id=GCP_CLIENT_ID,
                        name="gcp",
                        audience=_GCP_AUDIENCE,
                        subject="emulator-gcp",
                    ),
                    SeedClient(
                        id=AZURE_CLIENT_ID,
                        name="azure",
                        audience="api://AzureADTokenExchange",
                        subject="emulator-azure",
                    ),
                ],
            )
        ],
    )


def load_seed(source: Seed | dict[str, Any] | str | Path | None) -> Seed:
    """Turn any accepted seed form into a :class:`Seed`.

    Args:
        source: A :class:`Seed`; a dict of the JSON shape; a path (``str`` or
            :class:`~pathlib.Path`) to a JSON file; or ``None`` for
            :func:`default_seed`.

    Returns:
        The validated seed.

    Raises:
        ConfigurationError: The file cannot be read or the seed is invalid.
    """
    if source is None:
        return default_seed()
    if isinstance(source, Seed):
        return source
    data: Any = source
    if isinstance(source, (str, Path)):
        try:
            data = json.loads(Path(source).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"cannot read seed file {str(source)!r}: {type(exc).__name__}"
            ) from None
    try:
        return Seed.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'seed'}: {err['msg']}"
            for err in exc.errors(include_input=False)
        )
        raise ConfigurationError(f"invalid emulator seed: {problems}") from None
