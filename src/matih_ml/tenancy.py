"""Tenants: each one an MLflow workspace, bound to the current context only.

The tenant of a call is held in a ContextVar (ours and MLflow's), never in
``os.environ``: ``mlflow.set_workspace()`` writes the process environment and
would leak one tenant's workspace into another's threads. MLflow's setter for
the ContextVar is internal API: :mod:`matih_ml.mlflow_adapter.workspace` wraps it,
and :func:`tenant_scope` is the only caller.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass

from mlflow.entities.workspace import WorkspaceDeletionMode

from matih_ml.backend import MlflowBackend, connect, use_as_mlflow_default
from matih_ml.config import Settings
from matih_ml.errors import ConflictError, NotFoundError, ValidationError
from matih_ml.mlflow_adapter.workspace import bound_workspace
from matih_ml.mlflow_errors import translated

TENANT_MIN = 2
TENANT_MAX = 63
# DNS-label rules, as MLflow's workspace names; "default" holds MLflow's legacy,
# pre-workspace resources and is never a tenant.
_TENANT_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_RESERVED = frozenset({"default", "workspaces", "api", "ajax-api", "static-files"})

_current_tenant: ContextVar[str | None] = ContextVar("matih_tenant", default=None)


@dataclass(frozen=True)
class Tenant:
    """A tenant as the service sees it.

    Attributes:
        tenant_id: The DNS-safe name, also the MLflow workspace name.
        description: Free text.
        artifact_root: The prefix under which all of this tenant's artifacts live.
    """

    tenant_id: str
    description: str | None
    artifact_root: str | None


def validate_tenant_id(tenant_id: object) -> str:
    """Check a tenant id: 2 to 63 lowercase letters, digits and inner hyphens.

    Raises:
        ValidationError: If it is not such a name, or is reserved.
    """
    if not isinstance(tenant_id, str):
        raise ValidationError(
            f"tenant_id must be a string, got {type(tenant_id).__name__}.",
            details={"field": "tenant_id"},
        )
    if not TENANT_MIN <= len(tenant_id) <= TENANT_MAX or not _TENANT_RE.match(tenant_id):
        raise ValidationError(
            f"tenant_id {tenant_id[:80]!r} must be {TENANT_MIN} to {TENANT_MAX} lowercase "
            "letters, digits or inner hyphens.",
            details={"field": "tenant_id"},
        )
    if tenant_id in _RESERVED:
        raise ValidationError(
            f"tenant_id {tenant_id!r} is reserved.", details={"field": "tenant_id"}
        )
    return tenant_id


@contextmanager
def tenant_scope(tenant_id: str) -> Iterator[str]:
    """Bind ``tenant_id`` to the current context (thread or task) for the block.

    Every MLflow store call inside the block is confined to the tenant's
    workspace; outside any scope MLflow fails closed ("Active workspace is required").
    """
    tenant_id = validate_tenant_id(tenant_id)
    token = _current_tenant.set(tenant_id)
    try:
        with bound_workspace(tenant_id):
            yield tenant_id
    finally:
        _current_tenant.reset(token)


def current_tenant() -> str | None:
    """Return the tenant bound to the current context, or None."""
    return _current_tenant.get()


class TenantDirectory:
    """Creates, finds and deletes tenants (MLflow workspaces).

    Args:
        backend: The MLflow backend.
    """

    def __init__(self, backend: MlflowBackend) -> None:
        self._backend = backend
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def tenant_artifact_root(self, tenant_id: str) -> str:
        """Return the artifact prefix of ``tenant_id`` under the configured root."""
        return f"{self._backend.settings.artifact_root}/{tenant_id}"

    def create_tenant(self, tenant_id: str, description: str | None = None) -> Tenant:
        """Create a tenant, with its own artifact prefix.

        Raises:
            ValidationError: For a bad name.
            ConflictError: If it exists already.
        """
        tenant_id = validate_tenant_id(tenant_id)
        with translated(f"tenant {tenant_id!r}"):
            ws = self._backend.client.create_workspace(
                tenant_id,
                description=description,
                default_artifact_root=self.tenant_artifact_root(tenant_id),
            )
        with self._lock:
            self._known.add(tenant_id)
        return Tenant(ws.name, ws.description, ws.default_artifact_root)

    def get_tenant(self, tenant_id: str) -> Tenant:
        """Return a tenant.

        Raises:
            NotFoundError: If there is no such tenant.
        """
        tenant_id = validate_tenant_id(tenant_id)
        with translated(f"tenant {tenant_id!r}"):
            ws = self._backend.client.get_workspace(tenant_id)
        return Tenant(ws.name, ws.description, ws.default_artifact_root)

    def list_tenants(self) -> list[Tenant]:
        """Return every tenant, sorted by id."""
        with translated():
            workspaces = self._backend.client.list_workspaces()
        return sorted(
            (
                Tenant(w.name, w.description, w.default_artifact_root)
                for w in workspaces
                if w.name not in _RESERVED
            ),
            key=lambda t: t.tenant_id,
        )

    def delete_tenant(self, tenant_id: str) -> None:
        """Delete a tenant that holds no experiments and no models.

        Raises:
            NotFoundError: If there is no such tenant.
            ConflictError: If it still holds resources.
        """
        tenant_id = validate_tenant_id(tenant_id)
        self.get_tenant(tenant_id)
        try:
            with translated(f"tenant {tenant_id!r}"):
                self._backend.client.delete_workspace(tenant_id, WorkspaceDeletionMode.RESTRICT)
        except (ConflictError, ValidationError) as exc:
            raise ConflictError(
                f"Tenant {tenant_id!r} still holds experiments or models; delete them first.",
                details={"tenant_id": tenant_id},
            ) from exc
        with self._lock:
            self._known.discard(tenant_id)

    def ensure(self, tenant_id: str, *, create: bool) -> str:
        """Make sure ``tenant_id`` exists, provisioning it if allowed.

        Args:
            tenant_id: The tenant.
            create: Whether this call may provision it (writes may; reads never do).

        Raises:
            ValidationError: For a bad name.
            NotFoundError: If it does not exist and may not be created here.
        """
        tenant_id = validate_tenant_id(tenant_id)
        if tenant_id in self._known:
            return tenant_id
        try:
            self.get_tenant(tenant_id)
        except NotFoundError:
            if not (create and self._backend.settings.auto_create_tenants):
                raise NotFoundError(
                    f"Tenant {tenant_id!r} does not exist.", details={"tenant_id": tenant_id}
                ) from None
            # Another thread or replica may create it first; either way it exists.
            with suppress(ConflictError):
                self.create_tenant(tenant_id)
        with self._lock:
            self._known.add(tenant_id)
        return tenant_id

    def exists(self, tenant_id: str) -> bool:
        """Whether ``tenant_id`` exists (never provisions it; known tenants are cached)."""
        try:
            self.ensure(tenant_id, create=False)
        except (NotFoundError, ValidationError):
            return False
        return True

    @contextmanager
    def scope(self, tenant_id: str, *, create: bool = False) -> Iterator[str]:
        """Check the tenant exists (or provision it), then bind it for the block."""
        self.ensure(tenant_id, create=create)
        with tenant_scope(tenant_id) as bound:
            yield bound


# One directory per store this process has been pointed at by tenant(): connecting
# (building MLflow's stores) costs more than a with-block should.
_process_directories: dict[tuple[str, str, str], tuple[MlflowBackend, TenantDirectory]] = {}
_process_lock = threading.Lock()


def _process_directory(settings: Settings) -> TenantDirectory:
    key = (settings.tracking_uri, settings.registry_uri, settings.artifact_root)
    with _process_lock:
        found = _process_directories.get(key)
        if found is None:
            backend = connect(settings)  # MLflow's process switches: workspaces on, ...
            found = _process_directories[key] = (backend, TenantDirectory(backend))
        # MLflow's fluent API (mlflow.pyfunc.load_model) reaches the same stores. It names
        # stores in the environment, never a tenant, so this is safe to repeat.
        use_as_mlflow_default(found[0])
    return found[1]


@contextmanager
def tenant(tenant_id: str, *, settings: Settings | None = None) -> Iterator[str]:
    """Work as ``tenant_id`` in this process: ``models:/`` URIs and other stock MLflow
    calls in the block reach that tenant's models, and only its.

    MLflow's registry serves a tenant only when a workspace is bound, so a script or a
    notebook on the service's stores (an operator's, or a job's) wraps its MLflow calls
    in this::

        import mlflow
        from matih_ml.tenancy import tenant

        with tenant("acme"):
            model = mlflow.pyfunc.load_model("models:/churn/Production")  # or @production

    The process is configured as the service configures its own (workspaces on, the
    tracking and registry URIs of ``settings``, by default read from the environment:
    ``MLFLOW_TRACKING_URI``, ``MATIH_DATA_DIR``, ...). The tenant is bound to the current
    thread or task only, as everywhere else, so threads may each use their own. Loading
    runs the model's own code in *this* process: it is for models you trust; the
    service itself never loads a code-bearing model outside its sandbox.

    Args:
        tenant_id: The tenant (it must exist).
        settings: The stores to use (default: ``Settings()``, from the environment).

    Raises:
        ValidationError: For a bad tenant id.
        NotFoundError: If there is no such tenant on those stores.
    """
    directory = _process_directory(settings or Settings())
    with directory.scope(tenant_id) as bound:
        yield bound


__all__ = [
    "Tenant",
    "TenantDirectory",
    "current_tenant",
    "tenant",
    "tenant_scope",
    "validate_tenant_id",
]
