"""MLflow's workspace, bound to the current context (thread or task) only.

``mlflow.set_workspace()`` writes ``os.environ`` and would leak one tenant's workspace
into another's threads. MLflow's server binds it with ``ServerWorkspaceContext``, a
ContextVar, which is internal API: it is used here and nowhere else, and only
:func:`matih_ml.tenancy.tenant_scope` calls this.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mlflow.utils.workspace_context import ServerWorkspaceContext


@contextmanager
def bound_workspace(name: str) -> Iterator[None]:
    """Confine every MLflow store call in the block to workspace ``name``."""
    with ServerWorkspaceContext(name):
        yield
