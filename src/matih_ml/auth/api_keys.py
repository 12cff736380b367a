"""API keys: random, long, shown once; only a salted hash is stored."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from matih_ml.auth.principal import Principal, Role, parse_role
from matih_ml.errors import ConflictError, NotFoundError, UnauthenticatedError, ValidationError
from matih_ml.store.db import Database
from matih_ml.store.models import ApiKeyRow
from matih_ml.tenancy import validate_tenant_id

PREFIX = "mk"
NAME_MAX = 128
OWNER_MAX = 256
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ApiKeyInfo:
    """An API key's public facts (never its secret)."""

    key_id: str
    tenant_id: str
    name: str
    owner: str
    role: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewApiKey:
    """A key just created: ``secret`` is the whole key, shown this once."""

    info: ApiKeyInfo
    secret: str


def _hash(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def _aware(when: datetime) -> datetime:
    # SQLite keeps no time zone; every time stored here is UTC.
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _info(row: ApiKeyRow) -> ApiKeyInfo:
    return ApiKeyInfo(
        row.key_id,
        row.tenant_id,
        row.name,
        row.owner,
        row.role,
        _aware(row.created_at),
        row.created_by,
        _aware(row.revoked_at) if row.revoked_at is not None else None,
    )


def _label(value: str, field: str, limit: int) -> str:
    """A key's name or owner: trimmed, at most ``limit`` characters, no control characters
    (they end up in tables, logs and approval records)."""
    value = value.strip()
    if len(value) > limit:
        raise ValidationError(
            f"Key {field} is over {limit} characters.", details={"field": field, "limit": limit}
        )
    if _CONTROL_RE.search(value):
        raise ValidationError(
            f"Key {field} must not contain control characters.", details={"field": field}
        )
    return value


# How long a verified key is trusted without reading the database again.
CACHE_TTL_S = 5.0
_CACHE_MAX = 10_000


class ApiKeyStore:
    """Creates, lists, revokes and verifies API keys.

    Keys look like ``mk_<key id>_<secret>``: the id finds the row, the 256-bit secret
    is checked against its salted SHA-256 in constant time. A slow hash adds nothing
    for secrets this long, and would cost every request.
    """

    def __init__(self, db: Database, cache_ttl_s: float = CACHE_TTL_S) -> None:
        self._db = db
        self._ttl_s = cache_ttl_s
        self._lock = threading.Lock()
        # sha256(presented key) -> (valid until, principal). A verified key skips the
        # database read for a few seconds: that read was a quarter of a prediction's cost.
        self._verified: dict[bytes, tuple[float, Principal]] = {}

    def cached(self, presented: str) -> Principal | None:
        """The principal of a key verified in the last ``cache_ttl_s`` seconds, if any.

        A key revoked through this process is dropped at once; one revoked through
        another replica is refused here within ``cache_ttl_s``.
        """
        hit = self._verified.get(hashlib.sha256(presented.encode()).digest())
        if hit is not None and time.monotonic() < hit[0]:
            return hit[1]
        return None

    def create(
        self,
        tenant_id: str,
        role: str,
        name: str = "",
        created_by: str = "",
        *,
        owner: str = "",
    ) -> NewApiKey:
        """Create a key for ``tenant_id`` with ``role``; the secret is in the result only.

        Args:
            tenant_id: The tenant the key opens (and the only one).
            role: viewer, editor, approver or admin.
            name: A label, unique in the tenant. Empty: ``<role>-key-<8 hex>``, new each time.
            created_by: Who made it (recorded, not checked).
            owner: The person or service account the key belongs to. Empty: the key's
                name, so that a key without an owner is a person of its own. Four eyes
                compares owners: give every key of one person the same owner.

        Raises:
            ValidationError: For a bad tenant id, role, name or owner.
            ConflictError: If the tenant already has a key of that name (revoked ones too).
        """
        tenant_id = validate_tenant_id(tenant_id)
        parsed = parse_role(role)
        name = _label(name, "name", NAME_MAX)
        owner = _label(owner, "owner", OWNER_MAX)
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        # A default name must differ from every other one: a fixed `admin-key` made two
        # people's keys look like one person's.
        name = name or f"{parsed.value}-key-{key_id[:8]}"
        row = ApiKeyRow(
            key_id=key_id,
            tenant_id=tenant_id,
            name=name,
            owner=owner or name,
            role=parsed.value,
            salt=salt,
            secret_hash=_hash(salt, secret),
            created_at=datetime.now(UTC),
            created_by=created_by,
        )
        try:
            with self._db.uow(tenant=tenant_id) as session:
                session.add(row)
        except IntegrityError:
            # The unique (tenant, name) constraint: checked by the database, so two
            # replicas creating the same name at once cannot both succeed.
            raise ConflictError(
                f"The tenant already has an API key named {name!r} (names stay taken after "
                "a key is revoked); choose another name.",
                details={"field": "name", "name": name},
            ) from None
        return NewApiKey(_info(row), f"{PREFIX}_{key_id}_{secret}")

    def list(self, tenant_id: str) -> list[ApiKeyInfo]:
        """The tenant's keys, revoked ones included, oldest first."""
        with self._db.uow(tenant=tenant_id) as session:
            rows = session.scalars(
                select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.key_id)
            ).all()
            return [_info(r) for r in rows]

    def revoke(self, tenant_id: str, key_id: str) -> ApiKeyInfo:
        """Revoke one of the tenant's keys (idempotent).

        Raises:
            NotFoundError: If the tenant has no such key.
        """
        with self._db.uow(tenant=tenant_id) as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:  # another tenant's key is not found either
                raise NotFoundError(f"API key {key_id!r} not found.", details={"key_id": key_id})
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
            info = _info(row)
        with self._lock:
            for digest in [d for d, (_, p) in self._verified.items() if p.key_id == key_id]:
                del self._verified[digest]
        return info

    def verify(self, presented: str) -> Principal:
        """Return the principal of a presented key.

        Raises:
            UnauthenticatedError: If it is malformed, unknown, wrong or revoked (one
                message for all, so a caller learns nothing about which).
        """
        invalid = UnauthenticatedError("The API key is not valid.")
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX or len(parts[1]) != 16:
            raise invalid
        _, key_id, secret = parts
        # The key names its tenant: it is looked up by id before any tenant is known.
        with self._db.unscoped() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None or row.revoked_at is not None:
                raise invalid
            if not hmac.compare_digest(row.secret_hash, _hash(row.salt, secret)):
                raise invalid
            principal = Principal(
                tenant_id=row.tenant_id,
                subject=row.name,
                roles=frozenset({Role(row.role)}),
                via="api_key",
                owner=row.owner,
                key_id=row.key_id,
            )
        if self._ttl_s > 0:
            with self._lock:
                if len(self._verified) >= _CACHE_MAX:
                    self._verified.clear()
                digest = hashlib.sha256(presented.encode()).digest()
                self._verified[digest] = (time.monotonic() + self._ttl_s, principal)
        return principal
