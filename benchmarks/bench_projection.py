"""How far MLflow's view of the stages lags our store.

A promotion commits in our store, then projects onto MLflow (stage field, tags,
aliases) before it answers. This measures, on the embedded default (SQLite):
- the projection itself (the lag between our commit and MLflow showing it), per move;
- a whole promotion through the lifecycle (gates, lock, history, events, projection);
- beside plain MLflow's own promotion: ``transition_model_version_stage`` with
  ``archive_existing_versions`` and ``set_registered_model_alias`` on the same store;
- a projection left behind by a crash: recovered by the next pass, at most
  ``MATIH_PROJECTION_INTERVAL_S`` later on a live replica, or at the next start.

Run with ``make bench``; the figures in docs/lifecycle.md and docs/performance.md come
from it.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

MOVES = 40


def _ms(samples: list[float], q: float) -> float:
    return sorted(samples)[int(q * (len(samples) - 1))] * 1000


def main() -> None:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from matih_ml.config import Settings
    from matih_ml.registry.policy import Policy, ProductionGate, StagingGate
    from matih_ml.registry.projection import request_projection
    from matih_ml.services import build_services
    from matih_ml.tenancy import tenant_scope

    root = Path(tempfile.mkdtemp(prefix="matih-bench-projection-"))
    try:
        services = build_services(
            Settings(MATIH_DATA_DIR=str(root), MLFLOW_TRACKING_URI=None, MATIH_DISPATCHER=False)
        )
        tenant = "bench"
        services.tenants.create_tenant(tenant)
        services.lifecycle.policies.set(
            tenant,
            Policy(
                staging=StagingGate(prediction_check="off"),
                production=ProductionGate(require_approval=False),
            ),
        )
        x = np.random.default_rng(0).normal(size=(50, 4))
        est = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
        versions = []
        for _ in range(MOVES):
            _, v = services.registry.register_model_version(
                tenant, "m", est, "sklearn", {"accuracy": 0.9}, {}
            )
            services.lifecycle.transition_stage(tenant, "m", v.version, "staging")
            versions.append(v.version)
        projector = services.projector
        projections: list[float] = []
        original = projector.project

        def timed(tenant_id: str, model: str) -> bool:
            t = time.perf_counter()
            try:
                return original(tenant_id, model)
            finally:
                projections.append(time.perf_counter() - t)

        projector.project = timed  # type: ignore[method-assign]
        ours = []
        for v in versions:
            t = time.perf_counter()
            services.lifecycle.transition_stage(tenant, "m", v, "production")
            ours.append(time.perf_counter() - t)
        projector.project = original  # type: ignore[method-assign]

        # Plain MLflow's promotion on the same store (another model, same versions).
        client = services.backend.client
        plain = []
        with tenant_scope(tenant), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client.create_registered_model("plain")
            for v in versions:
                mv = client.create_model_version("plain", f"runs:/x{v}/model")
                t = time.perf_counter()
                client.transition_model_version_stage(
                    "plain", mv.version, "Production", archive_existing_versions=True
                )
                client.set_registered_model_alias("plain", "production", mv.version)
                plain.append(time.perf_counter() - t)

        # A projection a crash left behind: a request with no projection after it.
        with services.db.uow() as s:
            request_projection(s, tenant, "m")
        t = time.perf_counter()
        projector.run_pending()
        recovery = time.perf_counter() - t

        print(f"{MOVES} promotions to production on SQLite (ms):")
        print(
            f"  projection onto MLflow (commit -> MLflow shows it) p50 {_ms(projections, 0.5):6.1f}"
            f"  p99 {_ms(projections, 0.99):6.1f}"
        )
        print(
            f"  our promotion, whole (gates, lock, history, events, projection) "
            f"p50 {_ms(ours, 0.5):6.1f}  p99 {_ms(ours, 0.99):6.1f}"
        )
        print(
            f"  plain MLflow: transition_model_version_stage + alias "
            f"p50 {_ms(plain, 0.5):6.1f}  p99 {_ms(plain, 0.99):6.1f}"
        )
        print(f"  ours / plain (p50): {statistics.median(ours) / statistics.median(plain):.1f}x")
        print(f"  a left-behind projection, one recovery pass: {recovery * 1000:.1f} ms")
        services.db.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
