"""The tenant filter on the service's own tables: one choke point, failing closed.

Every session the :class:`~matih_ml.store.db.Database` makes is a :class:`TenantSession`,
and has a tenant: the one it was opened for (``db.uow(tenant=...)``), or the one the first
store helper handed it binds (:func:`bind_tenant`), or else the tenant bound to the
context (:func:`matih_ml.tenancy.tenant_scope`). Two hooks on that class do the rest:

- ``do_orm_execute`` adds ``tenant_id = <the session's tenant>`` to every ORM SELECT,
  UPDATE and DELETE that touches a :class:`~matih_ml.store.models.TenantOwned` table
  (joins, aliases and subqueries too, and ``Session.get``), and confines a job's log
  lines to the tenant's jobs; an ORM INSERT must carry the session's tenant, and an ORM
  bulk UPDATE by primary key, which SQLAlchemy runs without these criteria, is refused.
- ``before_flush`` refuses to add, change or delete a row of another tenant.

A session with no tenant raises :class:`TenantScopeError` at its first ORM statement: a
forgotten scope is a bug, and must never read as "no rows". The paths that work across
tenants on purpose (the event dispatcher, the job executor's bookkeeping, the
reconciler's intents, the stage projector's queue, an API key's lookup before its
tenant is known, serving's preload, replays) open ``db.unscoped()``, which says so.

Raw SQL (``text()``) and Core statements on a bare ``Table`` are not ORM statements and
are not filtered; docs/decisions.md lists the ones there are and how each is scoped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction, with_loader_criteria
from sqlalchemy.sql import ClauseElement

from matih_ml.store.models import TenantOwned, TrainingJobLogRow, TrainingJobRow
from matih_ml.tenancy import current_tenant

_TENANT = "matih_tenant"
_UNSCOPED = "matih_unscoped"
# The names a compiled INSERT gives the tenant column's value (one row, or several).
_TENANT_PARAM = re.compile(r"^tenant_id(_m\d+)?$")


class TenantScopeError(RuntimeError):
    """A session of the service's tables was used with no tenant, or for two tenants.

    A programming error, not a caller's: it is never mapped to a 4xx, so it can never
    pass for an empty answer.
    """


class TenantSession(Session):
    """A session of the service's tables, under the tenant filter.

    The hooks listen on this class only: MLflow's own sessions (plain ``Session``) and
    any other library's are untouched.
    """


def scope_info(*, tenant: str | None = None, unscoped: bool = False) -> dict[str, Any]:
    """The ``Session.info`` a new session starts with (for :class:`~matih_ml.store.db.Database`)."""
    if unscoped:
        return {_UNSCOPED: True}
    return {_TENANT: tenant} if tenant is not None else {}


def is_unscoped(session: Session) -> bool:
    """Whether ``session`` was opened to work across tenants (``db.unscoped()``)."""
    return bool(session.info.get(_UNSCOPED))


def bind_tenant(session: Session, tenant_id: str) -> None:
    """Bind ``session`` to ``tenant_id`` for the rest of its life, if it has no tenant yet.

    The store helpers that take a caller's session and a tenant call this first, so a
    unit of work opened without a tenant serves the tenant of its first helper, and a
    helper asked for another tenant than the session's fails. An unscoped session
    stays unscoped: those helpers keep their explicit tenant predicates for it.

    Raises:
        TenantScopeError: If the session, or the context, is bound to another tenant.
    """
    if is_unscoped(session):
        return
    bound = session.info.get(_TENANT)
    if bound == tenant_id:
        return
    if bound is not None:
        raise TenantScopeError(
            f"This session serves tenant {bound!r}; it was asked for {tenant_id!r}."
        )
    context = current_tenant()
    if context is not None and context != tenant_id:
        raise TenantScopeError(
            f"The context is bound to tenant {context!r}; a session was asked for {tenant_id!r}."
        )
    session.info[_TENANT] = tenant_id


def session_tenant(session: Session) -> str | None:
    """The tenant whose rows ``session`` sees; None for an unscoped session.

    Raises:
        TenantScopeError: If no tenant is bound (neither the session's nor the
            context's), or the two differ.
    """
    if is_unscoped(session):
        return None
    bound = session.info.get(_TENANT)
    context = current_tenant()
    if bound is not None and context is not None and bound != context:
        raise TenantScopeError(
            f"This session serves tenant {bound!r} but the context is bound to {context!r}."
        )
    tenant = bound if bound is not None else context
    if tenant is None:
        raise TenantScopeError(
            "No tenant is bound to this session of the service's tables: open it with "
            "db.uow(tenant=...) or inside tenant_scope(); a path that works across "
            "tenants on purpose opens db.unscoped()."
        )
    return tenant


# The tenant is a named bound parameter, given with each statement's parameters, rather
# than a value captured by the criteria: built once, the criteria cost a statement a few
# microseconds, where criteria built per statement (a lambda closing over the tenant) cost
# it a few hundred. The name is written out in the lambdas: SQLAlchemy turns a variable
# read there into a bound value of its own.
_TENANT_BIND = "matih_tenant_filter"
_CRITERIA = (
    with_loader_criteria(
        TenantOwned,
        lambda cls: cls.tenant_id == bindparam("matih_tenant_filter"),
        include_aliases=True,
    ),
    with_loader_criteria(
        TrainingJobLogRow,
        lambda cls: cls.job_id.in_(
            select(TrainingJobRow.job_id).where(
                TrainingJobRow.tenant_id == bindparam("matih_tenant_filter")
            )
        ),
        include_aliases=True,
    ),
)


def _one_row_of_parameters(state: ORMExecuteState) -> bool:
    params = state.parameters
    return params is None or isinstance(params, Mapping)


def _give_tenant(state: ORMExecuteState, tenant: str) -> None:
    """Add the tenant to the statement's parameters (each row's, for an executemany)."""
    params = state.parameters
    if params is None or isinstance(params, Mapping):
        state.parameters = {**(params or {}), _TENANT_BIND: tenant}
    else:
        state.parameters = [{**row, _TENANT_BIND: tenant} for row in params]


def _inserted_tenants(state: ORMExecuteState) -> list[Any]:
    """The tenant ids an ORM INSERT writes: from its parameter rows, else its VALUES."""
    params = state.parameters
    rows: Sequence[Any] = params if isinstance(params, list | tuple) else [params] if params else []
    if rows:
        return [row["tenant_id"] for row in rows if "tenant_id" in row]
    # ``insert(Row).values(...)``: compiling is the public way to read the values back
    # (a few per stage move: the model lock, the event sequence, insert-if-missing).
    statement = state.statement
    if not isinstance(statement, ClauseElement):
        return []
    compiled = statement.compile(dialect=state.session.get_bind().dialect)
    return [v for k, v in compiled.params.items() if _TENANT_PARAM.match(k)]


@event.listens_for(TenantSession, "do_orm_execute")
def _filter_statement(state: ORMExecuteState) -> None:
    if not state.is_orm_statement:
        return
    tenant = session_tenant(state.session)
    if tenant is None:
        return
    if state.is_column_load or state.is_relationship_load:
        # A refresh of rows loaded through a filtered statement: SQLAlchemy carries that
        # statement's criteria over, and they need the tenant's value.
        _give_tenant(state, tenant)
    elif state.is_insert:
        mapper = state.bind_mapper
        if mapper is not None and issubclass(mapper.class_, TenantOwned):
            wrong = sorted({str(t) for t in _inserted_tenants(state) if t != tenant})
            if wrong:
                raise TenantScopeError(
                    f"An insert into {mapper.class_.__name__} for tenant(s) "
                    f"{', '.join(wrong)} in a session of tenant {tenant!r}."
                )
    elif state.is_select or state.is_update or state.is_delete:
        if not state.is_select and not _one_row_of_parameters(state):
            # An ORM bulk UPDATE by primary key (a list of rows) ignores loader criteria:
            # refused rather than let through unfiltered.
            raise TenantScopeError(
                "An ORM UPDATE or DELETE with a list of parameter rows is not filtered by "
                f"tenant; in a session of tenant {tenant!r} give one set of parameters "
                "(or use db.unscoped() where working across tenants is meant)."
            )
        state.statement = state.statement.options(*_CRITERIA)
        _give_tenant(state, tenant)


@event.listens_for(TenantSession, "before_flush")
def _check_writes(session: Session, _flush: UOWTransaction, _instances: object) -> None:
    owned = [
        o for o in (*session.new, *session.dirty, *session.deleted) if isinstance(o, TenantOwned)
    ]
    if not owned:
        return
    tenant = session_tenant(session)
    if tenant is None:
        return
    wrong = sorted({f"{type(o).__name__}:{o.tenant_id}" for o in owned if o.tenant_id != tenant})
    if wrong:
        raise TenantScopeError(
            f"Rows of another tenant ({', '.join(wrong)}) written in a session of tenant "
            f"{tenant!r}."
        )
