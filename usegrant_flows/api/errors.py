"""Exceptions raised by usegrant-flows.

Everything we raise derives from :class:`UseGrantError`, so one ``except`` clause
catches it all. The tree, top to bottom::

    UseGrantError
    ├── ConfigurationError        (also a ValueError) bad input, before any request
    ├── UseGrantConnectionError   network failure or timeout, after retries
    ├── InvalidResponseError      a 2xx answer we cannot trust
    ├── TokenVerificationError    a minted token failed signature/claim checks
    └── UseGrantAPIError          any HTTP error answer (.status_code .code .message)
        ├── BadRequestError       400
        ├── AuthenticationError   401, 403
        ├── NotFoundError         404
        ├── RateLimitError        429 (.retry_after, as on every API error)
        └── ServerError           5xx

No message in this tree ever contains an API key or an access token: messages are
built from status codes, error codes, argument names and fingerprints only.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "InvalidResponseError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
    "TokenVerificationError",
    "UseGrantAPIError",
    "UseGrantConnectionError",
    "UseGrantError",
    "api_error_for_status",
    "is_transient",
]

#: HTTP statuses that may succeed when the same request is sent again.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class UseGrantError(Exception):
    """Base class of every exception raised by usegrant-flows."""


class ConfigurationError(UseGrantError, ValueError):
    """Raised for missing credentials, a bad base URL or an argument out of range."""


class UseGrantConnectionError(UseGrantError):
    """Raised when the API could not be reached (connect error, timeout) after retries."""


class InvalidResponseError(UseGrantError):
    """Raised when the API answered 2xx with a body we cannot trust."""


class TokenVerificationError(UseGrantError):
    """Raised when a token fails verification against its issuer's JWKS or claims."""


class UseGrantAPIError(UseGrantError):
    """Raised for any HTTP error answer from the API.

    Attributes:
        status_code: The HTTP status of the answer (400..599).
        code: The ``code`` field of the error body, or ``None`` when absent.
        message: The ``message`` field of the error body, or a short description of
            the status when the body had none (an HTML page from a proxy, say).
        retry_after: Seconds (>= 0) the answer's ``Retry-After`` header asked us to
            wait (429, 503 and 408 carry it), or ``None``.
    """

    def __init__(
        self,
        status_code: int,
        code: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
    ):
        self.status_code = status_code
        self.code = code
        self.message = message or f"HTTP {status_code}"
        self.retry_after = retry_after
        text = f"UseGrant API answered {status_code}"
        if code:
            text += f" ({code})"
        super().__init__(f"{text}: {self.message}")

    def __reduce__(self) -> tuple[object, ...]:
        # Keep exceptions picklable (Prefect ships them across processes).
        return (type(self), (self.status_code, self.code, self.message, self.retry_after))


class BadRequestError(UseGrantAPIError):
    """Raised on 400: the API refused the request's parameters."""


class AuthenticationError(UseGrantAPIError):
    """Raised on 401 or 403: the API key is missing, invalid, expired or not allowed."""


class NotFoundError(UseGrantAPIError):
    """Raised on 404: the provider or the client does not exist."""


class RateLimitError(UseGrantAPIError):
    """Raised on 429: the API key's request quota is spent (see ``retry_after``)."""


class ServerError(UseGrantAPIError):
    """Raised on 5xx: the API or a proxy in front of it failed."""


def api_error_for_status(
    status_code: int,
    code: str | None = None,
    message: str | None = None,
    retry_after: float | None = None,
) -> UseGrantAPIError:
    """Map an HTTP error status to the matching exception of the tree.

    Args:
        status_code: HTTP status, 400..599.
        code: The body's ``code`` field, if any.
        message: The body's ``message`` field, if any.
        retry_after: Parsed ``Retry-After`` in seconds, if the answer had one.

    Returns:
        An instance of the most specific class for the status.
    """
    cls: type[UseGrantAPIError]
    if status_code == 429:
        cls = RateLimitError
    elif status_code == 400:
        cls = BadRequestError
    elif status_code in (401, 403):
        cls = AuthenticationError
    elif status_code == 404:
        cls = NotFoundError
    elif status_code >= 500:
        cls = ServerError
    else:
        cls = UseGrantAPIError
    return cls(status_code, code, message, retry_after)


def is_transient(exc: BaseException) -> bool:
    """Tell whether retrying the request that raised ``exc`` may succeed.

    Connection errors and 408, 429 and 5xx answers are transient; every other API
    error, configuration and validation error is not.
    """
    if isinstance(exc, UseGrantConnectionError):
        return True
    if isinstance(exc, UseGrantAPIError):
        return exc.status_code in TRANSIENT_STATUSES or exc.status_code >= 500
    return False
