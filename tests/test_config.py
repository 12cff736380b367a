from pathlib import Path

import pytest

from matih_ml.backend import connect
from matih_ml.config import Settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The session's store is MLflow's default in this process; these tests read
    # the environment as a fresh process would.
    for name in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_REGISTRY_URI",
        "MLFLOW_ARTIFACT_ROOT",
        "MATIH_DATA_DIR",
        "MATIH_AUTO_CREATE_TENANTS",
    ):
        monkeypatch.delenv(name, raising=False)


def test_embedded_default_uses_sqlite_and_local_artifacts_under_data_dir(tmp_path: Path) -> None:
    s = Settings(MATIH_DATA_DIR=str(tmp_path / "home"))
    assert s.embedded
    assert s.tracking_uri == f"sqlite:///{(tmp_path / 'home' / 'mlflow.db').resolve()}"
    assert s.registry_uri == s.tracking_uri
    assert s.artifact_root == str((tmp_path / "home" / "artifacts").resolve())
    assert s.auto_create_tenants is True


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql+psycopg://db/mlflow")
    monkeypatch.setenv("MLFLOW_ARTIFACT_ROOT", "s3://bucket/prefix/")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "postgresql+psycopg://db/registry")
    s = Settings()
    assert not s.embedded
    assert s.tracking_uri == "postgresql+psycopg://db/mlflow"
    assert s.registry_uri == "postgresql+psycopg://db/registry"
    assert s.artifact_root == "s3://bucket/prefix"
    # Off by default outside the embedded default: production tenants are provisioned.
    assert s.auto_create_tenants is False


def test_registry_uri_defaults_to_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    assert Settings().registry_uri == "http://mlflow:5000"


def test_auto_create_can_be_switched_off_in_embedded_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MATIH_AUTO_CREATE_TENANTS", "false")
    assert Settings().auto_create_tenants is False


def test_connect_creates_the_embedded_store_on_first_use(tmp_path: Path) -> None:
    s = Settings(MATIH_DATA_DIR=str(tmp_path / "fresh"))
    backend = connect(s)
    assert (tmp_path / "fresh").is_dir()
    assert (tmp_path / "fresh" / "artifacts").is_dir()
    backend.client.list_workspaces()  # the schema is created on first use
    assert (tmp_path / "fresh" / "mlflow.db").is_file()
    import os

    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, True),  # the embedded default: SQLite files migrate themselves
        ({"MLFLOW_TRACKING_URI": "postgresql+psycopg://h/db"}, False),
        ({"MLFLOW_TRACKING_URI": "http://mlflow:5000"}, True),  # service tables on SQLite
        (
            {
                "MLFLOW_TRACKING_URI": "http://mlflow:5000",
                "MATIH_DATABASE_URL": "postgresql+psycopg://h/db",
            },
            False,
        ),
        ({"MLFLOW_TRACKING_URI": "postgresql+psycopg://h/db", "MATIH_AUTO_MIGRATE": "1"}, True),
    ],
)
def test_auto_migrate_is_on_only_without_a_database_server(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: bool
) -> None:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MATIH_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings().auto_migrate is expected
