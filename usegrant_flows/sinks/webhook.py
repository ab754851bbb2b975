"""An HTTPS webhook that receives each new token, for services that want it pushed.

Each write POSTs one JSON body (``Content-Type: application/json``)::

    {"accessToken":"<JWT>","expiresAt":"<ISO>","type":"Bearer","providerId":"<uuid>","clientId":"<uuid>"}

``providerId`` and ``clientId`` come from the write's metadata (``null`` when absent).

Signature scheme (when ``signing_key`` is set), modelled on Stripe's and Slack's:

* ``X-UseGrant-Timestamp: <unix seconds>`` (the time of this attempt);
* ``X-UseGrant-Signature: sha256=<hex>``, the lower-case hex HMAC-SHA256, keyed with
  ``signing_key``, of the bytes ``<timestamp> + "." + <exact body bytes>``.

A receiver recomputes the HMAC over the raw body it received, compares in constant
time, and rejects timestamps older than a few minutes (replay protection). Header
names are configurable.

Transient failures (connection errors, timeouts, 408, 429, 5xx) are retried with the
client's policy (exponential backoff with jitter, ``max_attempts`` in total, 30 s
deadline; sleeps skipped under ``usegrant_flows.api.client.set_testing``). Redirects are
not followed: a 3xx would send the token somewhere else. The sink is write-only:
:meth:`WebhookTokenSink.read` returns ``None``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from typing import ClassVar
from urllib.parse import urlsplit

import httpx
from prefect.blocks.fields import SecretDict
from pydantic import Field, SecretStr, field_validator
from tenacity import RetryCallState, retry_if_exception

from usegrant_flows._links import DOCUMENTATION_URL, LOGO_URL
from usegrant_flows.api.checks import URL_RULE, url_problem
from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.api.models import AccessToken
from usegrant_flows.api.retry import RetryPolicy, retrying
from usegrant_flows.api.worker_bounds import check_endpoint_allowed
from usegrant_flows.sinks.base import (
    SinkError,
    TokenMetadata,
    TokenSink,
)

__all__ = ["WebhookDeliveryError", "WebhookTokenSink", "sign"]

logger = logging.getLogger("usegrant_flows.sinks.webhook")

_TRANSIENT_STATUSES = frozenset({408, 429})
# RFC 9110 field names (tokens) and values: one line, no control characters but tab.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class WebhookDeliveryError(SinkError):
    """Raised when the webhook did not accept the token (after retries, if transient).

    Attributes:
        status_code: The last HTTP status, or ``None`` for a connection failure.
        transient: Whether the failure was worth retrying.
    """

    def __init__(self, message: str, status_code: int | None, transient: bool):
        super().__init__(message)
        self.status_code = status_code
        self.transient = transient

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.status_code, self.transient))


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    """Return the signature header value for ``body`` sent at ``timestamp``.

    Args:
        key: The shared signing key.
        timestamp: Unix time in whole seconds, as sent in the timestamp header.
        body: The exact request body bytes.

    Returns:
        ``"sha256=<hex HMAC-SHA256 of timestamp + '.' + body>"``.

    Example:
        >>> sign(b"key", "1700000000", b"{}")
        'sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae'
    """
    digest = hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, WebhookDeliveryError) and exc.transient


class WebhookTokenSink(TokenSink):
    """POSTs each new UseGrant access token to an HTTPS webhook, optionally HMAC-signed.

    The URL, the extra headers and the signing key are secrets: the URL of many
    webhooks embeds a credential, so :meth:`describe` and error messages show only
    its scheme and host. See the module docstring for the body and signature scheme.

    Example:
        >>> from usegrant_flows.sinks import WebhookTokenSink
        >>> sink = WebhookTokenSink(url="https://hooks.example.com/T0/B0/secret-part")
        >>> sink.describe()
        'webhook https://hooks.example.com'

        Load a saved sink (needs a Prefect API holding the block, hence the skip):

        >>> sink = WebhookTokenSink.load("BLOCK_NAME")  # doctest: +SKIP
    """

    _block_type_name = "UseGrant Webhook Token Sink"
    _block_type_slug = "usegrant-webhook-token-sink"
    _logo_url = LOGO_URL
    _documentation_url = DOCUMENTATION_URL
    _description = "POSTs UseGrant access tokens to an HTTPS webhook, optionally HMAC-signed."

    kind: ClassVar[str] = "webhook"
    readable: ClassVar[bool] = False

    url: SecretStr = Field(
        description="Webhook URL: https, or http to a loopback host only.",
    )
    headers: SecretDict = Field(
        default_factory=lambda: SecretDict({}),
        description="Extra HTTP headers sent with each POST (e.g. Authorization), kept secret.",
    )
    signing_key: SecretStr | None = Field(
        default=None,
        description="Key of the HMAC-SHA256 body signature; no signature header when unset.",
    )
    signature_header: str = Field(
        default="X-UseGrant-Signature",
        description="Header carrying 'sha256=<hex>' when a signing key is set.",
    )
    timestamp_header: str = Field(
        default="X-UseGrant-Timestamp",
        description="Header carrying the signed Unix timestamp (seconds) when a key is set.",
    )
    timeout: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Timeout of each POST attempt, in seconds (0 < timeout <= 300).",
    )
    max_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description="Attempts in total for transient failures (1..10), 30 s deadline.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        # url_problem never quotes the URL: it may embed a credential.
        problem = url_problem(value.get_secret_value())
        if problem:
            raise ValueError(f"url must be {URL_RULE}; {problem}")
        return value

    def _origin(self) -> str:
        parts = urlsplit(self.url.get_secret_value())
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}"

    def body(self, token: AccessToken, metadata: TokenMetadata | None = None) -> bytes:
        """Return the exact JSON body POSTed for ``token`` (reveals the token).

        Args:
            token: The token to deliver.
            metadata: ``providerId`` and ``clientId`` are taken from it.
        """
        metadata = metadata or {}
        payload = {
            **token.to_wire(),
            "providerId": _text_or_none(metadata.get("providerId")),
            "clientId": _text_or_none(metadata.get("clientId")),
        }
        return json.dumps(payload, separators=(",", ":")).encode("utf-8")

    def _headers(self, body: bytes) -> dict[str, str]:
        headers = {str(k): str(v) for k, v in self.headers.get_secret_value().items()}
        headers["Content-Type"] = "application/json"
        if self.signing_key is not None:
            timestamp = str(int(time.time()))
            key = self.signing_key.get_secret_value().encode("utf-8")
            headers[self.timestamp_header] = timestamp
            headers[self.signature_header] = sign(key, timestamp, body)
        return headers

    def _post_once(self, client: httpx.Client, body: bytes) -> None:
        origin = self._origin()
        try:
            response = client.post(
                self.url.get_secret_value(), content=body, headers=self._headers(body)
            )
        except httpx.TransportError as exc:
            raise WebhookDeliveryError(
                f"webhook {origin} could not be reached ({type(exc).__name__})", None, True
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        transient = status in _TRANSIENT_STATUSES or status >= 500
        raise WebhookDeliveryError(f"webhook {origin} answered {status}", status, transient)

    def write(self, token: AccessToken, metadata: TokenMetadata | None = None) -> None:
        """POST the token, retrying transient failures.

        Args:
            token: The token to deliver.
            metadata: ``providerId`` and ``clientId`` for the body.

        Raises:
            WebhookDeliveryError: When no attempt got a 2xx answer.
        """
        check_endpoint_allowed(self.url.get_secret_value())
        body = self.body(token, metadata)
        policy = RetryPolicy(max_attempts=self.max_attempts)
        attempts = retrying(policy).copy(
            retry=retry_if_exception(_is_transient), before_sleep=_log_retry
        )
        with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
            attempts(self._post_once, client, body)

    def preflight(self, metadata: TokenMetadata | None = None) -> None:
        """Check the webhook's settings before any token is minted; sends nothing.

        Raises:
            ConfigurationError: When the URL is not allowed (by the URL rule or the
                worker's ``USEGRANT_ALLOWED_ENDPOINTS``), a header name is not an
                HTTP token, a header value holds a line break or control character, or
                the signing key is empty.
        """
        problem = url_problem(self.url.get_secret_value())
        if problem:
            raise ConfigurationError(f"webhook url must be {URL_RULE}; {problem}")
        check_endpoint_allowed(self.url.get_secret_value())
        names = [self.signature_header, self.timestamp_header]
        for name, value in self.headers.get_secret_value().items():
            names.append(str(name))
            if not isinstance(value, (str, int, float)) or _BAD_VALUE.search(str(value)):
                # Never quote the value: headers hold secrets.
                raise ConfigurationError(
                    f"webhook header {_shown_name(str(name))} has a value that is not "
                    "one line of text"
                )
        for name in names:
            if not _HEADER_NAME.match(name):
                raise ConfigurationError(
                    f"webhook header name {_shown_name(name)} is not an HTTP header name"
                )
        if self.signing_key is not None and not self.signing_key.get_secret_value():
            raise ConfigurationError("webhook signing_key is empty: set a key or leave it unset")

    def read(self) -> AccessToken | None:
        """Return ``None``: a webhook cannot be read back."""
        return None

    def describe(self) -> str:
        """Return ``"webhook <scheme>://<host>[:port]"`` (never the path or query)."""
        return f"webhook {self._origin()}"


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    logger.warning(
        "webhook delivery failed (%s); retrying in %.2f s, attempt %d",
        outcome.exception() if outcome else None,
        state.upcoming_sleep,
        state.attempt_number + 1,
    )


def _shown_name(name: str) -> str:
    return repr(name if len(name) <= 40 else name[:37] + "...")


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)
