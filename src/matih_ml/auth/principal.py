"""Who is calling, for which tenant, and what each role may do."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from matih_ml.errors import ForbiddenError, ValidationError


class Role(StrEnum):
    """The roles a credential can carry."""

    VIEWER = "viewer"
    EDITOR = "editor"
    APPROVER = "approver"
    ADMIN = "admin"


class Permission(StrEnum):
    """What an operation needs."""

    READ = "read"
    WRITE = "write"
    APPROVE = "approve"
    ADMIN = "admin"


# The single table of who may do what.
GRANTS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.EDITOR: frozenset({Permission.READ, Permission.WRITE}),
    Role.APPROVER: frozenset({Permission.READ, Permission.APPROVE}),
    Role.ADMIN: frozenset(Permission),
}


def parse_role(value: object) -> Role:
    """Return the :class:`Role` named by ``value``.

    Raises:
        ValidationError: For an unknown role.
    """
    try:
        return Role(str(value))
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise ValidationError(
            f"role {value!r} is not one of: {allowed}.", details={"field": "role"}
        ) from None


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    Attributes:
        tenant_id: The tenant its credential belongs to: the only tenant it can reach.
        subject: Which credential it is (the key's name, or the JWT's ``sub``).
        roles: Its roles.
        via: ``api_key`` or ``jwt``.
        owner: The person or service account behind the credential: the key's owner,
            or ``"<iss>:<sub>"`` for a JWT. Four eyes compares owners, since one
            person may hold several keys.
        key_id: The API key's id, when it came with one.
    """

    tenant_id: str
    subject: str
    roles: frozenset[Role]
    via: str
    owner: str
    key_id: str | None = None

    def can(self, permission: Permission) -> bool:
        """Whether any of its roles grants ``permission``."""
        return any(permission in GRANTS[r] for r in self.roles)

    def require(self, permission: Permission) -> None:
        """Raise ``ForbiddenError`` unless it may ``permission``."""
        if not self.can(permission):
            roles = ", ".join(sorted(r.value for r in self.roles)) or "none"
            raise ForbiddenError(
                f"This operation needs the {permission.value!r} permission; "
                f"the credential's roles ({roles}) do not grant it.",
                details={"permission": permission.value},
            )
