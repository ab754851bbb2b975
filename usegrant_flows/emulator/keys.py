"""Per-provider ES256 signing keys, generated at start-up and never written to disk.

Each provider gets its own P-256 key. Its ``kid`` is the RFC 7638 thumbprint of the
public key, so it is stable for a key and unique across keys.

Example:
    >>> key = SigningKey.generate()
    >>> sorted(key.public_jwk())
    ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']
    >>> token = key.sign({"sub": "x"}, typ="at+jwt")
    >>> import jwt
    >>> jwt.get_unverified_header(token)["kid"] == key.kid
    True
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

__all__ = ["ALGORITHM", "SigningKey"]

#: The JWS algorithm of every emulator token.
ALGORITHM = "ES256"


def _thumbprint(jwk: dict[str, Any]) -> str:
    # RFC 7638: the required members, sorted, no whitespace.
    canonical = json.dumps(
        {name: jwk[name] for name in ("crv", "kty", "x", "y")},
        separators=(",", ":"),
        sort_keys=True,
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    """An ES256 private key with its key id.

    Attributes:
        kid: The key id (RFC 7638 thumbprint), written into every token header.
        private_key: The P-256 private key.
    """

    kid: str
    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        """Create a fresh P-256 key."""
        private_key = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        return cls(kid=_thumbprint(jwk), private_key=private_key)

    def impostor(self) -> SigningKey:
        """Return a fresh private key under this key's ``kid``.

        A token it signs names a key the JWKS publishes, yet fails verification: what
        a forger without the real key would produce.
        """
        return SigningKey(kid=self.kid, private_key=ec.generate_private_key(ec.SECP256R1()))

    def public_jwk(self) -> dict[str, Any]:
        """Return the public key as a JWK with ``kid``, ``use`` and ``alg``."""
        jwk = ECAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}

    def sign(self, claims: dict[str, Any], *, typ: str) -> str:
        """Sign claims into a compact JWT.

        Args:
            claims: The JWT claims.
            typ: The header's ``typ`` (``at+jwt`` or ``jwt``).

        Returns:
            The compact JWS.
        """
        return jwt.encode(
            claims, self.private_key, algorithm=ALGORITHM, headers={"typ": typ, "kid": self.kid}
        )

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r})"
