"""Where the clients find their API key, base URL and timeout.

Precedence, highest first: arguments passed explicitly, ``USEGRANT_*`` environment
variables, a ``.env`` file in the working directory, and (for the API key only) the OS
keyring entry written by ``usegrant-flows login`` (service ``usegrant-flows``, user
``api-key``).

Example:
    >>> settings = UseGrantSettings(api_key="usegrant_example", _env_file=None)
    >>> settings.require_api_key()
    SecretStr('**********')
    >>> settings.base_url, settings.timeout
    ('https://sdk.usegrant.dev', 10.0)
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from usegrant_flows.api.checks import URL_RULE, url_problem
from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.api.models import DEFAULT_BASE_URL

__all__ = [
    "KEYRING_SERVICE",
    "KEYRING_USERNAME",
    "UseGrantSettings",
    "load_settings",
]

#: Keyring service name under which ``usegrant-flows login`` stores the API key.
KEYRING_SERVICE = "usegrant-flows"
#: Keyring user name of the stored API key.
KEYRING_USERNAME = "api-key"

_ENV_PREFIX = "USEGRANT_"

logger = logging.getLogger("usegrant_flows.api.settings")

NO_API_KEY_MESSAGE = (
    "No UseGrant API key found. Provide it in one of three ways: "
    "the USEGRANT_API_KEY environment variable (or a .env file holding it); "
    "`usegrant-flows login`, which stores it in the OS keyring; "
    "or a UseGrantCredentials block / the api_key= argument."
)


class UseGrantSettings(BaseSettings):
    """Client settings read from the environment, a ``.env`` file and the keyring.

    Attributes:
        api_key: The UseGrant API key (``USEGRANT_API_KEY``); ``None`` when unset, in
            which case :meth:`require_api_key` looks in the OS keyring.
        base_url: API base URL (``USEGRANT_BASE_URL``), default ``https://sdk.usegrant.dev``.
        timeout: Seconds allowed for one HTTP attempt (``USEGRANT_TIMEOUT``), default 10.
        jwks_url: Where minted tokens' signing keys are (``USEGRANT_JWKS_URL``): https, or
            http to a loopback host; ``None`` finds them by OpenID Connect discovery.
    """

    model_config = SettingsConfigDict(
        env_prefix=_ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        hide_input_in_errors=True,
    )

    api_key: SecretStr | None = None
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 10.0
    jwks_url: str | None = None

    @field_validator("api_key", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # `USEGRANT_API_KEY=` in a .env file means "not set here", not "an empty key".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("jwks_url", mode="before")
    @classmethod
    def _secure_jwks_url(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None  # `USEGRANT_JWKS_URL=` means "not set here"
        if value is not None:
            problem = url_problem(value)
            if problem:
                raise ValueError(f"jwks_url must be {URL_RULE}; {problem}")
        return value

    def require_api_key(self) -> SecretStr:
        """Return the API key: explicit > env > ``.env`` > keyring.

        Raises:
            ConfigurationError: When no place holds a key; the message names all three
                ways to provide one. A missing keyring backend counts as "nothing there".
        """
        if self.api_key is not None:
            return self.api_key
        stored = key_from_keyring()
        if stored is not None:
            return stored
        raise ConfigurationError(NO_API_KEY_MESSAGE)


def key_from_keyring() -> SecretStr | None:
    """Return the API key stored by ``usegrant-flows login``, or ``None``.

    A missing or failing keyring backend is not an error here: it simply holds nothing.
    """
    import keyring  # the keyring is only consulted when no key is set
    import keyring.errors

    try:
        value = keyring.get_password(KEYRING_SERVICE, KEYRING_USERNAME)
    except keyring.errors.KeyringError as exc:
        logger.debug("No API key from the keyring (%s)", type(exc).__name__)
        return None
    return SecretStr(value) if value else None


def load_settings(**overrides: Any) -> UseGrantSettings:
    """Build :class:`UseGrantSettings`, turning bad values into a ConfigurationError.

    Args:
        **overrides: Explicit values, which win over the environment.

    Raises:
        ConfigurationError: Naming the environment variable whose value is unusable;
            the value itself is never quoted.
    """
    try:
        return UseGrantSettings(**overrides)
    except ValidationError as exc:
        names = sorted(
            {_ENV_PREFIX + str(err["loc"][0]).upper() for err in exc.errors() if err["loc"]}
        )
        raise ConfigurationError(
            f"Invalid UseGrant setting(s): {', '.join(names)} (timeout must be a number "
            "of seconds, base_url a URL, jwks_url an https URL)"
        ) from None
