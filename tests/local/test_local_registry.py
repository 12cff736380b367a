"""The registry door in process: the same registrations, reads and files as the REST
routes (which call it), bound to the caller's tenant and roles."""

from __future__ import annotations

import io

import joblib
import pytest

from matih_ml.auth.principal import Principal, Role
from matih_ml.contracts.schemas import (
    ArtifactRead,
    ModelRead,
    Page,
    VersionRead,
    VersionRegistered,
    VersionWithCard,
)
from matih_ml.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from matih_ml.local import LocalClient
from matih_ml.tracking import RunConfig


def door(services, tenant: str, role: Role, owner: str = "alice") -> LocalClient:
    who = Principal(
        tenant_id=tenant,
        subject=f"{role.value}-key-of-{owner}",
        roles=frozenset({role}),
        via="test",
        owner=owner,
    )
    return LocalClient(services, who)


def run_with_model(tracker, tenant: str, model_dir) -> str:
    """A run of ``tenant`` whose artifacts hold an MLflow model at ``model``."""
    with tracker.start_run("train", RunConfig(tenant_id=tenant)) as r:
        r.log_metric("accuracy", 0.9).log_artifact(model_dir, "model")
    return r.run_id


def joblib_bytes(model) -> bytes:
    buf = io.BytesIO()
    joblib.dump(model, buf)
    return buf.getvalue()


def test_a_run_registers_once_and_its_files_read_back(
    services, tracker, tenant, saved_sklearn_model, tmp_path
) -> None:
    run_id = run_with_model(tracker, tenant, saved_sklearn_model)
    editor = door(services, tenant, Role.EDITOR).models
    viewer = door(services, tenant, Role.VIEWER).models

    md = editor.register("churn", run_id, metrics={"f1": 0.5}, tags={"team": "risk"})
    assert isinstance(md, ModelRead)
    assert (md.name, md.registered_version, md.created) == ("churn", "1", True)
    assert md.created_by == "editor-key-of-alice" and md.metrics["f1"] == 0.5
    again = editor.register("churn", run_id)
    assert (again.registered_version, again.created) == ("1", False)

    page = viewer.list()
    assert isinstance(page, Page) and [m.name for m in page.items] == ["churn"]
    assert [m.name for m in viewer.list(framework="sklearn", q="CHU").items] == ["churn"]
    assert viewer.list(framework="onnx").items == []
    assert [m.name for m in viewer.all()] == ["churn"]
    assert viewer.get("churn").current_version == "1"

    versions = viewer.list_versions("churn")
    assert all(isinstance(v, VersionRead) for v in versions.items)
    assert [(v.version, v.run_id) for v in versions.items] == [("1", run_id)]
    v1 = viewer.get_version("churn", 1, with_card=True)
    assert isinstance(v1, VersionWithCard) and v1.tags["team"] == "risk"
    assert viewer.get_version("churn", "1").model_card is None

    files = viewer.list_files("churn", "1")
    assert all(isinstance(f, ArtifactRead) for f in files)
    assert "MLmodel" in {f.path for f in files}
    mlmodel = viewer.read_file("churn", "1", "MLmodel")
    assert mlmodel == (saved_sklearn_model / "MLmodel").read_bytes()

    dest = viewer.download("churn", "1", tmp_path / "out")
    assert dest == tmp_path / "out"
    got = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    want = {f.relative_to(saved_sklearn_model).as_posix() for f in saved_sklearn_model.rglob("*")}
    assert {w for w in want if (saved_sklearn_model / w).is_file()} <= got
    assert (dest / "MLmodel").read_bytes() == mlmodel


def test_versions_are_made_and_deleted_by_the_right_roles(
    services, tracker, tenant, saved_sklearn_model
) -> None:
    first = run_with_model(tracker, tenant, saved_sklearn_model)
    second = run_with_model(tracker, tenant, saved_sklearn_model)
    editor = door(services, tenant, Role.EDITOR).models
    admin = door(services, tenant, Role.ADMIN).models
    editor.register("churn", first)

    v2 = editor.create_version("churn", second, description="retrained")
    assert isinstance(v2, VersionRegistered)
    assert (v2.version, v2.created, v2.description) == ("2", True, "retrained")
    assert editor.create_version("churn", second).created is False

    with pytest.raises(ForbiddenError):
        editor.delete_version("churn", "2")
    with pytest.raises(ForbiddenError):
        editor.delete("churn")
    assert [v.version for v in editor.list_versions("churn").items] == ["2", "1"]

    admin.delete_version("churn", "2")
    assert [v.version for v in editor.list_versions("churn").items] == ["1"]
    admin.delete("churn")
    with pytest.raises(NotFoundError):
        editor.get("churn")


def test_a_version_in_production_keeps_its_model(
    services, tracker, open_gates, saved_sklearn_model
) -> None:
    tenant = open_gates
    run_id = run_with_model(tracker, tenant, saved_sklearn_model)
    ml = door(services, tenant, Role.ADMIN)
    ml.models.register("churn", run_id)
    ml.lifecycle.transition("churn", "1", "staging")
    ml.lifecycle.transition("churn", "1", "production")
    with pytest.raises(ConflictError):
        ml.models.delete("churn")
    with pytest.raises(ConflictError):
        ml.models.delete_version("churn", "1")
    assert ml.models.get("churn").stage == "production"


def test_a_file_uploads_as_bytes_a_path_or_an_open_file(
    services, tenant, sk_model, tmp_path
) -> None:
    editor = door(services, tenant, Role.EDITOR).models
    data = joblib_bytes(sk_model)
    md = editor.upload(
        "uploaded",
        data,
        framework="sklearn",
        metrics={"accuracy": 0.93},
        parameters={"C": 1.0},
        tags={"src": "upload"},
        model_type="classifier",
    )
    assert isinstance(md, ModelRead)
    assert (md.registered_version, md.created, md.framework) == ("1", True, "sklearn")
    assert md.metrics == {"accuracy": 0.93} and md.model_type == "classifier"
    assert md.created_by == "editor-key-of-alice"

    path = tmp_path / "m.joblib"
    path.write_bytes(data)
    assert editor.upload("uploaded", path, framework="sklearn").registered_version == "2"
    with path.open("rb") as f:
        assert editor.upload("uploaded", f, framework="sklearn").registered_version == "3"
    with path.open("r", encoding="latin-1") as text, pytest.raises(ValidationError) as err:
        editor.upload("uploaded", text, framework="sklearn")  # type: ignore[arg-type]
    assert "binary mode" in err.value.message
    assert [v.version for v in editor.list_versions("uploaded").items] == ["3", "2", "1"]


def test_the_rest_bodys_rules_hold_in_process(services, tracker, tenant, saved_sklearn_model):
    run_id = run_with_model(tracker, tenant, saved_sklearn_model)
    editor = door(services, tenant, Role.EDITOR).models
    for bad in (
        {"name": "a/b", "run_id": run_id},
        {"name": "ok", "run_id": "not-hex"},
        {"name": "ok", "run_id": run_id, "description": "x" * 5001},
        {"name": "ok", "run_id": run_id, "metrics": {"a": float("nan")}},
    ):
        with pytest.raises(ValidationError) as err:
            editor.register(**bad)
        assert err.value.details["problems"], bad
    with pytest.raises(ValidationError):
        editor.upload("ok", b"x", framework="sklearn", model_type="x" * 33)
    with pytest.raises(ValidationError):
        editor.create_version("ok", "not-hex")
    with pytest.raises(ValidationError):
        editor.upload("ok", b"x", framework="xgboost")  # type: ignore[arg-type]
    assert editor.list().items == []


def test_a_viewer_reads_but_writes_nothing(
    services, tracker, tenant, saved_sklearn_model, sk_model
) -> None:
    run_id = run_with_model(tracker, tenant, saved_sklearn_model)
    viewer = door(services, tenant, Role.VIEWER).models
    with pytest.raises(ForbiddenError):
        viewer.register("churn", run_id)
    with pytest.raises(ForbiddenError):
        viewer.upload("churn", joblib_bytes(sk_model), framework="sklearn")
    assert viewer.list().items == []

    door(services, tenant, Role.EDITOR).models.register("churn", run_id)
    with pytest.raises(ForbiddenError):
        viewer.create_version("churn", run_id)
    with pytest.raises(ForbiddenError):
        viewer.delete_version("churn", "1")
    with pytest.raises(ForbiddenError):
        viewer.delete("churn")
    assert [v.version for v in viewer.list_versions("churn").items] == ["1"]


def test_another_tenant_sees_none_of_it(
    services, tracker, tenant, other_tenant, saved_sklearn_model, tmp_path
) -> None:
    run_id = run_with_model(tracker, tenant, saved_sklearn_model)
    door(services, tenant, Role.EDITOR).models.register("churn", run_id)
    other = door(services, other_tenant, Role.ADMIN, owner="bob").models

    assert other.list().items == []
    for read in (
        lambda: other.get("churn"),
        lambda: other.list_versions("churn"),
        lambda: other.get_version("churn", "1"),
        lambda: other.list_files("churn", "1"),
        lambda: other.read_file("churn", "1", "MLmodel"),
        lambda: other.download("churn", "1", tmp_path / "stolen"),
        lambda: other.delete("churn"),
        lambda: other.delete_version("churn", "1"),
    ):
        with pytest.raises(NotFoundError):
            read()
    assert not (tmp_path / "stolen").exists()
    # Nor can it register the first tenant's run under a name of its own.
    with pytest.raises(NotFoundError):
        other.register("stolen", run_id)
    assert other.list().items == []
    assert door(services, tenant, Role.VIEWER).models.get("churn").versions == ["1"]
