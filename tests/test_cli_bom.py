"""matih-ml models bom: a version's CycloneDX BOM, printed or written to a file."""

import json

import mlflow.sklearn
from typer.testing import CliRunner

from matih_ml.cli import app
from matih_ml.config import Settings
from matih_ml.tracking import ExperimentTracker, RunConfig

runner = CliRunner()


def test_models_bom_prints_and_writes_the_versions_bom(tmp_path, monkeypatch, sk_model) -> None:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MATIH_DATA_DIR", str(tmp_path / "data"))
    assert runner.invoke(app, ["tenants", "create", "acme"]).exit_code == 0
    local = tmp_path / "m"
    mlflow.sklearn.save_model(sk_model, str(local))
    with ExperimentTracker(settings=Settings()).start_run(
        "train", RunConfig(tenant_id="acme")
    ) as r:
        r.log_metric("acc", 0.8).log_artifact(local, "model")
    where = ["--local", "--tenant", "acme"]
    made = runner.invoke(
        app, ["models", "register", *where, "--name", "churn", "--run-id", r.run_id]
    )
    assert made.exit_code == 0, made.output

    printed = runner.invoke(app, ["models", "bom", *where, "churn", "1"])
    assert printed.exit_code == 0, printed.output
    doc = json.loads(printed.stdout)
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.6"
    assert doc["metadata"]["component"]["name"] == "churn"
    assert "scikit-learn" in {c["name"] for c in doc["components"]}

    out = tmp_path / "bom.json"
    written = runner.invoke(app, ["models", "bom", *where, "churn", "1", "-o", str(out)])
    assert written.exit_code == 0, written.output
    assert json.loads(out.read_text())["serialNumber"] == doc["serialNumber"]

    missing = runner.invoke(app, ["models", "bom", *where, "churn", "9"])
    assert missing.exit_code == 1 and "NOT_FOUND" in missing.stderr
    as_json = runner.invoke(app, ["models", "bom", *where, "churn", "9", "--json"])
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["error"]["code"] == "NOT_FOUND"
    same = runner.invoke(app, ["models", "bom", *where, "churn", "1", "--json"])
    assert json.loads(same.stdout)["metadata"] == doc["metadata"] | {
        "timestamp": json.loads(same.stdout)["metadata"]["timestamp"]
    }
