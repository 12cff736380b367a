"""The tenant filter on the service's own tables (issue 19): one session hook, failing
closed, on SQLite and PostgreSQL.

Two tenants' rows sit in the same tables. A session of tenant A reads, updates and
deletes A's rows only, however the statement reaches the table (a join, an alias, a
subquery, ``Session.get``); it cannot write a row of B; a session with no tenant
raises instead of answering; and only an explicitly unscoped session sees both.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, func, inspect, select, update
from sqlalchemy.orm import aliased

from matih_ml.store import lifecycle_store
from matih_ml.store.db import Database
from matih_ml.store.models import (
    Base,
    DeliveryRow,
    EventRow,
    ModelLockRow,
    TenantOwned,
    TrainingJobLogRow,
    TrainingJobRow,
    VersionStageRow,
    WebhookRow,
)
from matih_ml.store.run_inputs import RunInputRow
from matih_ml.store.signing_rows import IntegrityFailureRow, SigningKeyRow
from matih_ml.store.tenant_filter import TenantScopeError
from matih_ml.tenancy import tenant_scope

A, B = "acme", "globex"
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def _webhook(tenant: str, n: int) -> WebhookRow:
    return WebhookRow(
        id=f"wh_{tenant}{n}",
        tenant_id=tenant,
        url=f"https://{tenant}.example/hook",
        description="",
        event_types=[],
        secret_encrypted="x",
        active=True,
        created_at=NOW,
        created_by="test",
    )


def _rows(tenant: str) -> list[object]:
    """Two webhooks, an event with a delivery per webhook, a job with a log line, and a
    model lock and stage: each tenant owns the same shapes."""
    rows: list[object] = [_webhook(tenant, 1), _webhook(tenant, 2)]
    rows.append(
        EventRow(
            id=f"evt_{tenant}",
            tenant_id=tenant,
            type="MODEL_STAGE_CHANGED",
            subject="churn",
            state="ready",
            sequence=1,
            created_at=NOW,
            data={},
            payload="{}",
        )
    )
    rows += [
        DeliveryRow(
            event_id=f"evt_{tenant}",
            tenant_id=tenant,
            sink=f"webhook:wh_{tenant}{n}",
            order_key="churn",  # the same in both tenants: only the filter tells them apart
            sequence=1,
            state="pending",
            attempts=0,
            next_attempt_at=NOW,
            created_at=NOW,
        )
        for n in (1, 2)
    ]
    rows.append(
        TrainingJobRow(
            job_id=f"job_{tenant}",
            tenant_id=tenant,
            name="nightly",
            model_name="churn",
            spec={},
            status="queued",
            cancel_requested=False,
            created_at=NOW,
        )
    )
    rows.append(TrainingJobLogRow(job_id=f"job_{tenant}", at=NOW, line=f"{tenant} queued"))
    rows.append(ModelLockRow(tenant_id=tenant, model_name="churn", moves=0))
    rows.append(
        VersionStageRow(
            tenant_id=tenant, model_name="churn", version=1, stage="staging", updated_at=NOW
        )
    )
    return rows


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'matih.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    database = Database(url)
    database.upgrade()
    with database.unscoped() as s:
        s.add_all(_rows(A) + _rows(B))
    yield database
    database.dispose()


def _owned_models() -> list[type]:
    return sorted(
        (m.class_ for m in Base.registry.mappers if issubclass(m.class_, TenantOwned)),
        key=lambda c: c.__name__,
    )


# ------------------------------------------------------------------ no tenant bound


def test_every_table_with_a_tenant_column_is_tenant_owned() -> None:
    """A new table with a tenant column cannot forget the mixin (and so the filter)."""
    for mapper in Base.registry.mappers:
        has_tenant = "tenant_id" in mapper.columns
        assert has_tenant == issubclass(mapper.class_, TenantOwned), mapper.class_.__name__
    # signing_rows' two tables and run_inputs' are imported above, so that they count
    # here whichever other modules this process imported.
    assert {SigningKeyRow, IntegrityFailureRow, RunInputRow} <= set(_owned_models())
    assert len(_owned_models()) == 22


@pytest.mark.parametrize("model", [*_owned_models(), TrainingJobLogRow], ids=lambda m: m.__name__)
def test_a_query_with_no_tenant_bound_raises_and_returns_no_rows(db: Database, model) -> None:
    rows = None
    with pytest.raises(TenantScopeError, match="No tenant is bound"), db.uow() as s:
        rows = s.scalars(select(model)).all()
    assert rows is None


def test_with_no_tenant_bound_gets_counts_updates_deletes_and_writes_raise(db: Database) -> None:
    attempts = [
        lambda s: s.get(WebhookRow, "wh_acme1"),
        lambda s: s.scalar(select(func.count()).select_from(WebhookRow)),
        lambda s: s.execute(update(WebhookRow).values(description="x")),
        lambda s: s.execute(delete(DeliveryRow)),
        lambda s: lifecycle_store.insert_if_missing(
            s, ModelLockRow, {"tenant_id": A, "model_name": "new", "moves": 0}
        ),
    ]
    for attempt in attempts:
        with pytest.raises(TenantScopeError), db.uow() as s:
            attempt(s)
    with pytest.raises(TenantScopeError), db.uow() as s:
        s.add(_webhook(A, 3))  # raised at the flush, by the commit
    with db.unscoped() as s:
        assert s.scalar(select(func.count()).select_from(WebhookRow)) == 4
        assert {d.description for d in s.scalars(select(WebhookRow))} == {""}
        assert s.scalar(select(func.count()).select_from(DeliveryRow)) == 4


# ------------------------------------------------------------------ tenant A bound


def _seen(db: Database, tenant: str) -> dict[str, object]:
    with db.uow(tenant=tenant) as s:
        earlier = aliased(DeliveryRow)
        return {
            "webhooks": sorted(s.scalars(select(WebhookRow.id))),
            "count": s.scalar(select(func.count()).select_from(WebhookRow)),
            # A join, as the webhook's delivery list reads it.
            "joined": sorted(
                s.execute(
                    select(DeliveryRow.sink, EventRow.id).join(
                        EventRow, EventRow.id == DeliveryRow.event_id
                    )
                ).all()
            ),
            # An alias in a correlated subquery, as the dispatcher's claim reads it.
            "aliased": sorted(
                s.scalars(
                    select(DeliveryRow.sink).where(
                        select(func.count())
                        .where(earlier.order_key == DeliveryRow.order_key)
                        .scalar_subquery()
                        == 2
                    )
                )
            ),
            "self_join": len(
                s.execute(
                    select(DeliveryRow.id, earlier.id).join(
                        earlier, earlier.sequence == DeliveryRow.sequence
                    )
                ).all()
            ),
            "in_subquery": sorted(
                s.scalars(
                    select(WebhookRow.id).where(
                        ("webhook:" + WebhookRow.id).in_(select(DeliveryRow.sink))
                    )
                )
            ),
            "get_mine": s.get(WebhookRow, f"wh_{tenant}1") is not None,
            "get_theirs": [
                s.get(WebhookRow, f"wh_{other}1") for other in (A, B) if other != tenant
            ],
            "get_composite": [
                s.get(VersionStageRow, (other, "churn", 1)) is not None for other in (A, B)
            ],
            "logs": list(s.scalars(select(TrainingJobLogRow.line))),
        }


def test_a_tenants_session_sees_only_its_rows_through_joins_aliases_and_gets(
    db: Database,
) -> None:
    for tenant in (A, B, A):  # the cached statements are reused with the other tenant
        seen = _seen(db, tenant)
        assert seen == {
            "webhooks": [f"wh_{tenant}1", f"wh_{tenant}2"],
            "count": 2,
            "joined": [(f"webhook:wh_{tenant}{n}", f"evt_{tenant}") for n in (1, 2)],
            "aliased": [f"webhook:wh_{tenant}1", f"webhook:wh_{tenant}2"],
            "self_join": 4,
            "in_subquery": [f"wh_{tenant}1", f"wh_{tenant}2"],
            "get_mine": True,
            "get_theirs": [None],
            "get_composite": [tenant == A, tenant == B],
            "logs": [f"{tenant} queued"],
        }


def test_the_tenant_bound_to_the_context_scopes_a_session_opened_without_one(
    db: Database,
) -> None:
    with tenant_scope(B), db.uow() as s:
        assert sorted(s.scalars(select(WebhookRow.id))) == ["wh_globex1", "wh_globex2"]


def test_a_session_for_one_tenant_inside_anothers_context_raises(db: Database) -> None:
    with pytest.raises(TenantScopeError, match="context"), tenant_scope(B), db.uow(tenant=A) as s:
        s.scalars(select(WebhookRow)).all()


def test_bulk_updates_and_deletes_under_a_cannot_touch_bs_rows(db: Database) -> None:
    with db.uow(tenant=A) as s:
        assert s.execute(update(WebhookRow).values(description="mine")).rowcount == 2
        # Naming B's rows outright changes nothing either.
        assert (
            s.execute(
                update(DeliveryRow)
                .where(DeliveryRow.event_id == f"evt_{B}")
                .values(state="cancelled")
            ).rowcount
            == 0
        )
        assert s.execute(delete(WebhookRow).where(WebhookRow.id == f"wh_{B}1")).rowcount == 0
        assert s.execute(delete(VersionStageRow)).rowcount == 1
        assert s.execute(
            update(TrainingJobLogRow).values(line="rewritten").returning(TrainingJobLogRow.job_id)
        ).all() == [(f"job_{A}",)]
    with db.unscoped() as s:
        described = dict(s.execute(select(WebhookRow.id, WebhookRow.description)).all())
        assert described == {
            "wh_acme1": "mine",
            "wh_acme2": "mine",
            "wh_globex1": "",
            "wh_globex2": "",
        }
        assert set(s.scalars(select(DeliveryRow.state))) == {"pending"}
        assert list(s.scalars(select(VersionStageRow.tenant_id))) == [B]
        lines = dict(s.execute(select(TrainingJobLogRow.job_id, TrainingJobLogRow.line)).all())
        assert lines == {f"job_{A}": "rewritten", f"job_{B}": f"{B} queued"}


def test_a_bulk_update_by_primary_key_is_refused_under_a_tenant(db: Database) -> None:
    """SQLAlchemy's bulk UPDATE by primary key (a list of rows) ignores loader criteria:
    the filter refuses it rather than let B's row be named and changed."""
    rows = [
        {"id": f"wh_{A}1", "description": "bulk"},
        {"id": f"wh_{B}1", "description": "bulk"},
    ]
    with pytest.raises(TenantScopeError, match="list of parameter rows"), db.uow(tenant=A) as s:
        s.execute(update(WebhookRow), rows)
    with db.unscoped() as s:
        assert set(s.scalars(select(WebhookRow.description))) == {""}
        s.execute(update(WebhookRow), rows)  # across tenants on purpose, it is allowed
        assert s.get(WebhookRow, f"wh_{B}1").description == "bulk"


def test_an_expired_row_is_refreshed_in_its_tenants_session(db: Database) -> None:
    with db.uow(tenant=A) as s:
        row = s.get(WebhookRow, f"wh_{A}1")
        job = s.get(TrainingJobRow, f"job_{A}")
        s.expire_all()  # the next reads are column loads, through the row's criteria
        assert (row.url, job.status) == (f"https://{A}.example/hook", "queued")


def test_writing_a_row_of_b_while_a_is_bound_fails_at_flush(db: Database) -> None:
    with pytest.raises(TenantScopeError, match="another tenant"), db.uow(tenant=A) as s:
        s.add(_webhook(B, 3))
        s.flush()
    with pytest.raises(TenantScopeError, match="another tenant"), db.uow(tenant=A) as s:
        mine = s.get(WebhookRow, f"wh_{A}1")
        mine.tenant_id = B  # moving a row to another tenant is a write of B's row
    # An ORM INSERT statement is checked as well (the model lock, insert-if-missing).
    with pytest.raises(TenantScopeError, match="insert"), db.uow(tenant=A) as s:
        lifecycle_store.insert_if_missing(
            s, ModelLockRow, {"tenant_id": B, "model_name": "other", "moves": 0}
        )
    # A store helper asked for B on A's session refuses before it writes anything.
    with pytest.raises(TenantScopeError, match="asked for"), db.uow(tenant=A) as s:
        lifecycle_store.lock_model(s, B, "churn")
    with db.unscoped() as s:
        assert s.scalar(select(func.count()).select_from(WebhookRow)) == 4
        assert set(s.scalars(select(WebhookRow.tenant_id).where(WebhookRow.id == "wh_acme1"))) == {
            A
        }
        assert s.scalar(select(func.count()).select_from(ModelLockRow)) == 2
        assert list(s.scalars(select(ModelLockRow.moves))) == [0, 0]


def test_a_session_opened_without_a_tenant_serves_the_tenant_its_first_helper_binds(
    db: Database,
) -> None:
    """The lifecycle opens ``db.uow()`` and takes the model's lock first: from there on
    the session is that tenant's."""
    with db.uow() as s:
        lifecycle_store.lock_model(s, A, "churn")
        assert sorted(s.scalars(select(WebhookRow.id))) == ["wh_acme1", "wh_acme2"]
        with pytest.raises(TenantScopeError, match="serves tenant 'acme'"):
            lifecycle_store.stages(s, B, "churn")


# ------------------------------------------------------------------ unscoped


def test_the_unscoped_session_sees_every_tenant(db: Database) -> None:
    with tenant_scope(A), db.unscoped() as s:  # it ignores the context on purpose
        assert sorted(s.scalars(select(WebhookRow.tenant_id))) == [A, A, B, B]
        assert s.get(WebhookRow, f"wh_{B}1") is not None
        assert len(s.scalars(select(TrainingJobLogRow)).all()) == 2
        lifecycle_store.lock_model(s, B, "churn")  # helpers keep their own predicates
    with db.unscoped() as s:
        moves = dict(s.execute(select(ModelLockRow.tenant_id, ModelLockRow.moves)).all())
    assert moves == {A: 0, B: 1}


def test_the_filter_leaves_other_sessions_alone(db: Database) -> None:
    """Only the service's sessions carry the hook: MLflow's own SQLAlchemy sessions
    (plain ``Session``) on the same engine are untouched."""
    from sqlalchemy.orm import Session

    with Session(db.engine) as s:
        assert len(s.scalars(select(WebhookRow)).all()) == 4
    assert inspect(db.engine).has_table("matih_webhooks")
