"""`matih-ml models verify` (through the contracts, here `--local`) and the operator's
`matih-ml signing-keys` commands."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from matih_ml.cli import app
from test_cli import cli_env, run  # noqa: F401 - the fixture, and the JSON runner

runner = CliRunner()


def test_verify_reports_and_exits_1_on_a_changed_file_and_rotation_keeps_it_verifying(
    cli_env,  # noqa: F811
    sk_model,
    tmp_path: Path,
) -> None:
    from matih_ml.config import Settings
    from matih_ml.registry.metadata import TAG_ARTIFACT_URI
    from matih_ml.services import build_services

    run("tenants", "create", "acme")
    services = build_services(Settings())
    services.lifecycle.register_model("acme", "churn", sk_model, "sklearn", {}, {})
    local = ["--local", "--tenant", "acme"]
    found = run("models", "verify", *local, "churn", "1")
    assert (found["status"], found["promotable"]) == ("verified", True)
    keys = run("signing-keys", "list", "acme")
    assert [(k["key_id"], k["active"]) for k in keys] == [(found["key_id"], True)]

    fresh = run("signing-keys", "rotate", "acme")
    assert fresh["key_id"] != found["key_id"] and fresh["active"] is True
    assert run("models", "verify", *local, "churn", "1")["status"] == "verified"
    assert [k["active"] for k in run("signing-keys", "list", "acme")] == [False, True]

    folder = Path(services.registry.version_tags("acme", "churn", "1")[TAG_ARTIFACT_URI])
    (folder / "requirements.txt").write_text("scikit-learn==0.0.1\n")
    refused = runner.invoke(app, ["models", "verify", *local, "churn", "1", "--json"])
    assert refused.exit_code == 1
    report = json.loads(refused.stdout)
    assert (report["status"], report["files"]) == ("failed", ["requirements.txt"])
    assert report["reason"] == "files changed since it was signed: requirements.txt"
    missing = runner.invoke(app, ["models", "verify", *local, "churn", "7", "--json"])
    assert missing.exit_code == 1
    assert json.loads(missing.stdout)["error"]["code"] == "NOT_FOUND"
