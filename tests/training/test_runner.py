"""Training jobs end to end: a real local Ray Tune, real sklearn, the session's SQLite store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from conftest import open_production_gate
from matih_ml.errors import ValidationError
from matih_ml.job_spec import validate_job
from matih_ml.store import lifecycle_store
from matih_ml.training.context import JobContext
from matih_ml.training.estimators import ROUNDS
from matih_ml.training.runner import run_job

FEATURES = [f"f{i}" for i in range(8)]


@pytest.fixture
def table(tmp_path: Path) -> Path:
    # The label is in f0 - f1 while f0 and f1 share a loud noise: LogisticRegression
    # finds f0 - f1 (~0.97), but C=1e-6 shrinks it to the class-mean direction, which
    # sees mostly the noise (~0.6): far enough behind for ASHA to stop it.
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 600)
    signal = rng.normal(2 * y - 1, 0.5)
    noise = rng.normal(0, 5, 600)
    x = np.column_stack([signal + noise, noise, rng.normal(size=(600, len(FEATURES) - 2))])
    frame = pd.DataFrame(x, columns=FEATURES).assign(label=y)
    frame.to_csv(tmp_path / "churn.csv", index=False)
    return tmp_path


def job(**overrides) -> dict:
    body = {
        "name": "nightly",
        "model_name": "churn",
        "trainer": {"kind": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"},
        "data": {"kind": "table", "path": "churn.csv", "target": "label", "seed": 7},
        "evaluation": {"primary_metric": "accuracy"},
        "tags": {"team": "growth"},
    }
    return {**body, **overrides}


def stage_of(services, tenant: str, model: str, version: str) -> str:
    with services.db.uow(tenant=tenant) as s:
        return lifecycle_store.stages(s, tenant, model)[int(version)]


@pytest.mark.slow
def test_tuning_job_registers_stages_and_nests_trials(services, tenant, table, local_ray):
    spec = validate_job(
        job(
            tuning={
                # C=1e-6 is hopeless here: ASHA stops such a trial at a rung once a
                # C=1 trial has reported there (the seeded sampler draws both kinds).
                "search_space": {"C": {"choice": [1e-6, 1e-6, 1.0]}},
                "num_samples": 6,
                "metric": "accuracy",
                "mode": "max",
                "scheduler": "asha",
                "grace_period": 1,
            }
        )
    )

    result = run_job(services, tenant, spec, data_root=table, actor="alice")

    assert result.status == "registered", result.reason
    assert result.registered_version == "1" and result.stage == "staging"
    assert stage_of(services, tenant, "churn", "1") == "staging"
    assert result.value is not None and result.value > 0.8
    assert result.params["C"] == 1.0
    assert len(result.trials) == 6
    assert all(t.error is None and 1 <= t.iterations <= ROUNDS for t in result.trials)
    stopped = [t for t in result.trials if t.early_stopped]
    assert stopped, [(t.config, t.iterations) for t in result.trials]
    assert all(t.config["C"] == 1e-6 for t in stopped)
    assert any(t.iterations == ROUNDS and not t.early_stopped for t in result.trials)

    parent = services.runs.get_run(tenant, result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["team"] == "growth"
    assert parent.data.tags["matih.job_id"] == "nightly"
    assert parent.data.metrics["accuracy"] == pytest.approx(result.value)
    runs = services.runs.list_runs(tenant, parent.info.experiment_id).items
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == result.parent_run_id]
    assert sorted(r.info.run_id for r in nested) == sorted(t.run_id for t in result.trials)
    for trial in result.trials:
        history = services.runs.metric_history(tenant, trial.run_id, "accuracy").items
        assert [m.step for m in history] == list(range(1, trial.iterations + 1))
        state = "EARLY_STOPPED" if trial.early_stopped else "TERMINATED"
        assert services.runs.get_run(tenant, trial.run_id).data.tags["trial_state"] == state


def _production(services, tenant: str, table: Path, c: float) -> LogisticRegression:
    """Version 1 of churn, in production: a LogisticRegression with this C."""
    open_production_gate(services.lifecycle, tenant)
    frame = pd.read_csv(table / "churn.csv")
    model = LogisticRegression(C=c).fit(frame[FEATURES], frame["label"])
    services.registry.register_model(
        tenant, "churn", model, "sklearn", {"accuracy": 0.5}, {}, input_example=frame[FEATURES][:5]
    )
    for stage in ("staging", "production"):
        services.lifecycle.transition_stage(tenant, "churn", "1", stage, actor="admin")
    return model


def test_a_model_that_beats_production_is_registered_and_staged(services, tenant, table):
    _production(services, tenant, table, c=1e-6)  # the weak one is live
    spec = validate_job(job())  # C=1: finds the signal

    result = run_job(services, tenant, spec, data_root=table, actor="carol")

    assert result.status == "registered", result.reason
    assert result.baseline_version == "1" and result.registered_version == "2"
    assert result.value > result.baseline_value + 0.2
    assert result.reason.startswith(f"registered v2: accuracy {result.value:.4g} (baseline v1 ")
    assert result.stage == "staging" and stage_of(services, tenant, "churn", "2") == "staging"
    assert stage_of(services, tenant, "churn", "1") == "production"  # the gates decide the rest


def test_weaker_model_than_production_is_not_registered(services, tenant, table):
    open_production_gate(services.lifecycle, tenant)
    frame = pd.read_csv(table / "churn.csv")
    strong = LogisticRegression(C=1.0)
    strong.fit(frame[FEATURES], frame["label"])
    services.registry.register_model(
        tenant,
        "churn",
        strong,
        "sklearn",
        {"accuracy": 0.95},
        {},
        input_example=frame[FEATURES][:5],
    )
    for stage in ("staging", "production"):
        services.lifecycle.transition_stage(tenant, "churn", "1", stage, actor="admin")
    spec = validate_job(
        job(
            trainer={
                "kind": "sklearn",
                "estimator": "sklearn.linear_model.LogisticRegression",
                "params": {"C": 1e-6},
            }
        )
    )

    result = run_job(services, tenant, spec, data_root=table, actor="bob")

    assert result.status == "not_registered"
    assert "baseline" in result.reason and "v1" in result.reason, result.reason
    assert result.baseline_version == "1"
    assert result.value is not None and result.baseline_value is not None
    assert result.value < result.baseline_value
    assert result.registered_version is None and result.trials == []
    assert [v.version for v in services.registry.list_versions(tenant, "churn")] == ["1"]
    parent = services.runs.get_run(tenant, result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["baseline_accuracy"] == pytest.approx(result.baseline_value)


def test_data_a_job_cannot_read_fails_the_job_and_its_run(services, tenant, table):
    spec = validate_job(job(data={**job()["data"], "path": "s3://bucket/churn.csv"}))
    with pytest.raises(ValidationError, match="data root") as exc:
        run_job(services, tenant, spec, data_root=table)
    assert exc.value.details["field"] == "data.path"
    # A tenant without a Feast repo: a clear error, not Feast's traceback.
    pd.DataFrame(
        {"id": range(20), "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC"), "y": 0}
    ).to_csv(table / "e.csv", index=False)
    feast = validate_job(
        job(data={"kind": "feast", "features": ["v:f"], "entity_path": "e.csv", "target": "y"})
    )
    with pytest.raises(ValidationError) as exc:
        run_job(services, tenant, feast, data_root=table)
    assert exc.value.details["field"] == "data"
    runs = services.runs.list_runs(
        tenant, services.runs.get_run(tenant, _last_job_run(services, tenant)).info.experiment_id
    ).items
    assert [r.info.status for r in runs] == ["FAILED", "FAILED"]


def _last_job_run(services, tenant: str) -> str:
    started = [
        e for e in services.events.feed(tenant, limit=1000) if e["type"] == "MODEL_TRAINING_STARTED"
    ]
    return started[-1]["data"]["run_id"]


def test_an_entry_point_trainer_runs_and_registers(services, tenant, table):
    lines: list[str] = []
    allowed = {"sample_trainers:forest", "sample_trainers:not_a_model"}
    body = job(trainer={"kind": "entry_point", "entry_point": "sample_trainers:forest"})
    body["trainer"]["params"] = {"trees": 30}
    spec = validate_job(body, entry_points=allowed)

    result = run_job(
        services, tenant, spec, data_root=table, context=JobContext("job-ep", emit=lines.append)
    )

    assert result.status == "registered", result.reason
    assert "fitting 30 trees" in lines
    version = services.registry.get_version(tenant, "churn", result.registered_version)
    assert version.tags["job_id"] == "job-ep"

    bad = validate_job(
        job(trainer={"kind": "entry_point", "entry_point": "sample_trainers:not_a_model"}),
        entry_points=allowed,
    )
    with pytest.raises(ValidationError, match="returned str, not a fitted scikit-learn"):
        run_job(services, tenant, bad, data_root=table)
    with pytest.raises(ValidationError, match="allow-list"):
        validate_job(body)  # not allowed by this operator
