"""MatihClient against a real `matih-ml serve` on loopback, with keys made by the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ServeProcess
from matih_ml.client import MatihClient
from matih_ml.contracts.policy import Policy, StagingGate
from matih_ml.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    UnauthenticatedError,
    ValidationError,
)

pytestmark = pytest.mark.slow


def _cli(data: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MATIH_"))}
    env["MATIH_DATA_DIR"] = str(data)
    done = subprocess.run(
        [sys.executable, "-m", "matih_ml.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def _key(data: Path, tenant: str, role: str) -> str:
    out = _cli(data, "keys", "create", "--tenant", tenant, "--role", role, "--json")
    return json.loads(out)["key"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("client-live")
    data = root / "srv"
    _cli(data, "tenants", "create", "acme")
    _cli(data, "tenants", "create", "globex")
    keys = {"acme": _key(data, "acme", "admin"), "globex": _key(data, "globex", "admin")}
    serve = ServeProcess(root / "serve.log", {"MATIH_DATA_DIR": str(data)})
    try:
        yield {"url": serve.url, "keys": keys}
    finally:
        serve.stop()


@pytest.fixture(scope="module")
def admin(server):
    with MatihClient(server["url"], server["keys"]["acme"], retries=0) as ml:
        yield ml


@pytest.fixture(scope="module")
def clients(server, admin):
    """acme's editor and viewer, made through the client by acme's admin; globex's admin."""
    made = {
        role: admin.keys.create(role, name=f"{role}-client").key for role in ("editor", "viewer")
    }
    out = {role: MatihClient(server["url"], key, retries=0) for role, key in made.items()}
    out["globex"] = MatihClient(server["url"], server["keys"]["globex"], retries=0)
    yield out
    for c in out.values():
        c.close()


@pytest.fixture(scope="module")
def churn(clients, saved_sklearn_model):
    """A run that logged an sklearn model, registered as churn v1 by acme's editor."""
    ml = clients["editor"]
    run = ml.runs.create("train", run_name="with-model", tags={"team": "risk"})
    for f in sorted(saved_sklearn_model.rglob("*")):
        if f.is_file():
            rel = f.relative_to(saved_sklearn_model).as_posix()
            ml.runs.upload_artifact(run.run_id, f"model/{rel}", f.read_bytes())
    ml.runs.log_batch(run.run_id, metrics=[{"key": "accuracy", "value": 0.9}], params={"C": 1})
    ml.runs.end(run.run_id)
    model = ml.models.register("churn", run.run_id, metrics={"accuracy": 0.9})
    return {"run_id": run.run_id, "model": model}


def test_whoami_names_the_keys_tenant_and_role(clients, admin) -> None:
    me = clients["editor"].whoami()
    assert (me.tenant_id, me.roles, me.subject) == ("acme", ["editor"], "editor-client")
    assert admin.whoami().roles == ["admin"]
    assert clients["globex"].whoami().tenant_id == "globex"
    assert admin.health().status == "ok"


def test_a_run_logs_ten_thousand_points_and_reads_them_back(clients) -> None:
    ml = clients["editor"]
    run = ml.runs.create("client-exp", run_name="big")
    points = [{"key": "loss", "value": 1.0 / (i + 1), "step": i} for i in range(10_000)]
    assert ml.runs.log_batch(run.run_id, metrics=points, params={"lr": 0.01}).metrics_written == (
        10_000
    )
    back = list(ml.runs.all_points(run.run_id, "loss"))
    assert [p.step for p in back] == list(range(10_000))
    assert back[9].value == pytest.approx(0.1)

    # Columns (metrics:batch), numpy welcome, gzipped on the way.
    steps = np.arange(50_000)
    done = ml.runs.log_metrics(
        run.run_id, ["train/acc"] * len(steps), np.linspace(0, 1, len(steps)), steps=steps
    )
    assert done.metrics_written == 50_000
    chart = ml.runs.downsampled_history(run.run_id, "train/acc", 100)
    assert chart.total == 50_000 and chart.last is not None and chart.last.step == 49_999

    ended = ml.runs.end(run.run_id, "FINISHED")
    assert ended.status == "FINISHED" and ended.params == {"lr": "0.01"}
    exp = ml.experiments.get(ended.experiment_id)
    assert exp.name == "client-exp"
    assert [r.run_id for r in ml.experiments.all_runs(exp.experiment_id)] == [run.run_id]
    assert any(e.name == "client-exp" for e in ml.experiments.all())


def test_register_from_a_run_then_staging_then_the_events(clients, churn, tmp_path) -> None:
    ml = clients["editor"]
    model = churn["model"]
    assert (model.name, model.registered_version, model.created) == ("churn", "1", True)
    # The same run again is its version, not a new one.
    again = ml.models.register("churn", churn["run_id"])
    assert (again.registered_version, again.created) == ("1", False)

    moved = ml.lifecycle.transition("churn", 1, "staging", reason="looks good")
    assert moved.stage == "staging"
    assert [(m.from_stage, m.to_stage) for m in ml.lifecycle.history("churn").items] == [
        ("development", "staging")
    ]
    version = ml.models.get_version("churn", 1, with_card=True)
    assert version.stage == "staging" and "staging" in version.aliases

    names = {f.path for f in ml.models.list_files("churn", 1)}
    assert "MLmodel" in names
    ml.models.download("churn", 1, tmp_path / "v1")
    assert (tmp_path / "v1" / "MLmodel").read_bytes() == ml.models.read_file("churn", 1, "MLmodel")

    types = [e["type"] for e in ml.events.all(types=["MODEL_REGISTERED", "MODEL_STAGE_CHANGED"])]
    assert types == ["MODEL_REGISTERED", "MODEL_STAGE_CHANGED"]
    feed = ml.events.feed(after=0, limit=1)
    assert len(feed.items) == 1 and feed.cursor == feed.items[0]["sequence"]

    scored = ml.serving.predict("churn", inputs=np.zeros((2, 4)), stage="staging")
    assert scored.version == "1" and len(scored.predictions) == 2


def test_upload_a_model_file(clients, sk_model) -> None:
    from skl2onnx import to_onnx

    onx = to_onnx(sk_model, np.zeros((1, 4), dtype=np.float32))
    md = clients["editor"].models.upload(
        "onx-client",
        onx.SerializeToString(),
        framework="onnx",
        metrics={"accuracy": 0.8},
        tags={"src": "client"},
    )
    assert (md.framework, md.registered_version, md.metrics) == ("onnx", "1", {"accuracy": 0.8})
    assert "onx-client" in {m.name for m in clients["viewer"].models.all(framework="onnx")}


def test_typed_errors(server, clients, churn) -> None:
    with pytest.raises(NotFoundError):
        clients["viewer"].models.get("no-such-model")
    with pytest.raises(ForbiddenError):
        clients["viewer"].runs.create("not-allowed")
    # Another tenant's model does not exist for globex: 404, never 403.
    with pytest.raises(NotFoundError):
        clients["globex"].models.get("churn")
    with pytest.raises(NotFoundError):
        clients["globex"].runs.get(churn["run_id"])
    with (
        MatihClient(server["url"], "mk_0123456789abcdef_wrong", retries=0) as bad,
        pytest.raises(UnauthenticatedError),
    ):
        bad.whoami()
    # Checked against the API's own type before anything is sent.
    with pytest.raises(ValidationError) as err:
        clients["editor"].models.register("bad name!", churn["run_id"])
    assert err.value.details["problems"][0]["field"] == "name"
    # And the server's own checks come back typed, with their details.
    with pytest.raises(ValidationError) as err:
        clients["editor"].jobs.submit({"name": "x"})
    assert err.value.details


def test_policy_round_trip_and_the_other_tenant_unchanged(admin, clients) -> None:
    assert admin.policy.get().source == "default"
    strict = Policy(staging=StagingGate(prediction_check="required"))
    assert admin.policy.set(strict).policy == strict
    got = clients["viewer"].policy.get()
    assert (got.source, got.policy.staging.prediction_check) == ("tenant", "required")
    assert clients["globex"].policy.get().source == "default"
    with pytest.raises(ForbiddenError):
        clients["editor"].policy.clear()
    admin.policy.clear()
    assert admin.policy.get().source == "default"


def test_the_docs_example_works_as_written(server, clients, tmp_path) -> None:
    text = (Path(__file__).parents[2] / "docs" / "client.md").read_text()
    example = text.split("```python\n", 1)[1].split("```", 1)[0]
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "MATIH_URL": server["url"],
        "MATIH_API_KEY": clients["editor"].config.api_key,
    }
    done = subprocess.run(
        [sys.executable, "-c", example],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "acme ['editor']" in done.stdout
    assert "100 points of loss" in done.stdout and "NOT_FOUND" in done.stdout
    assert list(home.iterdir()) == []


def test_admin_resources_and_jobs(admin, clients) -> None:
    hook = admin.webhooks.create("https://hooks.example/x", event_types=["MODEL_REGISTERED"])
    assert hook.secret.startswith("whsec_")
    assert [h.id for h in admin.webhooks.list().items] == [hook.id]
    assert admin.webhooks.deliveries(hook.id).items == []
    admin.webhooks.delete(hook.id)
    with pytest.raises(NotFoundError):
        admin.webhooks.get(hook.id)

    names = {k.name for k in admin.keys.list().items}
    assert {"editor-client", "viewer-client"} <= names
    with pytest.raises(ConflictError):
        admin.keys.create("viewer", name="viewer-client")

    assert clients["viewer"].jobs.list().items == []
    with pytest.raises(NotFoundError):
        clients["viewer"].jobs.get("job_" + "0" * 16)
