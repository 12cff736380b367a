import os
import threading

import pytest
from mlflow.exceptions import MlflowException

from conftest import new_tenant_id
from matih_ml.backend import MlflowBackend
from matih_ml.config import Settings
from matih_ml.errors import ConflictError, NotFoundError, ValidationError
from matih_ml.tenancy import TenantDirectory, current_tenant, tenant_scope, validate_tenant_id
from matih_ml.tracking import RunConfig


def test_create_get_list_delete(tenants: TenantDirectory, settings: Settings) -> None:
    tid = new_tenant_id()
    created = tenants.create_tenant(tid, description="Acme's models")
    assert created.tenant_id == tid
    assert created.artifact_root == f"{settings.artifact_root}/{tid}"
    assert tenants.get_tenant(tid).description == "Acme's models"
    assert tid in [t.tenant_id for t in tenants.list_tenants()]
    assert "default" not in [t.tenant_id for t in tenants.list_tenants()]
    tenants.delete_tenant(tid)
    with pytest.raises(NotFoundError):
        tenants.get_tenant(tid)


def test_create_twice_is_a_conflict(tenants: TenantDirectory, tenant: str) -> None:
    with pytest.raises(ConflictError):
        tenants.create_tenant(tenant)


def test_delete_unknown_tenant_is_not_found(tenants: TenantDirectory) -> None:
    with pytest.raises(NotFoundError):
        tenants.delete_tenant(new_tenant_id())


def test_delete_refused_while_tenant_holds_experiments(tenants, tracker, tenant) -> None:
    with tracker.start_run("exp", RunConfig(tenant_id=tenant)):
        pass
    with pytest.raises(ConflictError, match="still holds"):
        tenants.delete_tenant(tenant)
    assert tenants.get_tenant(tenant).tenant_id == tenant


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a",
        "A-upper",
        "-lead",
        "trail-",
        "has_underscore",
        "has/slash",
        "x" * 64,
        "default",
        "api",
        "sp ace",
        "ünï",
        "a\x00b",
        42,
        None,
    ],
)
def test_bad_tenant_names_are_refused(tenants: TenantDirectory, bad: object) -> None:
    with pytest.raises(ValidationError):
        tenants.create_tenant(bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        validate_tenant_id(bad)


def test_unknown_tenant_is_not_found_when_not_auto_created(backend: MlflowBackend) -> None:
    strict = TenantDirectory(
        MlflowBackend(
            backend.settings.model_copy(update={"auto_create_tenants_env": False}), backend.client
        )
    )
    tid = new_tenant_id()
    with pytest.raises(NotFoundError, match="does not exist"):
        strict.ensure(tid, create=True)
    with pytest.raises(NotFoundError):
        strict.get_tenant(tid)


def test_unknown_tenant_is_provisioned_on_first_write_when_enabled(tenants) -> None:
    tid = new_tenant_id()
    tenants.ensure(tid, create=True)
    assert tenants.get_tenant(tid).tenant_id == tid


def test_reads_never_provision_a_tenant(tenants) -> None:
    tid = new_tenant_id()
    with pytest.raises(NotFoundError):
        tenants.ensure(tid, create=False)
    with pytest.raises(NotFoundError):
        tenants.get_tenant(tid)


def test_scope_binds_context_only_and_never_the_environment(tenant: str) -> None:
    before = os.environ.get("MLFLOW_WORKSPACE")
    seen: dict[str, str | None] = {}

    def other_thread() -> None:
        seen["other"] = current_tenant()

    with tenant_scope(tenant):
        assert current_tenant() == tenant
        assert os.environ.get("MLFLOW_WORKSPACE") == before
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
    assert seen["other"] is None
    assert current_tenant() is None


def test_mlflow_fails_closed_outside_a_tenant_scope(backend: MlflowBackend) -> None:
    with pytest.raises(MlflowException, match="workspace"):
        backend.client.search_experiments()
