"""A five-minute demonstration: two tenants train and register, and each sees only its own."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from matih_ml.config import Settings
from matih_ml.sdk import ModelRegistry
from matih_ml.tracking import ExperimentTracker, RunConfig

DEMO_TENANTS = ("acme-corp", "globex")


def run_demo(settings: Settings | None = None) -> dict[str, Any]:
    """Train and register a small classifier for two tenants, then list what each sees.

    Returns:
        ``{tenant: {"models": [...], "experiments": [...]}}``, as each tenant sees it.
    """
    settings = settings or Settings()
    tracker = ExperimentTracker(settings=settings)
    facade = ModelRegistry(settings=settings)
    registry, lifecycle = facade.sync, facade.lifecycle
    rng = np.random.default_rng(7)
    seen: dict[str, Any] = {}
    for i, tenant in enumerate(DEMO_TENANTS):
        x = rng.normal(size=(200, 4))
        y = (x[:, i] > 0).astype(int)
        model = LogisticRegression(C=1.0 + i)
        config = RunConfig(
            run_name=f"demo-{tenant}", tenant_id=tenant, user_id="demo", job_id="demo"
        )
        with tracker.start_run("churn-training", run_config=config) as run:
            run.log_params({"C": model.C, "rows": len(x)})
            model.fit(x, y)
            for epoch, acc in enumerate((0.7, 0.8, model.score(x, y))):
                run.log_metric("accuracy", float(acc), step=epoch)
        md, _ = lifecycle.register_model(
            tenant,
            f"churn-{tenant}",
            model,
            "sklearn",
            {"accuracy": float(model.score(x, y))},
            {"C": model.C},
            created_by="demo",
            input_example=x[:3],
        )
        if md.stage == "development":  # MATIH_REGISTER_STAGE may have landed it already
            lifecycle.transition_stage(tenant, md.name, md.current_version, "staging", actor="demo")
    for tenant in DEMO_TENANTS:
        models = registry.list_models(tenant)
        seen[tenant] = {
            "models": [
                {
                    "name": m.name,
                    "versions": m.versions,
                    "stage": m.stage,
                    "accuracy": m.metrics.get("accuracy"),
                    "artifact_uri": m.artifact_uri,
                }
                for m in models
            ],
        }
    return seen
