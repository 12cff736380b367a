"""The SDK's classes against a server: the client, bound to its key's tenant.

When each class works remotely is :mod:`matih_ml.where`'s rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from matih_ml.errors import ValidationError
from matih_ml.where import local_allowed, no_server_error, wants_server

__all__ = ["TenantBoundClient", "connect", "local_allowed", "no_server_error", "wants_server"]

if TYPE_CHECKING:
    from matih_ml.client import MatihClient


class TenantBoundClient:
    """A client and the tenant its key names; the seed methods' ``tenant_id`` must be it.

    Args:
        client: The server's client.
    """

    def __init__(self, client: MatihClient) -> None:
        self.client = client
        self._tenant: str | None = None

    def check(self, tenant_id: str) -> None:
        """Refuse a ``tenant_id`` other than the key's (asked of the server once).

        Raises:
            ValidationError: Naming both tenants and the server.
            UnavailableError: If the server cannot be reached (naming its URL).
        """
        if self._tenant is None:
            self._tenant = self.client.whoami().tenant_id
        if tenant_id != self._tenant:
            raise ValidationError(
                f"tenant_id {tenant_id!r} is not the key's tenant ({self._tenant!r}) at "
                f"{self.client.url}: a key works in its own tenant only.",
                details={"tenant_id": tenant_id, "key_tenant": self._tenant},
            )


def connect(url: str | None, api_key: str | None, profile: str | None = None) -> TenantBoundClient:
    """The server's client (no request is made yet).

    Raises:
        ConfigError: If the URL or the key is missing (naming where it looked).
    """
    from matih_ml.client import MatihClient

    return TenantBoundClient(MatihClient(url, api_key, profile=profile))
