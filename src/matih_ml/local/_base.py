"""What every in-process door shares: the services, the bound caller, its permission."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from matih_ml.auth.principal import Permission, Principal
from matih_ml.errors import ValidationError

if TYPE_CHECKING:
    from matih_ml.services import Services

C = TypeVar("C", bound=type)


def implements(contract: type) -> Callable[[C], C]:
    """Give a door's methods its contract's docstrings, where they have none.

    The contract (``matih_ml.contracts.protocols``) holds each method's one text;
    tests/local/test_local_contracts.py checks that the signatures agree.
    """

    def apply(cls: C) -> C:
        for name, member in vars(contract).items():
            impl = cls.__dict__.get(name)
            if name.startswith("_") or not callable(member) or impl is None:
                continue
            if not getattr(impl, "__doc__", None):
                impl.__doc__ = member.__doc__
        return cls

    return apply


# The most one page of the feed or of deliveries may hold (the routes' ``le=1000``), and
# the highest sequence a cursor may name.
MAX_PAGE = 1000
MAX_SEQUENCE = 2**62


def within(value: int, field: str, low: int, high: int) -> int:
    """A route's bounds on a query value, for callers that do not pass through it.

    Over REST the query's bounds refuse it first (422); in process this is the check, so
    that no caller reads an unbounded page (SQL takes a negative limit as none).

    Raises:
        ValidationError: ``value`` is not an integer in ``[low, high]``; names the field.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(
            f"{field} must be an integer from {low} to {high}, got {value!r}.",
            details={"field": field},
        )
    return value


class Door:
    """One domain of the contracts, in this process, for one caller.

    The caller is bound once, here at the edge: every method reads the tenant from it and
    checks its permission against the one table (``auth.principal.GRANTS``) before
    touching a service, exactly as the REST route of the same name does, because the
    route calls this method.

    Args:
        services: The composition root's services.
        principal: Who is calling: its tenant is the only one reached.
    """

    def __init__(self, services: Services, principal: Principal) -> None:
        self._s = services
        self._who = principal

    def _need(self, permission: Permission) -> str:
        """Check the caller may ``permission``; answer its tenant.

        Raises:
            ForbiddenError: Its roles do not grant it.
        """
        self._who.require(permission)
        return self._who.tenant_id

    def __repr__(self) -> str:
        return f"<{type(self).__name__} tenant={self._who.tenant_id!r}>"
