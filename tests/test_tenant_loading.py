"""``models:/`` URIs in a process of one's own: with ``matih_ml.tenancy.tenant`` they load
the tenant's production version; without it MLflow finds nothing, and says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from conftest import open_production_gate

_LOAD = textwrap.dedent(
    """
    import json, sys
    import mlflow
    import numpy as np

    rows = np.array(json.loads(sys.argv[2]))
    out = {}
    if sys.argv[3] == "helper":
        from matih_ml.tenancy import tenant

        with tenant(sys.argv[1]):
            for uri in ("models:/churn/Production", "models:/churn@production"):
                out[uri] = mlflow.pyfunc.load_model(uri).predict(rows).tolist()
    else:
        try:
            mlflow.pyfunc.load_model("models:/churn/Production")
        except Exception as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(out))
    """
)


def _run(settings, tenant: str, rows: np.ndarray, mode: str, **extra: str) -> dict:
    # A fresh interpreter, configured only by the environment, as a user's script is.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MATIH_"))}
    env |= {
        "MATIH_DATA_DIR": str(settings.data_dir),
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        **extra,
    }
    done = subprocess.run(
        [sys.executable, "-c", _LOAD, tenant, json.dumps(rows.tolist()), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def promoted(registry, lifecycle, move, tenant, xy) -> LogisticRegression:
    """churn v2 in production (v1 archived), registered and promoted by the service."""
    x, y = xy
    open_production_gate(lifecycle, tenant)
    first, second = LogisticRegression().fit(x, y), LogisticRegression().fit(x, 1 - y)
    for model in (first, second):
        _, v = registry.register_model_version(
            tenant, "churn", model, "sklearn", {}, {}, input_example=x[:2]
        )
        move(tenant, "churn", v.version, "staging")
        move(tenant, "churn", v.version, "production")
    return second


def test_a_process_loads_production_by_stage_and_alias_with_the_helper(
    settings, tenant, promoted, xy
) -> None:
    rows = xy[0][:5]
    got = _run(settings, tenant, rows, "helper")
    expected = promoted.predict(rows).tolist()
    assert got == {"models:/churn/Production": expected, "models:/churn@production": expected}


@pytest.mark.parametrize("workspaces", [None, "true"])
def test_without_the_helper_mlflow_refuses_and_names_the_workspace(
    settings, tenant, promoted, xy, workspaces
) -> None:
    # Plain MLflow refuses the store (its experiments are in workspaces); with workspaces
    # switched on by hand, it asks for one. Either way the message names the cause.
    extra = {"MLFLOW_ENABLE_WORKSPACES": workspaces} if workspaces else {}
    got = _run(settings, tenant, xy[0][:1], "bare", **extra)
    assert "workspace" in got["error"].lower(), got


def test_the_helper_refuses_a_tenant_that_does_not_exist(settings) -> None:
    from matih_ml.errors import NotFoundError, ValidationError
    from matih_ml.tenancy import tenant

    with pytest.raises(NotFoundError), tenant("no-such-tenant-here", settings=settings):
        pass
    with pytest.raises(ValidationError), tenant("Bad/Name", settings=settings):
        pass
