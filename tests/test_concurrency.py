"""Many threads working for two tenants at once must never see each other's data.

Each round: 8 threads, 4 per tenant, released together by a barrier, each
creating an experiment, a run with metrics, and a registered model. Afterwards
every tenant must list exactly its own objects. Twenty rounds.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from mlflow.entities import ViewType

from conftest import new_tenant_id
from matih_ml.tenancy import current_tenant, tenant_scope
from matih_ml.tracking import RunConfig

THREADS = 8
ROUNDS = 20


@pytest.mark.parametrize("round_no", range(ROUNDS))
def test_two_tenants_eight_threads_no_leak(round_no, tracker, registry, backend, tenants, sk_model):
    pair = [tenants.create_tenant(new_tenant_id(p)).tenant_id for p in ("a", "b")]
    barrier = threading.Barrier(THREADS)
    seen_tenants: list[tuple[str, str | None]] = []

    def work(i: int) -> tuple[str, str, str]:
        tenant = pair[i % 2]
        barrier.wait()
        with tracker.start_run(f"exp-{i}", RunConfig(tenant_id=tenant, user_id=f"u{i}")) as run:
            run.log_metrics({"loss": 1.0 / (i + 1)}, step=i).log_params({"thread": i})
        md = registry.register_model(
            tenant, f"model-{i}", sk_model, "sklearn", {"accuracy": i / 10}, {"thread": i}
        )
        # The binding is undone once each call returns: nothing lingers in the thread.
        seen_tenants.append((tenant, current_tenant()))
        return tenant, run.run_id, md.name

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(work, range(THREADS)))

    assert all(after is None for _, after in seen_tenants)
    for tenant in pair:
        mine = [r for r in results if r[0] == tenant]
        expected_models = sorted(name for _, _, name in mine)
        assert [m.name for m in registry.list_models(tenant)] == expected_models
        for m in registry.list_models(tenant):
            assert m.tenant_id == tenant
            assert m.artifact_uri.startswith(f"{backend.settings.artifact_root}/{tenant}/")
        with tenant_scope(tenant):
            exps = backend.client.search_experiments(view_type=ViewType.ALL)
            runs = backend.client.search_runs(
                [e.experiment_id for e in exps], run_view_type=ViewType.ALL
            )
        exp_names = sorted(e.name for e in exps)
        assert exp_names == sorted(
            [f"exp-{i}" for i in range(THREADS) if pair[i % 2] == tenant]
            + [f"models/{n}" for n in expected_models]
        )
        training_runs = {r.info.run_id for r in runs if not r.info.run_name.startswith("register")}
        assert training_runs == {run_id for _, run_id, _ in mine}
        assert {
            r.data.tags["matih.tenant_id"] for r in runs if "matih.tenant_id" in r.data.tags
        } == {tenant}
