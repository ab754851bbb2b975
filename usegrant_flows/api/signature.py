"""One minted token's signature against one issuer's JWK set: pure, no network.

:func:`pick_key` finds the key a token names in a set, and :func:`check_signature`
checks the token against it: the key's ``alg``, type and curve must fit the token's
algorithm, an RSA key must have at least :data:`~usegrant_flows.api.claims.MIN_RSA_BITS`
bits, and the signature must verify. Fetching and caching the sets is
:mod:`usegrant_flows.api.jwks`'s business. Every refusal is a
:class:`~usegrant_flows.api.errors.TokenVerificationError` in one line that names the
set's URL, never the token.
"""

from __future__ import annotations

from typing import Any

import jwt

from usegrant_flows.api.claims import KEY_TYPES, MIN_RSA_BITS, MintedToken, shown
from usegrant_flows.api.errors import TokenVerificationError
from usegrant_flows.api.models import AccessToken

__all__ = ["check_signature", "pick_key"]


def pick_key(keys: list[dict[str, Any]], minted: MintedToken, url: str) -> dict[str, Any] | None:
    """Return the key of ``keys`` the token names.

    Args:
        keys: The signing keys of the set at ``url`` (JWK objects).
        minted: What :func:`~usegrant_flows.api.claims.check_minted` read from the token.
        url: The set's URL, for the error line.

    Returns:
        The key whose ``kid`` is the token's; the set's only key when the token names
        no ``kid``; ``None`` when the ``kid`` is not in the set (the issuer may have
        rotated its key: fetch the set again).

    Raises:
        TokenVerificationError: The token names no ``kid`` and the set holds more than
            one key.

    Example:
        >>> from usegrant_flows.api.claims import MintedToken
        >>> minted = MintedToken(algorithm="ES256", kid="a", issuer=None)
        >>> pick_key([{"kid": "a"}, {"kid": "b"}], minted, "https://id.example/jwks")
        {'kid': 'a'}
    """
    if minted.kid is None:
        if len(keys) == 1:
            return keys[0]
        raise TokenVerificationError(
            f"it names no kid and the JWKS at {url} holds {len(keys)} signing keys"
        )
    return next((key for key in keys if key.get("kid") == minted.kid), None)


def check_signature(token: AccessToken, minted: MintedToken, jwk: dict[str, Any], url: str) -> None:
    """Check ``token``'s signature with ``jwk``, a key of the set at ``url``.

    Args:
        token: The token.
        minted: What :func:`~usegrant_flows.api.claims.check_minted` read from it.
        jwk: The key :func:`pick_key` chose.
        url: The set's URL, for the error line.

    Raises:
        TokenVerificationError: The key does not fit the token's algorithm, is not
            usable, is an RSA key too short to prove anything, or the signature does
            not verify.
    """
    algorithm = minted.algorithm
    declared = jwk.get("alg")
    if declared is not None and declared != algorithm:
        raise TokenVerificationError(
            f"it uses {algorithm} but its key in the JWKS at {url} is for {shown(declared)}"
        )
    kty, crv = KEY_TYPES[algorithm]
    if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
        raise TokenVerificationError(
            f"it uses {algorithm} but its key in the JWKS at {url} is not a "
            f"{kty}{' ' + crv if crv else ''} key"
        )
    try:
        key = jwt.PyJWK(jwk, algorithm=algorithm)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        raise TokenVerificationError(f"its key in the JWKS at {url} is not usable") from None
    bits = getattr(key.key, "key_size", None)
    if kty == "RSA" and isinstance(bits, int) and bits < MIN_RSA_BITS:
        # A short RSA key can be factored: its signature proves nothing.
        raise TokenVerificationError(
            f"its RSA key in the JWKS at {url} has {bits} bits (fewer than {MIN_RSA_BITS})"
        )
    try:
        jwt.PyJWS().decode_complete(
            token.access_token.get_secret_value(), key.key, algorithms=[algorithm]
        )
    except jwt.PyJWTError:
        raise TokenVerificationError(
            f"its signature does not verify against the JWKS at {url}"
        ) from None
