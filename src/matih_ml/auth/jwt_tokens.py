"""Bearer JWTs: HS256 with a shared secret, or RS256 with a public key or a JWKS file."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jwt

from matih_ml.auth.principal import Principal, Role
from matih_ml.config import Settings
from matih_ml.errors import UnauthenticatedError, ValidationError
from matih_ml.tenancy import validate_tenant_id

# Every refusal says the same, so that no answer tells a tenant that exists from one
# that does not (or a bad signature from a bad claim).
INVALID = "The bearer token is not valid."
# The owner goes into approval records (256 characters).
_OWNER_MAX = 256


def _roles(raw: object) -> frozenset[Role]:
    """The roles a ``roles`` claim names: a list of strings, or one space-separated string.

    Names we do not know are skipped (an identity provider may carry roles of other
    services). Anything else (a number, null, a bool, a dict, nested lists) is refused:
    iterating a dict such as ``{"admin": true}`` would otherwise read its keys as roles.

    Raises:
        UnauthenticatedError: For a claim of any other shape.
    """
    if isinstance(raw, str):
        names = raw.split()
    elif isinstance(raw, list) and all(isinstance(r, str) for r in raw):
        names = raw
    else:
        raise UnauthenticatedError(INVALID)
    return frozenset(Role(r) for r in names if r in Role._value2member_map_)


class JwtVerifier:
    """Verifies tokens and turns their claims into a :class:`Principal`.

    Claims: the tenant (``MATIH_JWT_TENANT_CLAIM``, default ``tenant_id``), which must
    name a tenant that exists; ``sub``; ``roles`` (a list of strings, or a
    space-separated string; absent means none); and ``iss``, which with ``sub`` makes
    the principal's owner (``"<iss>:<sub>"``, the issuer empty when the token has none).

    Args:
        settings: The keys, audience, issuer and tenant claim.
        tenant_exists: Whether a tenant exists. A token never creates its tenant, not
            even where ``MATIH_AUTO_CREATE_TENANTS`` is on: whoever holds the signing
            key could otherwise make any number of them.
    """

    def __init__(self, settings: Settings, *, tenant_exists: Callable[[str], bool]) -> None:
        self._settings = settings
        self._tenant_exists = tenant_exists
        self._keys: list[tuple[Any, str]] = []
        if settings.jwt_secret:
            self._keys.append((settings.jwt_secret, "HS256"))
        if settings.jwt_public_key_file:
            self._keys.append((settings.jwt_public_key_file.read_text(), "RS256"))
        if settings.jwt_jwks_file:
            jwks = json.loads(settings.jwt_jwks_file.read_text())
            for jwk in jwks.get("keys", []):
                self._keys.append((jwt.PyJWK(jwk).key, "RS256"))

    @property
    def enabled(self) -> bool:
        """Whether any verification key is configured."""
        return bool(self._keys)

    def verify(self, token: str) -> Principal:
        """Verify ``token`` and return its principal.

        Raises:
            UnauthenticatedError: If no key verifies it, it has expired, a claim is
                missing or malformed, or its tenant does not exist (one message for all).
        """
        claims: dict[str, Any] | None = None
        for key, alg in self._keys:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    audience=self._settings.jwt_audience,
                    issuer=self._settings.jwt_issuer,
                    options={
                        "require": ["exp", "sub"],
                        "verify_aud": bool(self._settings.jwt_audience),
                    },
                )
                break
            except jwt.PyJWTError:
                continue
        if claims is None:
            raise UnauthenticatedError(INVALID)
        try:
            tenant = validate_tenant_id(claims.get(self._settings.jwt_tenant_claim))
        except ValidationError:
            raise UnauthenticatedError(INVALID) from None
        roles = _roles(claims.get("roles", []))
        subject, issuer = claims["sub"], claims.get("iss", "")
        if not isinstance(subject, str) or not subject or not isinstance(issuer, str):
            raise UnauthenticatedError(INVALID)
        owner = f"{issuer}:{subject}"
        if len(owner) > _OWNER_MAX:
            raise UnauthenticatedError(INVALID)
        # Last, and after the signature: only a validly signed token costs a lookup.
        if not self._tenant_exists(tenant):
            raise UnauthenticatedError(INVALID)
        return Principal(tenant_id=tenant, subject=subject, roles=roles, via="jwt", owner=owner)
