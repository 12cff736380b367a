"""First start of the embedded default: a demo tenant and an admin key for it."""

from __future__ import annotations

from matih_ml.errors import ConflictError
from matih_ml.services import Services


def bootstrap_demo(services: Services) -> str | None:
    """Create the demo tenant and an admin key on the first start, and return the key.

    Runs only on the embedded default or when ``MATIH_BOOTSTRAP_TENANT`` is set, and
    only while that tenant does not exist yet: later starts return None, and keys are
    made with ``matih-ml keys create``.
    """
    settings = services.settings
    if not (settings.embedded or settings.bootstrap_tenant):
        return None
    tenant = settings.bootstrap_tenant or "demo"
    try:
        services.tenants.create_tenant(tenant, "Created on the first start")
    except ConflictError:
        return None
    return services.api_keys.create(
        tenant, "admin", "bootstrap-admin", created_by="bootstrap"
    ).secret
