"""The outbox under stress: gap-free sequences from many threads, two dispatchers on one
PostgreSQL, intents left by a crash, and a service killed before it delivered."""

from __future__ import annotations

from collections import defaultdict

import pytest
from sqlalchemy import func, select

from api.helpers import ok
from concurrency import in_threads
from conftest import ServeProcess, embedded_settings, new_tenant_id
from events.receiver import Receiver
from matih_ml.events.catalog import EventType
from matih_ml.events.dispatcher import Dispatcher, DispatchPolicy
from matih_ml.events.outbox import EventLog
from matih_ml.events.reconciler import Reconciler
from matih_ml.events.secret_box import SecretBox
from matih_ml.events.webhooks import WebhookStore
from matih_ml.registry.intent_probe import MlflowIntentProbe
from matih_ml.services import build_services
from matih_ml.store.db import Database
from matih_ml.store.models import DeliveryRow
from matih_ml.tenancy import tenant_scope


def _deleted(events: EventLog, tenant: str, model: str, version: int) -> str:
    with events._db.uow() as s:
        return events.emit(
            s,
            tenant,
            EventType.MODEL_VERSION_DELETED,
            model,
            {"model": model, "version": str(version)},
        )


def _hammer(events: EventLog, tenant: str, threads: int = 8, each: int = 40) -> dict[str, list]:
    by_thread: dict[str, list[int]] = defaultdict(list)

    def work(n: int) -> None:
        for i in range(each):
            _deleted(events, tenant, f"m{n % 3}", i + 1)
            by_thread[str(n)].append(i)

    in_threads(threads, work)
    return by_thread


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_sequences_have_no_gaps_or_duplicates_under_concurrent_writers(
    store, tmp_path, request
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'events.db'}"
        if store == "sqlite"
        else request.getfixturevalue("postgres_database")
    )
    db = Database(url)
    db.upgrade()
    events = EventLog(db)
    try:
        _hammer(events, "acme")
        _hammer(events, "globex", threads=2, each=10)
        feed = events.feed("acme", limit=1000)
        assert [e["sequence"] for e in feed] == list(range(1, 8 * 40 + 1))
        assert [e["sequence"] for e in events.feed("globex", limit=1000)] == list(range(1, 21))
        assert all(e["tenant_id"] == "acme" for e in feed)
    finally:
        db.dispose()


def test_two_dispatchers_on_postgresql_deliver_each_event_once_in_order(
    postgres_database, tmp_path
) -> None:
    db = Database(postgres_database)
    db.upgrade()
    settings = embedded_settings(tmp_path).model_copy(update={"secret_key": None})
    hooks = WebhookStore(db, SecretBox(settings))
    receiver = Receiver()
    try:
        events = EventLog(db)
        hooks.create("acme", receiver.url)
        _hammer(events, "acme", threads=4, each=50)
        policy = DispatchPolicy(batch=7, poll_s=0.01)
        dispatchers = [Dispatcher(db, hooks, policy=policy) for _ in range(2)]
        for d in dispatchers:
            d.start()
        receiver.wait_for(lambda: len(receiver.unique()) == 200, timeout=120)
        for d in dispatchers:
            d.stop()
        ids = [e["id"] for e in receiver.events()]
        assert len(ids) == len(set(ids)) == 200  # SKIP LOCKED: nobody sent one twice
        per_model: dict[str, list[int]] = defaultdict(list)
        for e in receiver.events():
            per_model[e["subject"]].append(e["sequence"])
        assert all(seqs == sorted(seqs) for seqs in per_model.values())
        with db.unscoped() as s:
            states = s.execute(
                select(DeliveryRow.state, func.count()).group_by(DeliveryRow.state)
            ).all()
        assert dict(states) == {"delivered": 200}
    finally:
        receiver.stop()
        db.dispose()


def test_the_reconciler_confirms_what_happened_and_drops_what_did_not(
    services, tenant, sk_model, tracker
) -> None:
    events = services.events
    client = services.backend.client
    # A registration whose process died after MLflow had it, before it confirmed:
    happened = events.intent(tenant, EventType.MODEL_REGISTERED, "churn", {"model": "churn"})
    services.registry._registrar.register_model_version(  # the same steps, unconfirmed
        tenant, "churn", sk_model, "sklearn", {}, {}, intent_id=happened
    )
    # One that died before MLflow had it:
    never = events.intent(tenant, EventType.MODEL_REGISTERED, "ghost", {"model": "ghost"})
    # A run ended while the process died before confirming, and a deletion that failed:
    with tracker.start_run("exp", _config(tenant)) as run:
        pass
    ended = events.intent(
        tenant,
        EventType.MODEL_TRAINING_COMPLETED,
        f"run/{run.run_id}",
        {"run_id": run.run_id, "experiment_id": run.experiment_id},
    )
    failed_delete = events.intent(
        tenant, EventType.MODEL_VERSION_DELETED, "churn", {"model": "churn", "version": "1"}
    )
    before = {e["id"] for e in events.feed(tenant, limit=1000)}

    young = Reconciler(events, MlflowIntentProbe(client), grace_s=3600)
    assert young.run() == (0, 0)  # within the grace period nothing is touched
    with tenant_scope(tenant):
        confirmed, dropped = Reconciler(events, MlflowIntentProbe(client), grace_s=0).run()
        # No version yet: its writer may still be uploading, so it waits for as long
        # as a half-registered version may; then it is dropped.
        assert never in {i.id for i in events.intents(0)}
        late = MlflowIntentProbe(client, registration_grace_s=0)
        _, dropped_late = Reconciler(events, late, grace_s=0).run()
    assert confirmed >= 2 and dropped >= 1 and dropped_late >= 1
    new = [e for e in events.feed(tenant, limit=1000) if e["id"] not in before]
    by_id = {e["id"]: e for e in new}
    assert set(by_id) == {happened, ended}
    assert by_id[happened]["data"]["version"] == "1"
    assert by_id[happened]["data"]["artifact_uri"] == "/api/v1/models/churn/versions/1/files"
    assert by_id[ended]["data"]["status"] == "FINISHED"
    assert never not in by_id and failed_delete not in by_id
    settled = {happened, never, ended, failed_delete}
    assert not settled & {i.id for i in events.intents(0)}


def test_a_registration_slower_than_the_reconciler_still_gets_its_one_event(
    services, tenant
) -> None:
    events = services.events
    data = {"model": "slow"}
    with events.pending(tenant, EventType.MODEL_REGISTERED, "slow", data) as p:
        # The writer is still uploading; a reconciler past every grace sees no version.
        with tenant_scope(tenant):
            probe = MlflowIntentProbe(services.backend.client, registration_grace_s=0)
            Reconciler(events, probe, grace_s=0).run()
        assert p.id not in {i.id for i in events.intents(0)}  # dropped
        p.data.update(
            {
                "version": "1",
                "framework": "sklearn",
                "run_id": "r",
                "artifact_uri": "/x",
                "created_by": "me",
            }
        )
    mine = [e for e in events.feed(tenant, limit=1000) if e["id"] == p.id]
    assert len(mine) == 1 and mine[0]["data"]["version"] == "1"
    # Confirming again (a retry) writes nothing more.
    assert events.confirm(p.id, writer=(tenant, EventType.MODEL_REGISTERED)) is False
    assert len([e for e in events.feed(tenant, limit=1000) if e["id"] == p.id]) == 1


def _config(tenant: str):
    from matih_ml.tracking import RunConfig

    return RunConfig(tenant_id=tenant)


@pytest.mark.slow
def test_killing_the_service_before_it_delivered_loses_no_event(tmp_path, sk_model) -> None:
    data = tmp_path / "data"
    services = build_services(embedded_settings(data))
    tenant = services.tenants.create_tenant(new_tenant_id("kill")).tenant_id
    keys = {r: services.api_keys.create(tenant, r, r).secret for r in ("editor", "admin")}
    receiver = Receiver()
    hooks = services.webhooks
    hooks.create(tenant, receiver.url)
    services.db.dispose()
    env = {"MATIH_DATA_DIR": str(data), "MATIH_EVENTS_BACKOFF_S": "0.05"}
    try:
        # This replica makes changes but never delivers (its dispatcher is off) ...
        first = ServeProcess(tmp_path / "first.log", {**env, "MATIH_DISPATCHER": "0"})
        with _client(first.url, keys["editor"]) as c:
            import pickle

            r = c.post(
                "/api/v1/models",
                data={"name": "churn", "framework": "sklearn"},
                files={"file": ("m.pkl", pickle.dumps(sk_model))},
            )
            ok(r, 201)
            ok(c.put("/api/v1/models/churn/stage", json={"version": "1", "stage": "staging"}))
            run_id = ok(c.post("/api/v1/runs", json={"experiment_name": "e"}), 201)["run_id"]
        first.proc.kill()  # ... and dies with SIGKILL, its events undelivered
        first.proc.wait(timeout=30)
        first.stop()
        assert receiver.received == []
        # The next replica delivers all of them.
        second = ServeProcess(tmp_path / "second.log", env)
        try:
            receiver.wait_for(lambda: len(receiver.unique()) == 3, timeout=60)
        finally:
            second.stop()
        types = {(e["type"], e["subject"]) for e in receiver.unique().values()}
        assert types == {
            ("MODEL_REGISTERED", "churn"),
            ("MODEL_STAGE_CHANGED", "churn"),
            ("MODEL_TRAINING_STARTED", f"run/{run_id}"),
        }
    finally:
        receiver.stop()


def _client(url: str, key: str):
    import httpx

    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
