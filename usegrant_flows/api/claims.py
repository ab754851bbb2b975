"""Checks of a freshly minted token's claims, before it reaches any sink.

:func:`check_minted` is pure (no network, no clock of its own): size first, then shape,
an asymmetric algorithm, ``exp`` later than now plus the target's ``renew_before`` (a
token already due is no improvement), ``exp`` agreeing with the API's ``expiresAt``,
``iat``/``nbf`` not in the future beyond the skew, ``iat`` not in the past beyond the
skew either (a freshly minted token was issued now: an old ``iat`` is a replayed or
cached answer, which would also be due again at once), and ``sub``/``aud`` present. The
signature is :mod:`usegrant_flows.api.jwks`'s business. Every refusal is a
:class:`~usegrant_flows.api.errors.TokenVerificationError` whose one line names the
token by fingerprint, never by value.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

from usegrant_flows.api.errors import TokenVerificationError
from usegrant_flows.api.models import AccessToken
from usegrant_flows.api.verify import ALLOWED_ALGORITHMS

__all__ = [
    "CLOCK_SKEW",
    "EXPIRY_TOLERANCE",
    "KEY_TYPES",
    "MAX_TOKEN_BYTES",
    "MINTED_FETCH_TIMEOUT",
    "MIN_RSA_BITS",
    "MintedToken",
    "VerifyMode",
    "check_minted",
    "shown",
]


#: ``"full"`` checks the claims and the signature; ``"claims"`` skips the signature only,
#: for workers that cannot reach the issuer's JWKS.
VerifyMode = Literal["full", "claims"]
#: Largest token accepted, in bytes of its compact form.
MAX_TOKEN_BYTES = 16 * 1024
#: Most seconds the JWT's ``exp`` and the API's ``expiresAt`` may differ by.
EXPIRY_TOLERANCE = 5.0
#: Most seconds ``iat`` / ``nbf`` may lie in the future, and ``iat`` in the past, of a
#: freshly minted token (clock skew between machines, plus the time of the request).
CLOCK_SKEW = 60.0
#: Fewest bits of an RSA signing key accepted.
MIN_RSA_BITS = 2048
#: Seconds one discovery or JWKS fetch may take in total (connect, headers and body).
MINTED_FETCH_TIMEOUT = 5.0
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
# Key type (and curve) each accepted algorithm needs.
KEY_TYPES: dict[str, tuple[str, str | None]] = {
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "EdDSA": ("OKP", None),
}


@dataclass(frozen=True)
class MintedToken:
    """What :func:`check_minted` read from a token that passed the claim checks.

    Attributes:
        algorithm: The header's ``alg`` (one of :data:`ALLOWED_ALGORITHMS`).
        kid: The header's ``kid``, if it names one.
        issuer: The ``iss`` claim, if it is a string.
    """

    algorithm: str
    kid: str | None
    issuer: str | None


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def shown(value: object, limit: int = 40) -> str:
    """Quote a header or claim value from the wire, short and on one line."""
    text = " ".join(str(value).split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _moment(seconds: float) -> datetime | None:
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def check_minted(token: AccessToken, *, now: datetime, renew_before: float) -> MintedToken:
    """Check a freshly minted token's shape and claims; never looks at the network.

    The checks, in order (the first that fails is reported): at most
    :data:`MAX_TOKEN_BYTES` (checked first, so nothing larger is decoded further);
    three base64url parts; an asymmetric ``alg`` (never ``none`` nor ``HS*``); a
    non-empty signature; a numeric ``exp`` later than ``now + renew_before`` (a token already due
    for refresh is no improvement); ``exp`` within :data:`EXPIRY_TOLERANCE` seconds of
    the API's ``expiresAt``; ``iat`` and ``nbf``, when present, numeric and at most
    :data:`CLOCK_SKEW` seconds in the future; ``iat``, when present, at most
    :data:`CLOCK_SKEW` seconds in the past; ``sub`` and ``aud`` present and non-empty.

    Args:
        token: The token the API just answered with.
        now: The reference time (aware).
        renew_before: The target's refresh margin, in seconds (>= 0).

    Returns:
        The header fields the signature check needs.

    Raises:
        TokenVerificationError: ``"token <fingerprint> refused: <reason>"``, one line,
            never the token itself.

    Example:
        >>> from datetime import datetime, timezone
        >>> t = AccessToken.model_validate({
        ...     "accessToken": "eyJhbGciOiJub25lIn0.eyJqdGkiOiJhYmMiLCJleHAiOjB9.",
        ...     "expiresAt": "1970-01-01T00:00:00.000Z"})
        >>> check_minted(t, now=datetime.now(timezone.utc), renew_before=300)
        Traceback (most recent call last):
        ...
        usegrant_flows.api.errors.TokenVerificationError: token 2f3333d59f05 refused: ...
    """
    raw = token.access_token.get_secret_value()

    def refuse(reason: str) -> TokenVerificationError:
        return TokenVerificationError(f"token {token.fingerprint} refused: {reason}")

    if len(raw.encode("utf-8")) > MAX_TOKEN_BYTES:
        raise refuse(f"it is larger than {MAX_TOKEN_BYTES // 1024} KiB")
    parts = raw.split(".")
    if len(parts) != 3 or not all(_B64URL.match(part) for part in parts[:2]):
        raise refuse("it is not three base64url parts")
    if parts[2] and not _B64URL.match(parts[2]):
        raise refuse("its signature is not base64url")
    try:
        header, claims = token.header(), token.claims()
    except ValueError:
        raise refuse("its header or claims are not base64url-encoded JSON objects") from None
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in ALLOWED_ALGORITHMS:
        raise refuse(f"its algorithm {shown(algorithm)} is refused (asymmetric ones only)")
    if not parts[2]:  # after the algorithm: `alg: none` is the more useful reason
        raise refuse("it has no signature")

    exp = _number(claims.get("exp"))
    exp_at = _moment(exp) if exp is not None else None
    if exp_at is None:
        raise refuse("it has no numeric exp claim")
    if exp_at <= now + timedelta(seconds=renew_before):
        raise refuse(
            f"it expires at {_stamp(exp_at)}, not later than now + renew_before "
            f"({renew_before:g} s): it would be due at once"
        )
    drift = abs((exp_at - token.expires_at).total_seconds())
    if drift > EXPIRY_TOLERANCE:
        raise refuse(
            f"its exp ({_stamp(exp_at)}) and the API's expiresAt ({_stamp(token.expires_at)}) "
            f"differ by {drift:.0f} s (more than {EXPIRY_TOLERANCE:g} s)"
        )
    for name in ("iat", "nbf"):
        if name not in claims:
            continue
        value = _number(claims[name])
        moment = _moment(value) if value is not None else None
        if moment is None:
            raise refuse(f"its {name} claim is not a number of seconds")
        ahead = (moment - now).total_seconds()
        if ahead > CLOCK_SKEW:
            raise refuse(
                f"its {name} is {ahead:.0f} s in the future (more than {CLOCK_SKEW:g} s of skew)"
            )
        if name == "iat" and -ahead > CLOCK_SKEW:
            raise refuse(
                f"its iat is {-ahead:.0f} s in the past (more than {CLOCK_SKEW:g} s of skew): "
                "not freshly minted"
            )
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise refuse("it has no sub claim")
    audience = claims.get("aud")
    if not (isinstance(audience, str) and audience) and not (
        isinstance(audience, list)
        and audience
        and all(isinstance(item, str) and item for item in audience)
    ):
        raise refuse("it has no aud claim")
    kid = header.get("kid")
    issuer = claims.get("iss")
    return MintedToken(
        algorithm=algorithm,
        kid=kid if isinstance(kid, str) else None,
        issuer=issuer if isinstance(issuer, str) else None,
    )
