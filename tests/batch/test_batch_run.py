"""Batch jobs run by an executor on local Ray: every prediction is the model's own, the
version is resolved once, a cancel leaves nothing behind."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from batch.helpers import FEATURES, frame, log_lines, start_executor, tenant_root, wait
from matih_ml.training.executor import JobExecutor

pytestmark = pytest.mark.usefixtures("executor")


@pytest.fixture(scope="module")
def executor(services) -> Iterator[JobExecutor]:
    ex = start_executor(services)
    yield ex
    ex.stop()


def _production(services, tenant: str, name: str, model, example: pd.DataFrame) -> str:
    md = services.registry.register_model(
        tenant, name, model, "sklearn", {}, {}, input_example=example
    )
    version = md.current_version or "1"
    services.lifecycle.transition_stage(tenant, name, version, "staging")
    services.lifecycle.transition_stage(
        tenant, name, version, "production", force=True, reason="test", actor="admin"
    )
    return version


@pytest.mark.slow
def test_200000_rows_are_scored_as_the_model_scores_them(services, tenant) -> None:
    table = frame(200_000)
    model = LogisticRegression().fit(table[FEATURES], (table.f0 + table.f1 > 0).astype(int))
    version = _production(services, tenant, "churn", model, table[FEATURES].iloc[:50])
    table.to_parquet(tenant_root(services, tenant) / "customers.parquet", index=False)

    job = services.jobs.submit_batch(
        tenant,
        {
            "model": "churn",
            "input": {"path": "customers.parquet"},
            "key_columns": ["customer_id"],
            "output": {"path": "scores/today.parquet"},
        },
        actor="ci",
    )
    done = wait(services, tenant, job.job_id)

    assert done.status == "succeeded", (done.reason, log_lines(services, tenant, job.job_id))
    out = pd.read_parquet(tenant_root(services, tenant) / "scores" / "today.parquet")
    assert list(out.columns) == ["customer_id", "prediction", "model_version"]
    assert len(out) == 200_000
    out = out.sort_values("customer_id").reset_index(drop=True)
    assert (out.customer_id.to_numpy() == table.customer_id.to_numpy()).all()
    assert np.array_equal(out.prediction.to_numpy(), model.predict(table[FEATURES]))
    assert set(out.model_version) == {version}
    assert done.result == {
        "version": version,
        "rows": 200_000,
        "output": "scores/today.parquet",
        "columns": ["customer_id", "prediction", "model_version"],
        "input_columns": FEATURES,
        "seconds": done.result["seconds"],
    }
    assert done.progress == {"rows_done": 200_000, "rows_total": 200_000, "version": version}
    lines = log_lines(services, tenant, job.job_id)
    assert any(line.startswith(f"resolved churn production to v{version}") for line in lines)
    events = [e for e in services.events.feed(tenant, limit=1000) if e["type"].startswith("BATCH_")]
    assert [e["type"] for e in events] == ["BATCH_INFERENCE_STARTED", "BATCH_INFERENCE_COMPLETED"]
    assert events[0]["data"] == {
        "job_id": job.job_id,
        "model": "churn",
        "version": version,
        "input": "customers.parquet",
        "rows_total": 200_000,
    }
    assert events[1]["data"]["rows"] == 200_000
    assert events[1]["data"]["output"] == "scores/today.parquet"
    # The input's sample reached the version's drift monitoring.
    window = services.serving.live.snapshot((tenant, "churn", version))
    assert window is not None and len(window.rows) == 1000 and window.requests == 0
    assert set(window.rows[0]) == set(FEATURES)
    leftovers = [p.name for p in (tenant_root(services, tenant) / "scores").iterdir()]
    assert leftovers == ["today.parquet"]


def _register(services, tenant: str, name: str, model, framework: str, **options) -> str:
    _, version = services.registry.register_model_version(
        tenant, name, model, framework, {}, {}, **options
    )
    return version.version


def _promote(services, tenant: str, name: str, version: str) -> None:
    services.lifecycle.transition_stage(tenant, name, version, "staging")
    services.lifecycle.transition_stage(
        tenant, name, version, "production", force=True, reason="test", actor="admin"
    )


def _net():
    import torch

    torch.manual_seed(0)
    # Library classes only: a pickled module of them unpickles in the sandbox too.
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))


def _torch_scores(net, table: pd.DataFrame) -> np.ndarray:
    import torch

    with torch.no_grad():
        return net(torch.from_numpy(table[FEATURES].to_numpy(np.float32))).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("pickled", [False, True], ids=["pt2-in-process", "pickle-in-sandbox"])
def test_a_pytorch_model_scores_one_column_per_output(services, tenant, pickled) -> None:
    net = _net().eval()
    table = frame(5_000, seed=3)
    example = {} if pickled else {"input_example": table[FEATURES].to_numpy(np.float32)[:5]}
    version = _register(services, tenant, "prices", net, "pytorch", **example)
    table.to_csv(tenant_root(services, tenant) / "prices.csv", index=False)

    job = services.jobs.submit_batch(
        tenant,
        {
            "model": "prices",
            "version": version,
            "input": {"path": "prices.csv"},
            "columns": FEATURES,
            "key_columns": ["customer_id"],
            "output": {"path": "out"},
            "batch_size": 1000,
        },
    )
    done = wait(services, tenant, job.job_id)

    lines = log_lines(services, tenant, job.job_id)
    assert done.status == "succeeded", (done.reason, lines)
    where = "in the sandbox" if pickled else "in process"
    assert any(where in line for line in lines if line.startswith("scoring "))
    out = pd.read_parquet(tenant_root(services, tenant) / "out" / "part-00000.parquet")
    assert list(out.columns) == ["customer_id", "prediction_0", "prediction_1", "model_version"]
    out = out.sort_values("customer_id").reset_index(drop=True)
    expected = _torch_scores(net, table)
    np.testing.assert_allclose(
        out[["prediction_0", "prediction_1"]].to_numpy(), expected, rtol=1e-5
    )
    assert done.result["rows"] == 5_000
    # A CSV's rows are not known until read: the total is the count once done.
    assert done.progress == {"rows_done": 5_000, "rows_total": 5_000, "version": version}
    started = [e for e in services.events.feed(tenant) if e["type"] == "BATCH_INFERENCE_STARTED"]
    assert started[0]["data"]["rows_total"] is None


def _big_table(services, tenant: str, rows: int) -> pd.DataFrame:
    table = frame(rows, seed=7)
    table.to_parquet(tenant_root(services, tenant) / "big.parquet", index=False)
    return table


@pytest.mark.slow
def test_a_cancel_mid_job_leaves_no_output_and_no_temporary_file(services, tenant) -> None:
    # Eight blocks of 25,000 rows (runner: four blocks an actor), each 500 batches of 50:
    # the cancel lands after the first block is written, with seconds of work left. A
    # million rows only made each block (the driver's cancel check) take a minute.
    table = _big_table(services, tenant, 200_000)
    model = LogisticRegression().fit(table[FEATURES][:1000], (table.f0[:1000] > 0).astype(int))
    _promote(services, tenant, "churn", _register(services, tenant, "churn", model, "sklearn"))
    out_dir = tenant_root(services, tenant) / "scores"
    out_dir.mkdir()
    body = {
        "model": "churn",
        "input": {"path": "big.parquet"},
        "columns": FEATURES,
        "output": {"path": "scores/big.parquet"},
        "batch_size": 50,  # many small batches: the job is still running when cancelled
    }
    job = services.jobs.submit_batch(tenant, body)

    running = wait(
        services, tenant, job.job_id, until=lambda j: (j.progress or {}).get("rows_done", 0) > 0
    )
    assert running.status == "running", running.reason
    services.jobs.cancel(tenant, job.job_id, actor="ci", kind="batch")
    done = wait(services, tenant, job.job_id)

    assert done.status == "cancelled", done.reason
    assert list(out_dir.iterdir()) == []
    assert not [e for e in services.events.feed(tenant) if e["type"] == "BATCH_INFERENCE_COMPLETED"]


@pytest.mark.slow
def test_a_promotion_during_the_job_does_not_change_its_version(services, tenant) -> None:
    table = _big_table(services, tenant, 300_000)
    y = (table.f0 > 0).astype(int)
    first = LogisticRegression().fit(table[FEATURES][:2000], y[:2000])
    second = LogisticRegression().fit(table[FEATURES][:2000], 1 - y[:2000])  # the opposite
    v1 = _register(services, tenant, "churn", first, "sklearn")
    _promote(services, tenant, "churn", v1)
    v2 = _register(services, tenant, "churn", second, "sklearn")
    body = {
        "model": "churn",
        "input": {"path": "big.parquet"},
        "key_columns": ["customer_id"],
        "output": {"path": "scores.parquet"},
        "batch_size": 500,
    }
    job = services.jobs.submit_batch(tenant, body)

    running = wait(
        services, tenant, job.job_id, until=lambda j: (j.progress or {}).get("rows_done", 0) > 0
    )
    assert running.status == "running" and running.progress["version"] == v1
    _promote(services, tenant, "churn", v2)
    done = wait(services, tenant, job.job_id)

    assert done.status == "succeeded", done.reason
    assert done.result["version"] == v1
    out = pd.read_parquet(tenant_root(services, tenant) / "scores.parquet")
    assert set(out.model_version) == {v1}
    out = out.sort_values("customer_id").reset_index(drop=True)
    assert np.array_equal(out.prediction.to_numpy(), first.predict(table[FEATURES]))
    # The stage did move: a job submitted now scores with v2.
    resolved = services.serving.resolver.resolve(tenant, "churn", _production_target())
    assert resolved == v2


def _production_target():
    from matih_ml.serving.resolver import PRODUCTION

    return PRODUCTION
