"""A batch job checks its version's files against their signature before it scores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression

from batch.helpers import FEATURES, frame, log_lines, start_executor, tenant_root, wait
from matih_ml.registry.metadata import TAG_ARTIFACT_URI
from matih_ml.training.executor import JobExecutor


@pytest.fixture(scope="module")
def executor(services) -> Iterator[JobExecutor]:
    ex = start_executor(services)
    yield ex
    ex.stop()


def test_a_changed_model_file_fails_the_job_before_it_scores(executor, services, tenant) -> None:
    table = frame(200)
    model = LogisticRegression().fit(table[FEATURES], (table.f0 > 0).astype(int))
    md = services.registry.register_model(tenant, "churn", model, "sklearn", {}, {})
    version = md.current_version or "1"
    services.lifecycle.transition_stage(tenant, "churn", version, "staging")
    services.lifecycle.transition_stage(
        tenant, "churn", version, "production", force=True, reason="test", actor="admin"
    )
    table.to_parquet(tenant_root(services, tenant) / "in.parquet", index=False)
    folder = Path(services.registry.version_tags(tenant, "churn", version)[TAG_ARTIFACT_URI])
    (folder / "MLmodel").write_text((folder / "MLmodel").read_text() + "\n# changed\n")

    job = services.jobs.submit_batch(
        tenant,
        {"model": "churn", "input": {"path": "in.parquet"}, "output": {"path": "out.parquet"}},
        actor="ci",
    )
    done = wait(services, tenant, job.job_id)

    assert done.status == "failed", (done.status, log_lines(services, tenant, job.job_id))
    assert "failed verification: files changed since it was signed: MLmodel" in done.reason
    assert not (tenant_root(services, tenant) / "out.parquet").exists()
    types = [e["type"] for e in services.events.feed(tenant, limit=1000)]
    assert "BATCH_INFERENCE_STARTED" not in types
    failed = [
        e for e in services.events.feed(tenant, limit=1000) if e["type"] == "MODEL_INTEGRITY_FAILED"
    ]
    assert [(e["data"]["where"], e["data"]["files"]) for e in failed] == [("batch", ["MLmodel"])]
