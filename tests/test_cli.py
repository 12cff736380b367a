"""The matih-ml command line, on a store of its own, with --json and tables."""

import json

import pytest
from typer.testing import CliRunner

from matih_ml.cli import app
from matih_ml.tracking import ExperimentTracker, RunConfig

runner = CliRunner()


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MATIH_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def run(*args: str) -> dict | list:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, (result.output, result.stderr)
    return json.loads(result.stdout)


def test_tenants_and_keys(cli_env) -> None:
    assert run("tenants", "create", "acme", "--description", "Acme")["tenant_id"] == "acme"
    assert [t["tenant_id"] for t in run("tenants", "list")] == ["acme"]
    key = run("keys", "create", "--tenant", "acme", "--role", "editor", "--name", "ci")
    assert key["key"].startswith("mk_") and key["role"] == "editor"
    listed = run("keys", "list", "--tenant", "acme")
    assert [k["key_id"] for k in listed] == [key["key_id"]] and "key" not in listed[0]
    assert run("keys", "revoke", "--tenant", "acme", key["key_id"])["revoked_at"]
    assert run("tenants", "delete", "acme") == {"tenant_id": "acme", "deleted": True}
    assert run("tenants", "list") == []


def test_keys_have_owners_and_unique_names(cli_env) -> None:
    run("tenants", "create", "acme")
    first = run("keys", "create", "--tenant", "acme", "--role", "admin")
    second = run("keys", "create", "--tenant", "acme", "--role", "admin")
    # No --name: a new name each time, and each key its own owner.
    assert first["name"] != second["name"] and first["name"].startswith("admin-key-")
    assert (first["owner"], second["owner"]) == (first["name"], second["name"])
    mine = run("keys", "create", "-t", "acme", "--role", "editor", "--name", "ci", "--owner", "al")
    assert (mine["name"], mine["owner"]) == ("ci", "al")
    assert {k["name"]: k["owner"] for k in run("keys", "list", "--tenant", "acme")}["ci"] == "al"
    again = runner.invoke(app, ["keys", "create", "-t", "acme", "--role", "viewer", "--name", "ci"])
    assert again.exit_code == 1 and "CONFLICT" in again.stderr and "'ci'" in again.stderr


def test_keys_create_prints_the_whole_key_on_a_line_of_its_own_at_any_width(cli_env) -> None:
    import os
    import re
    import subprocess
    import sys

    from matih_ml.auth.api_keys import ApiKeyStore
    from matih_ml.config import Settings
    from matih_ml.store.db import Database

    run("tenants", "create", "acme")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    argv = [sys.executable, "-m", "matih_ml.cli", "keys", "create", "-t", "acme", "--role"]
    out = subprocess.run(
        [*argv, "viewer", "--owner", "a-person-with-a-rather-long-name"],
        env={**env, "MATIH_DATA_DIR": str(cli_env), "COLUMNS": "40"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    lines = [ln for ln in out.splitlines() if re.fullmatch(r"mk_[0-9a-f]{16}_[\w-]{43}", ln)]
    assert len(lines) == 1, out
    db = Database(Settings(MATIH_DATA_DIR=str(cli_env)).database_url)
    try:
        who = ApiKeyStore(db).verify(lines[0])
    finally:
        db.dispose()
    assert (who.tenant_id, who.owner) == ("acme", "a-person-with-a-rather-long-name")


def test_errors_are_one_line_and_exit_1(cli_env) -> None:
    result = runner.invoke(app, ["tenants", "create", "Bad_Name"])
    assert result.exit_code == 1
    assert "VALIDATION_ERROR" in result.stderr and "Traceback" not in result.output
    result = runner.invoke(
        app, ["keys", "create", "--tenant", "nobody", "--role", "admin", "--json"]
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == "NOT_FOUND"
    result = runner.invoke(app, ["tenants", "create", "acme"])
    result = runner.invoke(app, ["keys", "create", "--tenant", "acme", "--role", "root"])
    assert result.exit_code == 1 and "role" in result.stderr


def test_models_and_runs(cli_env, tmp_path, sk_model) -> None:
    import mlflow.sklearn

    from matih_ml.config import Settings

    local = tmp_path / "m"
    mlflow.sklearn.save_model(sk_model, str(local))
    tracker = ExperimentTracker(settings=Settings())
    ids = []
    for i in range(2):
        with tracker.start_run("train", RunConfig(tenant_id="acme")) as r:
            r.log_params({"i": i}).log_metric("acc", 0.8 + i / 10).log_artifact(local, "model")
            ids.append(r.run_id)
    for _ in range(2):  # safe to re-run: the same run gives the same version
        v = run(
            "models",
            "register",
            "--local",
            "--tenant",
            "acme",
            "--name",
            "churn",
            "--run-id",
            ids[0],
            "--stage",
            "staging",
        )
    assert (v["version"], v["stage"]) == ("1", "staging")
    assert [
        m["name"]
        for m in run("models", "list", "--local", "--tenant", "acme", "--stage", "staging")
    ] == ["churn"]
    refused = runner.invoke(
        app,
        [
            "models",
            "promote",
            "--local",
            "--tenant",
            "acme",
            "churn",
            "1",
            "--stage",
            "production",
            "--json",
        ],
    )
    assert refused.exit_code == 1
    assert json.loads(refused.stdout)["error"]["code"] == "GATE_FAILED"
    md = run(
        "models",
        "promote",
        "--local",
        "--tenant",
        "acme",
        "churn",
        "1",
        "--stage",
        "production",
        "--force",
        "--reason",
        "approved by phone during the incident",
    )
    assert md["stage"] == "production"
    shown = run("models", "show", "--local", "--tenant", "acme", "churn")
    assert shown["version_details"][0]["aliases"] in ([], ["production"])
    rows = run("runs", "list", "--local", "--tenant", "acme", "--experiment", r.experiment_id)
    assert {x["run_id"] for x in rows} == set(ids)
    cmp = run("runs", "compare", "--local", "--tenant", "acme", *ids, "--metric", "acc")
    assert [c["metrics"]["acc"] for c in cmp] == [0.8, 0.9]
    table = runner.invoke(app, ["models", "list", "--local", "--tenant", "acme"])
    assert table.exit_code == 0 and "churn" in table.stdout and "production" in table.stdout


def test_policy_set_and_show(cli_env, tmp_path) -> None:
    run("tenants", "create", "acme")
    assert run("policy", "show", "--local", "--tenant", "acme")["source"] == "default"
    f = tmp_path / "p.json"
    f.write_text(
        json.dumps(
            {
                "staging": {"required_metrics": [{"metric": "accuracy", "op": ">=", "value": 0.9}]},
                "production": {"require_evaluation": True, "require_approval": False},
            }
        )
    )
    shown = run("policy", "set", "--local", "--tenant", "acme", "--file", str(f))
    assert shown["source"] == "tenant"
    assert run("policy", "show", "--local", "--tenant", "acme")["policy"]["production"] == {
        "require_evaluation": True,
        "evaluation_kinds": ["shadow", "ab"],
        "require_approval": False,
    }
    f.write_text('{"staging": {"required_metrics": "lots"}}')
    bad = runner.invoke(app, ["policy", "set", "--local", "--tenant", "acme", "--file", str(f)])
    assert bad.exit_code == 1 and "not valid" in bad.stderr


def test_webhooks_and_events(cli_env) -> None:
    run("tenants", "create", "acme")
    hook = run(
        "webhooks",
        "create",
        "--local",
        "--tenant",
        "acme",
        "http://127.0.0.1:9/h",
        "--type",
        "MODEL_DEPLOYED",
    )
    assert hook["secret"].startswith("whsec_") and hook["event_types"] == ["MODEL_DEPLOYED"]
    listed = run("webhooks", "list", "--local", "--tenant", "acme")
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    assert run("webhooks", "deliveries", "--local", "--tenant", "acme", hook["id"]) == []
    assert run("events", "list", "--local", "--tenant", "acme") == []
    assert run("webhooks", "delete", "--local", "--tenant", "acme", hook["id"]) == {
        "deleted": hook["id"]
    }
    assert run("webhooks", "list", "--local", "--tenant", "acme") == []
    result = runner.invoke(app, ["gc", "--older-than", "-5", "--json"])
    assert result.exit_code == 1 and "older-than" in result.stdout
    result = runner.invoke(app, ["events", "replay", "--since", "yesterday", "--json"])
    assert result.exit_code == 1 and "ISO 8601" in result.stdout
    result = runner.invoke(
        app, ["webhooks", "create", "--local", "--tenant", "acme", "ftp://x", "--json"]
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == "VALIDATION_ERROR"
