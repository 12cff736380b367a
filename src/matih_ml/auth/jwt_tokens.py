"""Bearer JWTs: HS256 with a shared secret, or RS256 with a public key or a JWKS file."""

from __future__ import annotations

import json
from typing import Any

import jwt

from matih_ml.auth.principal import Principal, Role
from matih_ml.config import Settings
from matih_ml.errors import UnauthenticatedError, ValidationError
from matih_ml.tenancy import validate_tenant_id


class JwtVerifier:
    """Verifies tokens and turns their claims into a :class:`Principal`.

    Claims: the tenant (``MATIH_JWT_TENANT_CLAIM``, default ``tenant_id``), ``sub``,
    and ``roles`` (a list, or a space-separated string).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
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
            UnauthenticatedError: If no key verifies it, it has expired, or a claim is
                missing or malformed.
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
            raise UnauthenticatedError("The bearer token is not valid.")
        try:
            tenant = validate_tenant_id(claims.get(self._settings.jwt_tenant_claim))
        except ValidationError:
            raise UnauthenticatedError("The bearer token names no valid tenant.") from None
        raw = claims.get("roles", [])
        names = raw.split() if isinstance(raw, str) else raw
        roles = frozenset(Role(r) for r in names if r in Role._value2member_map_)
        return Principal(tenant_id=tenant, subject=str(claims["sub"]), roles=roles, via="jwt")
