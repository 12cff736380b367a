"""The staging gate loads and scores a version before the model's lock is taken (issue 19).

On SQLite the model's lock is the database's write lock: a gate that loaded a slow
model under it held up every promotion of every model on the database. The gate now
runs first, and what it checked is checked again under the lock: a version whose stage,
production baseline or policy changed meanwhile is refused with a 409, and nothing of
the stale gate is written.
"""

from __future__ import annotations

import textwrap
import threading
from collections.abc import Callable, Iterator
from typing import Any

import mlflow.pyfunc
import pandas as pd
import pytest

from conftest import embedded_settings, new_tenant_id
from matih_ml.errors import ConflictError
from matih_ml.events.catalog import EventType
from matih_ml.registry.policy import Policy, ProductionGate, StagingGate
from matih_ml.runtime.loader import SavedModelFolder

SLOW_LOADER = textwrap.dedent(
    """
    import time

    class SlowModel:
        def predict(self, frame, *args, **kwargs):
            return [float(r.sum()) for r in frame.to_numpy(dtype=float)]

    def _load_pyfunc(path):
        time.sleep(2)  # a model that takes seconds to load
        return SlowModel()
    """
)
# A held gate gives up after this long, so that a regression fails instead of hanging.
HOLD_LIMIT_S = 120


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory) -> SavedModelFolder:
    """A code-bearing pyfunc (loaded only in the sandbox) whose load sleeps, with an
    input example, so the staging gate loads and scores it."""
    root = tmp_path_factory.mktemp("slow-model")
    (root / "slow_loader.py").write_text(SLOW_LOADER)
    mlflow.pyfunc.save_model(
        str(root / "model"),
        loader_module="slow_loader",
        code_paths=[str(root / "slow_loader.py")],
        input_example=pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}),
        pip_requirements=["scikit-learn"],
    )
    return SavedModelFolder(root / "model", "regression")


class HeldGate:
    """Wraps the registry's prediction check: the check of one version runs for real
    (the slow model loads and scores in the sandbox), then says it is holding and waits
    for :meth:`release`; every other version's check passes straight through."""

    def __init__(self, monkeypatch, registry, model: str, version: str) -> None:
        self.holding = threading.Event()
        self.released = threading.Event()
        self.returned = threading.Event()
        self.during: Callable[[], None] | None = None  # run while holding, instead of waiting
        real = registry.prediction_check

        def check(tenant_id: str, model_id: str, v: str, **kwargs: Any) -> list[str]:
            reasons = real(tenant_id, model_id, v, **kwargs)
            if (model_id, str(v)) == (model, version) and not self.holding.is_set():
                self.holding.set()  # first: a check that `during` causes passes through
                if self.during is not None:
                    self.during()
                else:
                    self.released.wait(HOLD_LIMIT_S)
                self.returned.set()
            return reasons

        monkeypatch.setattr(registry, "prediction_check", check)

    def release(self) -> None:
        self.released.set()


def _register_sklearn(services, tenant: str, name: str, sk_model, xy, accuracy=0.9) -> str:
    x, _ = xy
    return services.registry.register_model_version(
        tenant, name, sk_model, "sklearn", {"accuracy": accuracy}, {}, input_example=x[:2]
    )[1].version


def _stage_events(services, tenant: str) -> list[dict]:
    return services.registry.events.feed(tenant, types=[EventType.MODEL_STAGE_CHANGED], limit=1000)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.slow])]
)
def on_database(request, tmp_path) -> Iterator[tuple[Any, str]]:
    """(services, a fresh tenant): the session's embedded SQLite store, or PostgreSQL."""
    if request.param == "sqlite":
        services = request.getfixturevalue("services")
        request.getfixturevalue("backend")
        yield services, services.tenants.create_tenant(new_tenant_id("gate")).tenant_id
        return
    from matih_ml.services import build_services

    url = request.getfixturevalue("postgres_database")
    settings = embedded_settings(tmp_path / "data").model_copy(
        update={
            "tracking_uri_env": url,
            "artifact_root_env": str(tmp_path / "artifacts"),
            "auto_migrate_env": True,
            "training_workers": 0,
        }
    )
    services = build_services(settings)
    assert services.db.url.startswith("postgresql")
    try:
        yield services, services.tenants.create_tenant(new_tenant_id("gate")).tenant_id
    finally:
        services.runtime.close()
        services.db.dispose()


def test_a_slow_staging_gate_holds_up_no_other_promotion(
    on_database, monkeypatch, slow_model, sk_model, xy
) -> None:
    services, tenant = on_database
    lifecycle = services.lifecycle
    lifecycle.policies.set(tenant, Policy(production=ProductionGate(require_approval=False)))
    _, slow = services.registry.register_model_version(
        tenant, "slow", slow_model, "sklearn", {"accuracy": 0.9}, {}
    )
    other_models = [_register_sklearn(services, tenant, "quick", sk_model, xy) for _ in range(2)]
    same_model = _register_sklearn(services, tenant, "slow", sk_model, xy)
    gate = HeldGate(monkeypatch, services.registry, "slow", slow.version)

    slow_move: dict[str, Any] = {}

    def promote_slow() -> None:
        try:
            slow_move["result"] = lifecycle.transition_stage(
                tenant, "slow", slow.version, "staging", actor="a"
            )
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            slow_move["error"] = exc

    quick_done = threading.Event()
    quick: dict[str, Any] = {"moves": []}

    def promote_others() -> None:
        try:
            for name, version in [("quick", v) for v in other_models] + [("slow", same_model)]:
                for stage in ("staging", "production"):
                    lifecycle.transition_stage(tenant, name, version, stage, actor="b")
                    quick["moves"].append((name, version, stage))
            # What the slow gate was doing when the last of these moves returned.
            quick["gate_still_held"] = not gate.returned.is_set()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            quick["error"] = exc
        finally:
            quick_done.set()

    a = threading.Thread(target=promote_slow)
    a.start()
    b = threading.Thread(target=promote_others)
    try:
        assert gate.holding.wait(HOLD_LIMIT_S), slow_move
        b.start()
        # Nothing here waits for the slow gate to end: that comes only after release().
        assert quick_done.wait(HOLD_LIMIT_S), "the other promotions waited for the slow gate"
        assert "error" not in quick, quick
        assert quick["gate_still_held"] and a.is_alive() and not gate.returned.is_set()
        assert len(quick["moves"]) == 6
    finally:
        gate.release()
        a.join(HOLD_LIMIT_S)
        if b.ident is not None:
            b.join(HOLD_LIMIT_S)
    assert "error" not in slow_move, slow_move
    assert [(m.version, m.to_stage) for m in slow_move["result"].moves] == [
        (slow.version, "staging")
    ]
    assert lifecycle.stage(tenant, "slow", slow.version).value == "staging"
    assert lifecycle.stage(tenant, "slow", same_model).value == "production"
    evidence = lifecycle.gate_evidence(tenant, "slow", slow.version)
    assert [(e["gate"], e["passed"], e["details"]["prediction_check"]) for e in evidence] == [
        ("staging", True, "passed")
    ]
    # One history row and one event per move, the slow one last.
    history = lifecycle.history(tenant, "slow")
    assert [(m.version, m.to_stage) for m in history] == [
        (same_model, "staging"),
        (same_model, "production"),
        (slow.version, "staging"),
    ]
    events = [
        (e["data"]["version"], e["data"]["to_stage"])
        for e in _stage_events(services, tenant)
        if e["subject"] == "slow"
    ]
    assert events == [(m.version, m.to_stage) for m in history]


def test_a_version_moved_while_its_gate_ran_is_refused_and_nothing_is_written(
    services, backend, lifecycle, tenant, monkeypatch, sk_model, xy
) -> None:
    lifecycle.policies.set(tenant, Policy(production=ProductionGate(require_approval=False)))
    v = _register_sklearn(services, tenant, "churn", sk_model, xy)
    gate = HeldGate(monkeypatch, services.registry, "churn", v)

    def meanwhile() -> None:
        # Another request takes the version to production while this gate scores it.
        lifecycle.transition_stage(tenant, "churn", v, "staging", actor="other")
        lifecycle.transition_stage(tenant, "churn", v, "production", actor="other")

    gate.during = meanwhile
    with pytest.raises(ConflictError) as err:
        lifecycle.transition_stage(tenant, "churn", v, "staging", actor="late")
    assert err.value.details == {"from": "production", "to": "staging"}
    assert gate.returned.is_set()
    assert lifecycle.stage(tenant, "churn", v).value == "production"
    # Only the other request's moves, its gate's evidence, and its events.
    assert [(m.actor, m.to_stage) for m in lifecycle.history(tenant, "churn")] == [
        ("other", "staging"),
        ("other", "production"),
    ]
    assert [e["gate"] for e in lifecycle.gate_evidence(tenant, "churn", v)] == [
        "staging",
        "production",
    ]
    assert [
        (e["data"]["actor"], e["data"]["to_stage"]) for e in _stage_events(services, tenant)
    ] == [
        ("other", "staging"),
        ("other", "production"),
    ]


@pytest.mark.parametrize("compared", [True, False], ids=["primary-metric", "no-primary-metric"])
def test_a_new_production_version_while_the_gate_ran(
    services, backend, lifecycle, tenant, monkeypatch, sk_model, xy, compared
) -> None:
    """The gate compared the candidate with production: if production changed
    meanwhile, the comparison is stale (409); a gate that compared nothing stands."""
    lifecycle.policies.set(
        tenant,
        Policy(
            staging=StagingGate(primary_metric="accuracy" if compared else None),
            production=ProductionGate(require_approval=False),
        ),
    )
    v1, v2, v3 = (_register_sklearn(services, tenant, "churn", sk_model, xy) for _ in range(3))
    for step in ("staging", "production"):
        lifecycle.transition_stage(tenant, "churn", v1, step)
    lifecycle.transition_stage(tenant, "churn", v2, "staging")
    gate = HeldGate(monkeypatch, services.registry, "churn", v3)
    gate.during = lambda: lifecycle.transition_stage(tenant, "churn", v2, "production")
    before = len(_stage_events(services, tenant))
    if compared:
        with pytest.raises(ConflictError, match="production") as err:
            lifecycle.transition_stage(tenant, "churn", v3, "staging")
        assert err.value.details["production"] == {"checked": v1, "now": v2}
        assert lifecycle.stage(tenant, "churn", v3).value == "development"
        assert lifecycle.gate_evidence(tenant, "churn", v3) == []
        assert lifecycle.history(tenant, "churn")[-1].version == v2
        assert len(_stage_events(services, tenant)) == before + 2  # v1 out, v2 in
    else:
        moved = lifecycle.transition_stage(tenant, "churn", v3, "staging")
        assert [(m.version, m.to_stage) for m in moved.moves] == [(v3, "staging")]
        assert len(_stage_events(services, tenant)) == before + 3


def test_a_policy_change_while_the_gate_ran_is_refused(
    services, backend, lifecycle, tenant, monkeypatch, sk_model, xy
) -> None:
    v = _register_sklearn(services, tenant, "churn", sk_model, xy)
    gate = HeldGate(monkeypatch, services.registry, "churn", v)
    stricter = Policy(staging=StagingGate(prediction_check="required"))
    gate.during = lambda: lifecycle.policies.set(tenant, stricter, "churn")
    with pytest.raises(ConflictError, match="policy"):
        lifecycle.transition_stage(tenant, "churn", v, "staging")
    assert lifecycle.stage(tenant, "churn", v).value == "development"
    assert lifecycle.gate_evidence(tenant, "churn", v) == []
    assert lifecycle.history(tenant, "churn") == []
    assert _stage_events(services, tenant) == []
    # Asked again, the move runs the gate under the new policy.
    lifecycle.transition_stage(tenant, "churn", v, "staging")
    assert lifecycle.stage(tenant, "churn", v).value == "staging"
