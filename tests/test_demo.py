import json

from typer.testing import CliRunner

from matih_ml.cli import app
from matih_ml.demo import DEMO_TENANTS, run_demo


def test_demo_shows_each_tenant_only_its_own_model(isolated_settings) -> None:
    seen = run_demo(isolated_settings)
    assert set(seen) == set(DEMO_TENANTS)
    for tenant in DEMO_TENANTS:
        assert [m["name"] for m in seen[tenant]["models"]] == [f"churn-{tenant}"]
        assert seen[tenant]["models"][0]["stage"] == "staging"
        assert f"/{tenant}/models/churn-{tenant}/1" in seen[tenant]["models"][0]["artifact_uri"]


def test_cli_demo_json(tmp_path, monkeypatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MATIH_DATA_DIR", str(tmp_path / "d"))
    result = CliRunner().invoke(app, ["demo", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert sorted(out) == sorted(DEMO_TENANTS)
