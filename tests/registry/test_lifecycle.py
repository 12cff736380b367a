"""The stage lifecycle: every move, every gate, four eyes, forcing, history, rollback."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import pytest
from sklearn.linear_model import LogisticRegression

from conftest import open_production_gate
from matih_ml.errors import (
    ConflictError,
    ForbiddenError,
    GateFailedError,
    IntegrityError,
    ValidationError,
)
from matih_ml.registry.policy import MetricThreshold, Policy, ProductionGate, StagingGate
from matih_ml.tenancy import tenant_scope

PATHS = {  # how to bring a fresh version to each stage, with open gates
    "development": [],
    "staging": ["staging"],
    "production": ["staging", "production"],
    "archived": ["staging", "production", "archived"],
}
ALLOWED = {
    ("development", "staging"),
    ("staging", "production"),
    ("production", "archived"),
    ("staging", "development"),
    ("production", "development"),
    ("archived", "development"),
}
ALL = [(a, b) for a in PATHS for b in PATHS if a != b]


def reg(registry, tenant, model, xy, name="churn", accuracy=0.9, example=True):
    x, _ = xy
    return registry.register_model_version(
        tenant,
        name,
        model,
        "sklearn",
        {"accuracy": accuracy},
        {},
        input_example=x[:2] if example else None,
    )[1].version


def bring(lifecycle, tenant, version, stage, name="churn"):
    for step in PATHS[stage]:
        lifecycle.transition_stage(tenant, name, version, step, actor="setup")


def mlflow_view(backend, tenant, name, version):
    with tenant_scope(tenant):
        mv = backend.client.get_model_version(name, version)
    return mv.tags.get("matih.stage"), mv.current_stage, sorted(mv.aliases)


@pytest.mark.parametrize(("start", "target"), ALL, ids=[f"{a}->{b}" for a, b in ALL])
def test_every_move_is_allowed_or_refused_as_the_stage_machine_says(
    registry, lifecycle, backend, open_gates, sk_model, xy, start, target
):
    tenant = open_gates
    v = reg(registry, tenant, sk_model, xy)
    bring(lifecycle, tenant, v, start)
    before = lifecycle.history(tenant, "churn")
    if (start, target) in ALLOWED:
        result = lifecycle.transition_stage(tenant, "churn", v, target, actor="alice", reason="r")
        assert lifecycle.stage(tenant, "churn", v).value == target
        last = result.moves[-1]
        assert (last.from_stage, last.to_stage, last.actor, last.reason, last.forced) == (
            start,
            target,
            "alice",
            "r",
            False,
        )
        assert lifecycle.history(tenant, "churn")[-1].id == last.id
        tag, mlflow_stage, aliases = mlflow_view(backend, tenant, "churn", v)
        assert tag == target
        assert (
            mlflow_stage
            == {
                "development": "None",
                "staging": "Staging",
                "production": "Production",
                "archived": "Archived",
            }[target]
        )
        assert aliases == ([target] if target in ("staging", "production") else [])
    else:
        with pytest.raises(ConflictError, match=f"not {target}"):
            lifecycle.transition_stage(tenant, "churn", v, target, actor="alice")
        assert lifecycle.stage(tenant, "churn", v).value == start
        assert lifecycle.history(tenant, "churn") == before


def test_promotion_archives_the_previous_production_version(
    registry, lifecycle, backend, open_gates, sk_model, xy
):
    tenant = open_gates
    v1, v2 = reg(registry, tenant, sk_model, xy), reg(registry, tenant, sk_model, xy)
    bring(lifecycle, tenant, v1, "production")
    lifecycle.transition_stage(tenant, "churn", v2, "staging")
    result = lifecycle.transition_stage(tenant, "churn", v2, "production", actor="bob")
    assert [(m.version, m.from_stage, m.to_stage) for m in result.moves] == [
        (v1, "production", "archived"),
        (v2, "staging", "production"),
    ]
    assert result.model.current_version == v2 and result.model.stage == "production"
    assert mlflow_view(backend, tenant, "churn", v1) == ("archived", "Archived", [])
    assert mlflow_view(backend, tenant, "churn", v2) == ("production", "Production", ["production"])


# ------------------------------------------------------------------ staging gate


def test_staging_gate_thresholds(registry, lifecycle, tenant, sk_model, xy) -> None:
    lifecycle.policies.set(
        tenant,
        Policy(
            staging=StagingGate(
                required_metrics=[
                    MetricThreshold(metric="accuracy", op=">=", value=0.9),
                    MetricThreshold(metric="latency_ms", op="<", value=50),
                ]
            )
        ),
    )
    v = reg(registry, tenant, sk_model, xy, accuracy=0.85)
    with pytest.raises(GateFailedError) as err:
        lifecycle.transition_stage(tenant, "churn", v, "staging")
    reasons = err.value.details["reasons"]
    assert "accuracy 0.85 is not >= 0.9" in reasons
    assert any("latency_ms" in r and "not logged" in r for r in reasons)
    assert lifecycle.stage(tenant, "churn", v).value == "development"
    evidence = lifecycle.gate_evidence(tenant, "churn", v)
    assert [(e["gate"], e["passed"]) for e in evidence] == [("staging", False)]
    assert evidence[0]["reasons"] == reasons
    assert lifecycle.history(tenant, "churn") == []
    # A model override replaces the tenant's policy.
    lifecycle.policies.set(
        tenant,
        Policy(
            staging=StagingGate(
                required_metrics=[MetricThreshold(metric="accuracy", op=">", value=0.8)]
            )
        ),
        "churn",
    )
    lifecycle.transition_stage(tenant, "churn", v, "staging")
    assert [e["passed"] for e in lifecycle.gate_evidence(tenant, "churn", v)] == [False, True]
    assert lifecycle.history(tenant, "churn")[-1].evidence["gate"]["passed"] is True


@pytest.mark.parametrize(
    ("candidate", "tolerance", "passes"),
    [(0.95, 0.0, True), (0.89, 0.0, False), (0.89, 0.02, True)],
)
def test_staging_gate_regression_against_production(
    registry, lifecycle, tenant, sk_model, xy, candidate, tolerance, passes
):
    open_production_gate(lifecycle, tenant)
    lifecycle.policies.set(
        tenant,
        Policy(
            staging=StagingGate(primary_metric="accuracy", max_regression=tolerance),
            production=ProductionGate(require_approval=False),
        ),
    )
    base = reg(registry, tenant, sk_model, xy, accuracy=0.9)
    bring(lifecycle, tenant, base, "production")
    v = reg(registry, tenant, sk_model, xy, accuracy=candidate)
    if passes:
        lifecycle.transition_stage(tenant, "churn", v, "staging")
    else:
        with pytest.raises(GateFailedError, match="regresses against production"):
            lifecycle.transition_stage(tenant, "churn", v, "staging")
    evidence = lifecycle.gate_evidence(tenant, "churn", v)[-1]
    assert evidence["details"]["baseline"] == {"version": base, "value": 0.9}


def test_staging_gate_loads_and_predicts(registry, lifecycle, tenant, sk_model, xy) -> None:
    lifecycle.policies.set(tenant, Policy(staging=StagingGate(prediction_check="required")))
    no_example = reg(registry, tenant, sk_model, xy, example=False)
    with pytest.raises(GateFailedError, match="no input example"):
        lifecycle.transition_stage(tenant, "churn", no_example, "staging")
    good = reg(registry, tenant, sk_model, xy)
    lifecycle.transition_stage(tenant, "churn", good, "staging")
    assert lifecycle.gate_evidence(tenant, "churn", good)[-1]["details"]["prediction_check"] == (
        "passed"
    )
    broken = reg(registry, tenant, sk_model, xy)
    files = Path(registry.get_version(tenant, "churn", broken).artifact_uri)
    (files / "model.skops").write_bytes(b"corrupted")
    # Its files no longer match their signature: refused before the gate loads anything.
    with pytest.raises(IntegrityError, match=r"files changed since it was signed: model\.skops"):
        lifecycle.transition_stage(tenant, "churn", broken, "staging")
    # Unsigned (as versions registered before signing are), the gate loads it and says why.
    with tenant_scope(tenant):
        for tag in ("matih.signature.digest", "matih.signature.key_id"):
            mlflow.MlflowClient().delete_model_version_tag("churn", broken, tag)
    with pytest.raises(GateFailedError, match="does not load and predict"):
        lifecycle.transition_stage(tenant, "churn", broken, "staging")
    # 'if_example' (the default) only loads a version that has no example.
    lifecycle.policies.clear(tenant)
    lifecycle.transition_stage(tenant, "churn", no_example, "staging")


# --------------------------------------------------------------- production gate


def test_four_eyes_approval(registry, lifecycle, tenant, sk_model, xy) -> None:
    v = reg(registry, tenant, sk_model, xy)
    with pytest.raises(ConflictError, match="only a staging version"):
        lifecycle.reviews.request_approval(tenant, "churn", v, actor="alice")
    lifecycle.transition_stage(tenant, "churn", v, "staging")
    with pytest.raises(GateFailedError, match="no approved approval"):
        lifecycle.transition_stage(tenant, "churn", v, "production", actor="alice")
    req = lifecycle.reviews.request_approval(tenant, "churn", v, actor="alice", comment="ship it")
    assert lifecycle.reviews.request_approval(tenant, "churn", v, actor="alice").id == req.id
    assert [a.id for a in lifecycle.reviews.list_approvals(tenant, "pending")] == [req.id]
    with pytest.raises(ForbiddenError, match="four eyes"):
        lifecycle.reviews.decide(tenant, req.id, actor="alice", approve=True)
    with pytest.raises(GateFailedError):
        lifecycle.transition_stage(tenant, "churn", v, "production", actor="alice")
    decided = lifecycle.reviews.decide(tenant, req.id, actor="carol", approve=True)
    assert (decided.status, decided.decided_by) == ("approved", "carol")
    with pytest.raises(ConflictError, match="already approved"):
        lifecycle.reviews.decide(tenant, req.id, actor="dave", approve=False, reason="late")
    result = lifecycle.transition_stage(tenant, "churn", v, "production", actor="alice")
    assert result.moves[-1].evidence["gate"]["details"]["approval"]["approved_by"] == "carol"
    assert lifecycle.reviews.get_approval(tenant, req.id).status == "applied"
    # An approval is used once: after a rollback to development, a new one is needed.
    lifecycle.transition_stage(tenant, "churn", v, "development")
    lifecycle.transition_stage(tenant, "churn", v, "staging")
    with pytest.raises(GateFailedError, match="no approved approval"):
        lifecycle.transition_stage(tenant, "churn", v, "production")


def test_rejection_needs_a_reason_and_keeps_the_gate_shut(
    registry, lifecycle, tenant, sk_model, xy
):
    v = reg(registry, tenant, sk_model, xy)
    lifecycle.transition_stage(tenant, "churn", v, "staging")
    req = lifecycle.reviews.request_approval(tenant, "churn", v, actor="alice")
    with pytest.raises(ValidationError, match="reason"):
        lifecycle.reviews.decide(tenant, req.id, actor="carol", approve=False)
    rejected = lifecycle.reviews.decide(
        tenant, req.id, actor="carol", approve=False, reason="drift on segment B"
    )
    assert (rejected.status, rejected.reason) == ("rejected", "drift on segment B")
    with pytest.raises(GateFailedError):
        lifecycle.transition_stage(tenant, "churn", v, "production")


def test_evaluation_evidence(registry, lifecycle, tenant, sk_model, xy) -> None:
    lifecycle.policies.set(
        tenant,
        Policy(
            production=ProductionGate(
                require_evaluation=True, evaluation_kinds=["shadow"], require_approval=False
            )
        ),
    )
    v = reg(registry, tenant, sk_model, xy)
    lifecycle.transition_stage(tenant, "churn", v, "staging")
    lifecycle.reviews.record_evaluation(
        tenant,
        "churn",
        v,
        kind="shadow",
        passed=False,
        metrics={"agreement": 0.7},
        actor="pipeline",
    )
    lifecycle.reviews.record_evaluation(
        tenant, "churn", v, kind="ab", passed=True, actor="pipeline"
    )
    with pytest.raises(GateFailedError, match="no passed shadow evaluation"):
        lifecycle.transition_stage(tenant, "churn", v, "production")
    good = lifecycle.reviews.record_evaluation(
        tenant,
        "churn",
        v,
        kind="shadow",
        passed=True,
        metrics={"agreement": 0.99},
        actor="pipeline",
    )
    result = lifecycle.transition_stage(tenant, "churn", v, "production")
    assert result.moves[-1].evidence["gate"]["details"]["evaluation"]["id"] == good.id
    assert len(lifecycle.reviews.list_evaluations(tenant, "churn", v)) == 3
    with pytest.raises(ValidationError, match="kind"):
        lifecycle.reviews.record_evaluation(tenant, "churn", v, kind="canary", passed=True)
    with pytest.raises(ValidationError, match="finite"):
        lifecycle.reviews.record_evaluation(
            tenant, "churn", v, kind="ab", passed=True, metrics={"x": float("nan")}
        )


def test_forced_moves_need_a_reason_and_are_marked(registry, lifecycle, tenant, sk_model, xy):
    v = reg(registry, tenant, sk_model, xy)
    lifecycle.transition_stage(tenant, "churn", v, "staging")
    with pytest.raises(ValidationError, match="reason"):
        lifecycle.transition_stage(tenant, "churn", v, "production", force=True)
    result = lifecycle.transition_stage(
        tenant, "churn", v, "production", actor="root", force=True, reason="hotfix for incident 42"
    )
    move = result.moves[-1]
    assert move.forced and move.reason == "hotfix for incident 42"
    assert move.evidence["gate"]["passed"] is False
    # Forcing never skips the stage machine itself.
    v2 = reg(registry, tenant, sk_model, xy)
    with pytest.raises(ConflictError):
        lifecycle.transition_stage(tenant, "churn", v2, "production", force=True, reason="x")


# ------------------------------------------------------- history, time, rollback


def test_history_and_production_at_a_time(registry, lifecycle, open_gates, sk_model, xy):
    tenant = open_gates
    v1, v2 = reg(registry, tenant, sk_model, xy), reg(registry, tenant, sk_model, xy)
    t0 = datetime.now(UTC)
    time.sleep(0.01)
    bring(lifecycle, tenant, v1, "production")
    t1 = datetime.now(UTC)
    time.sleep(0.01)
    lifecycle.transition_stage(tenant, "churn", v2, "staging")
    lifecycle.transition_stage(tenant, "churn", v2, "production")
    t2 = datetime.now(UTC)
    time.sleep(0.01)
    lifecycle.transition_stage(tenant, "churn", v2, "archived")
    t3 = datetime.now(UTC)
    assert lifecycle.production_at(tenant, "churn", t0) is None
    assert lifecycle.production_at(tenant, "churn", t1) == v1
    assert lifecycle.production_at(tenant, "churn", t2) == v2
    assert lifecycle.production_at(tenant, "churn", t3) is None
    assert lifecycle.production_at(tenant, "churn", t3 + timedelta(days=1)) is None
    moves = [(m.version, m.from_stage, m.to_stage) for m in lifecycle.history(tenant, "churn")]
    assert moves == [
        (v1, "development", "staging"),
        (v1, "staging", "production"),
        (v2, "development", "staging"),
        (v1, "production", "archived"),
        (v2, "staging", "production"),
        (v2, "production", "archived"),
    ]


def test_rollback_in_one_call(registry, lifecycle, backend, open_gates, sk_model, xy) -> None:
    tenant = open_gates
    x, y = xy
    flipped = LogisticRegression().fit(x, 1 - y)
    v1 = reg(registry, tenant, sk_model, xy)
    with pytest.raises(ConflictError, match="no version in production"):
        lifecycle.rollback(tenant, "churn")
    bring(lifecycle, tenant, v1, "production")
    with pytest.raises(ConflictError, match="no earlier production version"):
        lifecycle.rollback(tenant, "churn")
    v2 = registry.register_model_version(
        tenant, "churn", flipped, "sklearn", {}, {}, input_example=x[:2]
    )[1].version
    bring(lifecycle, tenant, v2, "production")

    def serving() -> list:
        with tenant_scope(tenant):
            return [
                list(mlflow.pyfunc.load_model(uri).predict(x))
                for uri in ("models:/churn/Production", "models:/churn@production")
            ]

    assert serving() == [list(flipped.predict(x))] * 2
    result = lifecycle.rollback(tenant, "churn", actor="oncall", reason="bad predictions")
    assert [(m.version, m.from_stage, m.to_stage) for m in result.moves] == [
        (v2, "production", "development"),
        (v1, "archived", "production"),
    ]
    assert all(m.reason == "bad predictions" and m.actor == "oncall" for m in result.moves)
    assert (result.model.current_version, result.model.stage) == (v1, "production")
    assert lifecycle.stage(tenant, "churn", v2).value == "development"
    assert serving() == [list(sk_model.predict(x))] * 2
    assert lifecycle.production_at(tenant, "churn", datetime.now(UTC)) == v1


def test_land_is_idempotent_and_goes_through_gates(registry, lifecycle, tenant, sk_model, xy):
    v = reg(registry, tenant, sk_model, xy)
    for _ in range(2):
        assert lifecycle.land(tenant, "churn", v, "staging").stage == "staging"
    assert len(lifecycle.history(tenant, "churn")) == 1
    with pytest.raises(GateFailedError):  # production needs an approval by default
        lifecycle.land(tenant, "churn", v, "production")
    with pytest.raises(ValidationError):
        lifecycle.land(tenant, "churn", v, "archived")


def test_lifecycle_of_another_tenant_is_not_found(
    registry, lifecycle, tenant, other_tenant, sk_model, xy
):
    from matih_ml.errors import NotFoundError

    v = reg(registry, tenant, sk_model, xy)
    lifecycle.transition_stage(tenant, "churn", v, "staging")
    req = lifecycle.reviews.request_approval(tenant, "churn", v, actor="alice")
    for call in (
        lambda: lifecycle.transition_stage(other_tenant, "churn", v, "development"),
        lambda: lifecycle.history(other_tenant, "churn"),
        lambda: lifecycle.rollback(other_tenant, "churn"),
        lambda: lifecycle.reviews.request_approval(other_tenant, "churn", v, actor="eve"),
        lambda: lifecycle.reviews.decide(other_tenant, req.id, actor="eve", approve=True),
        lambda: lifecycle.reviews.get_approval(other_tenant, req.id),
        lambda: lifecycle.reviews.record_evaluation(
            other_tenant, "churn", v, kind="ab", passed=True
        ),
        lambda: lifecycle.production_at(other_tenant, "churn", datetime.now(UTC)),
    ):
        with pytest.raises(NotFoundError):
            call()
    assert lifecycle.reviews.list_approvals(other_tenant) == []
    assert lifecycle.reviews.get_approval(tenant, req.id).status == "pending"


def test_registering_one_run_from_many_threads_makes_one_version(
    lifecycle, tracker, tenant, saved_sklearn_model_dir
):
    from concurrent.futures import ThreadPoolExecutor

    from matih_ml.tracking import RunConfig

    with tracker.start_run("train", RunConfig(tenant_id=tenant)) as run:
        run.log_artifact(saved_sklearn_model_dir, "model")
    with ThreadPoolExecutor(8) as pool:
        versions = list(
            pool.map(
                lambda _: lifecycle.register_from_run(tenant, "churn", run.run_id).version, range(8)
            )
        )
    assert versions == ["1"] * 8


def test_both_loader_uris_follow_every_move(registry, lifecycle, open_gates, sk_model, xy):
    tenant = open_gates
    x, y = xy
    models = [sk_model, LogisticRegression().fit(x, 1 - y)]
    versions = [
        registry.register_model_version(tenant, "churn", m, "sklearn", {}, {}, input_example=x[:2])[
            1
        ].version
        for m in models
    ]

    def loads(expected) -> None:
        for uri in ("models:/churn/Production", "models:/churn@production"):
            with tenant_scope(tenant):
                if expected is None:
                    with pytest.raises(Exception):  # noqa: B017 - MLflow's own "not found"
                        mlflow.pyfunc.load_model(uri)
                else:
                    got = list(mlflow.pyfunc.load_model(uri).predict(x))
                    assert got == list(expected.predict(x)), uri

    loads(None)
    bring(lifecycle, tenant, versions[0], "production")
    loads(models[0])
    bring(lifecycle, tenant, versions[1], "production")
    loads(models[1])
    lifecycle.rollback(tenant, "churn")
    loads(models[0])
    lifecycle.transition_stage(tenant, "churn", versions[0], "archived")
    loads(None)


def test_deleting_goes_through_the_lock_and_forgets_stages(
    registry, lifecycle, open_gates, sk_model, xy
):
    tenant = open_gates
    v = reg(registry, tenant, sk_model, xy)
    bring(lifecycle, tenant, v, "production")
    with pytest.raises(ConflictError, match="in production"):
        lifecycle.delete_version(tenant, "churn", v)
    with pytest.raises(ConflictError, match="in production"):
        lifecycle.delete_model(tenant, "churn")
    lifecycle.transition_stage(tenant, "churn", v, "development")
    v2 = reg(registry, tenant, sk_model, xy)
    lifecycle.transition_stage(tenant, "churn", v2, "staging")
    lifecycle.delete_version(tenant, "churn", v2)
    lifecycle.delete_model(tenant, "churn")
    # A re-created model's versions start in development, whatever MLflow numbers them.
    again = reg(registry, tenant, sk_model, xy)
    assert lifecycle.stage(tenant, "churn", again).value == "development"
    assert registry.get_model(tenant, "churn").versions == [again]
    # The history of the deleted incarnation is kept: it records what served when.
    assert {m.version for m in lifecycle.history(tenant, "churn")} >= {v, v2}
